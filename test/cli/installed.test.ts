import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REF6M_DIR } from '../engine/helpers.js';

// kvpack as `npm install` leaves it in a project: the built package copied into its node_modules (not
// linked: a link would resolve to this checkout), its dependencies beside it.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-installed-'));
const app = path.join(tmp, 'app');
const script = path.join(app, 'example.mjs');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  const pkg = path.join(app, 'node_modules/kvpack');
  fs.mkdirSync(pkg, { recursive: true });
  fs.cpSync('dist', path.join(pkg, 'dist'), { recursive: true });
  fs.cpSync('build', path.join(pkg, 'build'), { recursive: true });
  fs.copyFileSync('package.json', path.join(pkg, 'package.json'));
  const manifest = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> };
  for (const dep of Object.keys(manifest.dependencies)) {
    const at = path.join(app, 'node_modules', dep);
    fs.mkdirSync(path.dirname(at), { recursive: true });
    fs.symlinkSync(path.resolve('node_modules', dep), at);
  }
  fs.writeFileSync(script, `import { loadModel } from 'kvpack';
const model = await loadModel(undefined, { threads: 1 });
console.log(model.source, model.config.numLayers);
await model.close();
`);
});

const run = () => spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 60_000, cwd: os.tmpdir() });

describe('the library default model from an installed package', () => {
  it('says what to pass when no shared/models/ref-6m is above the package or the working directory', () => {
    const r = run();
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('no model was given and the default one, shared/models/ref-6m, is in no folder above');
    expect(r.stderr).toContain('loadModel(PATH)');
    expect(r.stderr).toContain("loadModel(await resolveModel('HuggingFaceTB/SmolLM2-135M'))");
  });

  it('finds ../shared beside the project that installed it, from any working directory', () => {
    fs.mkdirSync(path.join(tmp, 'shared/models'), { recursive: true });
    fs.symlinkSync(REF6M_DIR, path.join(tmp, 'shared/models/ref-6m'));
    const r = run();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/ref-6m 6$/);
  });
});
