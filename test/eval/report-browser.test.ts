import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findChromium, launchChromium, renderPlotPngs } from '../../src/eval/browser.js';
import { buildSections, renderHtml } from '../../src/eval/report.js';
import { fixtureRows } from './report-fixture.js';

// Never skipped: npm ci brings a Chromium (@sparticuz/chromium), and a missing browser must fail here.
describe('the HTML report in headless Chromium', () => {
  let dir: string;
  let html: string;
  const sections = buildSections(fixtureRows());
  const ids = sections.flatMap((s) => s.plots.map((p) => p.id));

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-report-'));
    html = path.join(dir, 'index.html');
    fs.writeFileSync(html, renderHtml(sections));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds Chromium', async () => {
    expect((await findChromium())?.executablePath, 'npm ci brings @sparticuz/chromium; KVPACK_CHROMIUM overrides').toBeTypeOf('string');
  });

  it('draws every plot: svg elements with their ids, on screen, with non-empty paths, cells and bars', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(pathToFileURL(html).href);
      const svgs = await page.$$eval('figure[data-plot] > svg', (els) =>
        els.map((el) => {
          const box = el.getBoundingClientRect();
          return {
            id: el.id,
            width: box.width,
            height: box.height,
            paths: [...el.querySelectorAll('path.series')].map((p) => ({ d: p.getAttribute('d') ?? '', length: (p as SVGPathElement).getTotalLength() })),
            cells: el.querySelectorAll('rect.cell').length,
            bars: [...el.querySelectorAll('rect.bar')].map((b) => (b as SVGRectElement).getBBox().height),
            // what the eye sees: each legend swatch's drawn colour and dash, and each line's
            legend: [...el.querySelectorAll('.legend-item')].map((g) => {
              const mark = g.querySelector('line, rect')!;
              const style = getComputedStyle(mark);
              return `${mark.tagName === 'line' ? style.stroke : style.fill} ${style.strokeDasharray}`;
            }),
            lines: [...el.querySelectorAll('path.series')].map((p) => `${getComputedStyle(p).stroke} ${getComputedStyle(p).strokeDasharray}`),
            // nothing drawn outside the picture (cut-off legends and labels)
            overflow: [...el.querySelectorAll('text')].some((t) => {
              const r = t.getBoundingClientRect();
              return r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1;
            }),
          };
        }),
      );
      expect(svgs.map((s) => s.id)).toEqual(ids);
      for (const s of svgs) {
        expect(s.width, s.id).toBeGreaterThan(100);
        expect(s.height, s.id).toBeGreaterThan(100);
        if (s.id.startsWith('pareto') || s.id.startsWith('budget')) {
          expect(s.paths.length, s.id).toBeGreaterThan(0);
          for (const p of s.paths) expect(p.d, s.id).toMatch(/^M[\d.]+ [\d.]+/);
          expect(s.paths.some((p) => p.length > 10), s.id).toBe(true); // lines, not only single points
        }
        if (s.id.startsWith('heatmap')) expect(s.cells, s.id).toBe(7 * 6);
        // every plot has a legend, and no two entries look alike; every line is drawn as its entry shows it
        expect(s.legend.length, s.id).toBeGreaterThan(0);
        expect(new Set(s.legend).size, `${s.id}: ${s.legend.join(' | ')}`).toBe(s.legend.length);
        if (s.lines.length) expect(s.lines, s.id).toEqual(s.legend);
        expect(s.overflow, `${s.id}: text outside the plot`).toBe(false);
        if (s.id.startsWith('rouge')) {
          expect(s.bars, s.id).toHaveLength(21);
          expect(s.bars.every((h) => h > 0), s.id).toBe(true);
        }
      }
      // self-contained: the page itself is the only request
      expect(requests).toEqual([pathToFileURL(html).href]);
    } finally {
      await browser.close();
    }
  });

  it('writes a PNG of each plot', async () => {
    const written = await renderPlotPngs(html, dir);
    expect(written).toEqual(ids);
    for (const id of ids) {
      const png = fs.readFileSync(path.join(dir, `${id}.png`));
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
      expect(png.length).toBeGreaterThan(2000);
    }
  });
});
