// Screenshots of docs/report/index.html at desktop width (1280 px) into docs/screenshots/: the top of
// the page and a few sections, to check the report by eye. Run after `npm run build && npm run report`.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { launchChromium } from '../dist/eval/browser.js';

const out = 'docs/screenshots';
const sections = [
  ['eviction', 'stories260K · ppl · data=stories260k ctx=512 mode=decode · eviction-stories'],
  ['fidelity', 'stories260K · fidelity'],
  ['passkey', 'stories260K · passkey'],
  ['xsum', 'ref-6m · xsum · items=20'],
];
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(pathToFileURL(path.resolve('docs/report/index.html')).href);
  await page.screenshot({ path: path.join(out, 'report-top.png') });
  for (const [name, heading] of sections) {
    await page.locator('h2', { hasText: heading }).first().scrollIntoViewIfNeeded();
    await page.evaluate((h) => [...document.querySelectorAll('h2')].find((e) => e.textContent.startsWith(h)).scrollIntoView(), heading);
    await page.screenshot({ path: path.join(out, `report-${name}.png`) });
  }
} finally {
  await browser.close();
}
