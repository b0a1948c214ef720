import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../../src/eval/browser.js';
import { loadEvalTokens } from '../../src/eval/data.js';
import { loadModel } from '../../src/engine/model.js';
import type { HeadDelta, StepRecord, TraceRecord } from '../../src/trace/format.js';
import { recordTrace } from '../../src/trace/record.js';
import { serveTrace, type Viewer } from '../../src/trace/serve.js';
import { REF6M_DIR } from '../engine/helpers.js';
import { replay } from './replay.js';

// A 2K-token trace of ref-6m (6 layers × 2 KV heads), two caches on the same text, in headless Chromium.
describe('the trace viewer in headless Chromium', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-viewer-'));
  const file = path.join(tmp, 'ref6m.trace.jsonl');
  const specs = ['h2o(budget=0.2)', 'qhitter(budget=0.2)'];
  const kvHeads = 2;
  let held: number[][][][]; // [run][step][layer × kvHeads + head] → positions
  let steps: StepRecord[][];
  let viewer: Viewer;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];

  beforeAll(async () => {
    const model = await loadModel(REF6M_DIR, { threads: 2 });
    try {
      const tokens = loadEvalTokens('wikitext2', model.tokenizer);
      const prompt = tokens.kind === 'stream' ? tokens.ids.slice(0, 2000) : [];
      await recordTrace(model, { specs, prompt, maxTokens: 48, out: file, progress: false });
    } finally {
      await model.close();
    }
    const records = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TraceRecord);
    steps = specs.map((_, run) => records.filter((r): r is StepRecord => r.type === 'step' && r.run === run));
    held = steps.map((s) => replay(s.map((r) => r.heads as HeadDelta[])));
    viewer = await serveTrace(file, 0);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('request', (r) => requests.push(r.url()));
  });
  afterAll(async () => {
    await browser?.close();
    await viewer?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** What the page shows for one run: each grid cell's count, the chosen head's underlined positions, the shade counts. */
  async function shown(run: number) {
    return page.$eval(`section.run[data-run="${run}"]`, (section) => ({
      cells: [...section.querySelectorAll('td[data-layer]')].map((td) => Number(td.querySelector('.count')!.textContent)),
      chosen: [...section.querySelectorAll('.text span.sel')].map((s) => Number((s as HTMLElement).dataset.pos)),
      only: [...section.querySelectorAll('.text span.only')].map((s) => Number((s as HTMLElement).dataset.pos)),
      visible: section.querySelectorAll('.text span:not(.future)').length,
      shade: [...section.querySelectorAll<HTMLElement>('.text span:not(.future)')].map((s) => Number(s.dataset.held)),
    }));
  }

  function expectShows(view: Awaited<ReturnType<typeof shown>>, run: number, step: number, head: number) {
    const heads = held[run]![step]!;
    expect(view.cells).toEqual(heads.map((h) => h.length));
    expect(view.chosen).toEqual(heads[head]);
    expect(view.visible).toBe(steps[run]![step]!.tokens);
    const counts = new Array<number>(view.visible).fill(0);
    for (const h of heads) for (const p of h) counts[p]!++;
    expect(view.shade).toEqual(counts);
  }

  it('opens a 2K-token, 6-layer trace in under a second, fetching nothing from elsewhere', async () => {
    await page.goto(viewer.url);
    await page.waitForSelector('body[data-ready]');
    const ready = Number(await page.$eval('body', (b) => b.dataset.ready));
    expect(steps[0]![0]!.tokens).toBe(2000);
    expect(steps[0]).toHaveLength(49);
    expect(ready).toBeGreaterThan(0);
    expect(ready).toBeLessThan(1000); // ms from navigation to the filled page
    expect(requests.every((u) => u.startsWith(viewer.url))).toBe(true);
    expect(await page.$eval('#status', (p) => p.textContent)).toBe('');
  });

  it('shows the held counts of the trace, and follows the slider, the layer and the head', async () => {
    await page.selectOption('#run-b', '');
    expect(await page.locator('section.run').count()).toBe(1);
    expectShows(await shown(0), 0, 0, 0);
    const last = steps[0]!.length - 1;
    await page.locator('#step').fill(String(last));
    expectShows(await shown(0), 0, last, 0);
    await page.selectOption('#layer', '3');
    await page.selectOption('#head', '1');
    const head = 3 * kvHeads + 1;
    expectShows(await shown(0), 0, last, head);
    expect(await page.$eval('td.chosen', (td) => [td.getAttribute('data-layer'), td.getAttribute('data-head')])).toEqual(['3', '1']);
    await page.locator('section.run td[data-layer="5"][data-head="0"]').click();
    expectShows(await shown(0), 0, last, 5 * kvHeads);
    await page.locator('#step').fill('20');
    expectShows(await shown(0), 0, 20, 5 * kvHeads);
  });

  it('compares two caches on the same text, outlining what only one of them holds', async () => {
    await page.selectOption('#run-b', '1');
    expect(await page.locator('section.run').count()).toBe(2);
    const head = 5 * kvHeads;
    const [a, b] = [await shown(0), await shown(1)];
    expectShows(a, 0, 20, head);
    expectShows(b, 1, 20, head);
    const onlyIn = (x: number[], y: number[]) => x.filter((p) => !y.includes(p));
    const [heldA, heldB] = [held[0]![20]![head]!, held[1]![20]![head]!];
    expect(a.only).toEqual(onlyIn(heldA, heldB));
    expect(b.only).toEqual(onlyIn(heldB, heldA));
    expect(a.only.length).toBeGreaterThan(0); // h2o and qhitter do differ
  });

  it('hovering a held token shows its score, and for the quantized cache its errors', async () => {
    const head = 5 * kvHeads;
    const position = held[1]![20]![head]!.at(-5)!;
    await page.locator(`section.run[data-run="1"] span[data-pos="${position}"]`).hover();
    const tip = await page.locator('#tip').textContent();
    const slot = held[1]![20]![head]!.indexOf(position);
    expect(tip).toContain(`position ${position}`);
    expect(tip).toContain(`combined score`);
    expect(tip).toContain(`: ${steps[1]![20]!.heads[head]!.s![slot]!}\n`);
    expect(tip).toMatch(/key error \d+\.\d\d% · value error \d+\.\d\d%/);
  });

  it('plays through the steps', async () => {
    await page.locator('#step').fill('0');
    await page.click('#play');
    await page.waitForFunction(() => Number((document.getElementById('step') as HTMLInputElement).value) >= 2);
    await page.click('#play');
    const step = Number(await page.inputValue('#step'));
    expectShows(await shown(0), 0, step, 5 * kvHeads);
  });
});
