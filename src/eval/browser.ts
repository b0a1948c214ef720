import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { KvpackError } from '../errors.js';

/**
 * Headless Chromium for the report's PNGs (and the test that checks the page renders), driven by
 * playwright-core, a dev dependency: a checkout has it, an installed package need not. The browser
 * is the system's (Debian's `chromium`); KVPACK_CHROMIUM names another executable.
 */
export class BrowserError extends KvpackError {
  override readonly name = 'BrowserError';
}

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run',
];

export function findChromium(): string | undefined {
  const env = process.env.KVPACK_CHROMIUM;
  if (env) return fs.existsSync(env) ? env : undefined;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
      const file = path.join(dir, name);
      if (dir && fs.existsSync(file)) return file;
    }
  }
  return undefined;
}

type PlaywrightCore = typeof import('playwright-core');

export async function launchChromium(): Promise<import('playwright-core').Browser> {
  const executablePath = findChromium();
  if (!executablePath) throw new BrowserError('no Chromium found on the PATH (apt-get install chromium, or set KVPACK_CHROMIUM)');
  let pw: PlaywrightCore;
  try {
    pw = await import('playwright-core');
  } catch {
    throw new BrowserError('PNG rendering needs playwright-core (a dev dependency: npm ci in a checkout)');
  }
  return pw.chromium.launch({ executablePath, args: CHROMIUM_ARGS });
}

/** Screenshots each `figure[data-plot]` of an HTML file to DIR/<plot id>.png; returns the ids written. */
export async function renderPlotPngs(htmlFile: string, dir: string): Promise<string[]> {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ deviceScaleFactor: 1.5 });
    await page.goto(pathToFileURL(path.resolve(htmlFile)).href);
    const ids = await page.$$eval('figure[data-plot] > svg', (svgs) => svgs.map((s) => s.id));
    for (const id of ids) {
      await page.locator(`svg[id="${id}"]`).screenshot({ path: path.join(dir, `${id}.png`) });
    }
    return ids;
  } finally {
    await browser.close();
  }
}
