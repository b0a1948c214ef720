import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findChromium, launchChromium, renderPlotPngs } from '../../src/eval/browser.js';
import { writeReport } from '../../src/cli/report.js';
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
            // what the eye sees: each legend entry's name and its swatch's drawn colour and dash, and each line's
            legend: [...el.querySelectorAll('.legend-item')].map((g) => {
              const mark = g.querySelector('line, rect')!;
              const style = getComputedStyle(mark);
              return { name: g.getAttribute('data-series') ?? '', text: g.querySelector('text')?.textContent ?? '', style: `${mark.tagName === 'line' ? style.stroke : style.fill} ${style.strokeDasharray}` };
            }),
            lines: [...el.querySelectorAll('path.series, line.ref')].map((p) => ({ name: p.getAttribute('data-series') ?? '', style: `${getComputedStyle(p).stroke} ${getComputedStyle(p).strokeDasharray}` })),
            markers: el.querySelectorAll('.marker:not(.legend-item .marker)').length,
            points: [...el.querySelectorAll('path.series')].reduce((n, p) => n + (p.getAttribute('d')!.match(/[ML]/g)?.length ?? 0), 0),
            pointLabels: [...el.querySelectorAll('text.point-label')].map((t) => t.textContent ?? ''),
            cellTexts: [...el.querySelectorAll('text.cell-value')].map((t) => t.textContent ?? ''),
            colorbar: el.querySelectorAll('rect.colorbar').length,
            // nothing drawn outside the picture (cut-off legends and labels)
            overflow: [...el.querySelectorAll('text')].some((t) => {
              const r = t.getBoundingClientRect();
              return r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1;
            }),
          };
        }),
      );
      expect(svgs.map((s) => s.id)).toEqual(ids);
      // a method's colour and dash, by legend name, in every plot it is in
      const styleOf = new Map<string, string[]>();
      for (const s of svgs) {
        expect(s.width, s.id).toBeGreaterThan(100);
        expect(s.height, s.id).toBeGreaterThan(100);
        if (s.id.startsWith('pareto') || s.id.startsWith('budget')) {
          expect(s.paths.length, s.id).toBeGreaterThan(0);
          for (const p of s.paths) expect(p.d, s.id).toMatch(/^M[\d.]+ [\d.]+/);
          expect(s.paths.some((p) => p.length > 10), s.id).toBe(true); // lines, not only single points
        }
        if (s.id.startsWith('heatmap')) {
          expect(s.cells, s.id).toBe(7 * 6);
          // each cell shows its value; the colour scale is a key, not a legend of series
          expect(s.cellTexts.map(Number).every((v) => v >= 0 && v <= 1) && s.cellTexts.length === s.cells, s.id).toBe(true);
          expect(s.colorbar, s.id).toBe(11);
          expect(s.legend, s.id).toEqual([]);
        } else {
          // the legend names exactly what is drawn, each entry looking as its lines do
          expect(s.legend.length, s.id).toBeGreaterThan(0);
          expect(new Set(s.legend.map((l) => l.style)).size, `${s.id}: ${s.legend.map((l) => l.style).join(' | ')}`).toBe(s.legend.length);
          expect(s.legend.every((l) => l.text === l.name), s.id).toBe(true);
          if (!s.id.startsWith('rouge')) expect(s.legend.map((l) => l.name).sort(), s.id).toEqual([...new Set(s.lines.map((l) => l.name))].sort());
          for (const l of s.lines) expect(l.style, `${s.id} ${l.name}`).toBe(s.legend.find((g) => g.name === l.name)!.style);
          for (const l of s.legend) styleOf.set(l.name, [...(styleOf.get(l.name) ?? []), `${s.id}: ${l.style}`]);
        }
        if (s.id.startsWith('pareto')) {
          expect(s.markers, `${s.id}: a marker on every point`).toBe(s.points);
          expect(s.pointLabels, `${s.id}: budget labels`).toEqual(expect.arrayContaining(['0.5', '0.2', '0.1', 'fp16', 'fp32']));
        }
        expect(s.overflow, `${s.id}: text outside the plot`).toBe(false);
        if (s.id.startsWith('rouge')) {
          expect(s.bars, s.id).toHaveLength(21);
          expect(s.bars.every((h) => h > 0), s.id).toBe(true);
        }
      }
      // one look per method across the whole report (ROUGE's metrics aside)
      for (const [name, seen] of styleOf) expect(new Set(seen.map((x) => x.replace(/^[^:]*: /, ''))).size, `${name}: ${seen.join(' | ')}`).toBe(1);
      expect(styleOf.get('h2o')!.length).toBeGreaterThan(3);
      expect(styleOf.get('h2o+fp32')).toBeDefined(); // drawn before h2o in its plots: h2o keeps its look
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

  it('writes an SVG file beside the PNG of each plot, standalone: it draws the same plot opened on its own', async () => {
    const out = path.join(dir, 'out');
    await writeReport(out, sections, [], [], true);
    const files = fs.readdirSync(out);
    for (const id of ids) expect(files, id).toEqual(expect.arrayContaining([`${id}.png`, `${id}.svg`]));
    expect(fs.readFileSync(path.join(out, 'report.md'), 'utf8')).toContain(`([SVG](${ids[0]}.svg))`);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      for (const id of ids) {
        await page.goto(pathToFileURL(path.join(out, `${id}.svg`)).href);
        const shown = await page.evaluate(() => {
          const svg = document.documentElement;
          return { tag: svg.tagName, id: svg.id, width: svg.getBoundingClientRect().width, drawn: svg.querySelectorAll('path.series, rect.cell, rect.bar').length };
        });
        expect(shown.tag, id).toBe('svg');
        expect(shown.id).toBe(id);
        expect(shown.width, id).toBeGreaterThan(100);
        expect(shown.drawn, id).toBeGreaterThan(0);
      }
    } finally {
      await browser.close();
    }
  });
});
