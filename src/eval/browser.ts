import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import { KvpackError } from '../errors.js';

/**
 * Headless Chromium for the report's PNGs (and the test that checks the page renders), driven by
 * playwright-core. Both are dev dependencies: a checkout has them, an installed package need not.
 * KVPACK_CHROMIUM names an executable; otherwise a `chromium` on the PATH; otherwise the Chromium that
 * @sparticuz/chromium ships inside the package (brotli-compressed, unpacked into the temp folder on
 * first use, with the NSS/NSPR/expat libraries it needs, so no system package is required).
 */
export class BrowserError extends KvpackError {
  override readonly name = 'BrowserError';
}

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run',
];

export interface Chromium {
  executablePath: string;
  /** Environment for the browser process (the bundled build finds its libraries through it). */
  env?: Record<string, string>;
}

function systemChromium(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
      const file = path.join(dir, name);
      if (dir && fs.existsSync(file)) return file;
    }
  }
  return undefined;
}

/** Unpacks the Chromium of @sparticuz/chromium and its shared libraries (once per machine). */
async function bundledChromium(): Promise<Chromium | undefined> {
  let sparticuz: typeof import('@sparticuz/chromium').default;
  let tar: typeof import('tar');
  try {
    sparticuz = (await import('@sparticuz/chromium')).default;
    tar = await import('tar');
  } catch {
    return undefined;
  }
  const executablePath = await sparticuz.executablePath();
  // The package unpacks these libraries only on AWS Lambda; everywhere else they came from the system.
  const libDir = path.join(os.tmpdir(), 'al2023', 'lib');
  if (!fs.existsSync(path.join(libDir, 'libnss3.so'))) {
    const archive = path.join(fileURLToPath(import.meta.resolve('@sparticuz/chromium')), '../../../bin/al2023.tar.br');
    fs.mkdirSync(path.dirname(libDir), { recursive: true });
    await pipeline(fs.createReadStream(archive), zlib.createBrotliDecompress(), tar.x({ cwd: path.dirname(libDir) }));
  }
  const ldPath = [libDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(path.delimiter);
  return { executablePath, env: { ...(process.env as Record<string, string>), LD_LIBRARY_PATH: ldPath } };
}

let found: Promise<Chromium | undefined> | undefined;

export function findChromium(): Promise<Chromium | undefined> {
  found ??= (async () => {
    const env = process.env.KVPACK_CHROMIUM;
    if (env) return fs.existsSync(env) ? { executablePath: env } : undefined;
    const system = systemChromium();
    return system ? { executablePath: system } : bundledChromium();
  })();
  return found;
}

type PlaywrightCore = typeof import('playwright-core');

export async function launchChromium(): Promise<import('playwright-core').Browser> {
  const chromium = await findChromium();
  if (!chromium) {
    throw new BrowserError(process.env.KVPACK_CHROMIUM
      ? `KVPACK_CHROMIUM: no file ${process.env.KVPACK_CHROMIUM}`
      : 'no Chromium found: @sparticuz/chromium (a dev dependency: npm ci in a checkout) is missing and there is no chromium on the PATH (or set KVPACK_CHROMIUM)');
  }
  let pw: PlaywrightCore;
  try {
    pw = await import('playwright-core');
  } catch {
    throw new BrowserError('PNG rendering needs playwright-core (a dev dependency: npm ci in a checkout)');
  }
  return pw.chromium.launch({ executablePath: chromium.executablePath, env: chromium.env, args: CHROMIUM_ARGS });
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
