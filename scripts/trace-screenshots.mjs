// Screenshots of the trace viewer for the docs: node scripts/trace-screenshots.mjs (after npm run build).
// Records a ref-6m trace (the first 400 WikiText-2 tokens, then 48 generated), serves it, and shoots
// the page at one step comparing H2O with Q-Hitter, and Q-Hitter alone, each with one token's tooltip.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchChromium } from '../dist/eval/browser.js';
import { loadEvalTokens } from '../dist/eval/data.js';
import { loadModel } from '../dist/engine/model.js';
import { recordTrace } from '../dist/trace/record.js';
import { serveTrace } from '../dist/trace/serve.js';

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-shots-')), 'ref6m.trace.jsonl');
const model = await loadModel('../shared/models/ref-6m', { threads: 2 });
const { ids } = loadEvalTokens('wikitext2', model.tokenizer);
await recordTrace(model, { specs: ['h2o(budget=0.2)', 'qhitter(budget=0.2)'], prompt: ids.slice(0, 400), maxTokens: 48, out: file });
await model.close();

const viewer = await serveTrace(file, 0);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  await page.goto(viewer.url);
  await page.waitForSelector('body[data-ready]');
  await page.locator('#step').fill('30');
  await page.selectOption('#layer', '2');
  await page.selectOption('#head', '1');
  await page.locator('section.run[data-run="1"] .text span.only').first().hover();
  await page.screenshot({ path: 'docs/trace-viewer.png' });
  // one cache alone: Q-Hitter with its int4 codec, a token's score and quantization errors
  await page.selectOption('#run-a', '1');
  await page.selectOption('#run-b', '');
  await page.locator('#step').fill('48');
  await page.locator('section.run .text span.sel', { hasText: /[a-z]{3}/ }).nth(12).hover();
  await page.screenshot({ path: 'docs/trace-qhitter.png' });
  console.log('wrote docs/trace-viewer.png, docs/trace-qhitter.png');
} finally {
  await browser.close();
  await viewer.close();
}
