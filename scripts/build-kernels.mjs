// Compiles the AssemblyScript kernels (assembly/) into build/kernels.wasm.
// Runs from `npm run build`, so a fresh clone builds the wasm with no manual step.
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outFile = join(root, 'build', 'kernels.wasm');
await mkdir(dirname(outFile), { recursive: true });

const started = Date.now();
const { error, stderr } = await asc.main(
  [
    join(root, 'assembly', 'index.ts'),
    '--outFile', outFile,
    '-O3',
    '--noAssert',
    '--runtime', 'stub',
    // No env.abort import: kernels never allocate or assert.
    '--use', 'abort=',
    '--enable', 'simd',
    '--enable', 'threads',
    '--importMemory',
    '--sharedMemory',
    '--initialMemory', '1',
    '--maximumMemory', '65536',
  ],
  { stdout: process.stdout, stderr: process.stderr },
);
if (error) {
  console.error(stderr.toString());
  console.error(`build-kernels: ${error.message}`);
  process.exit(1);
}
console.log(`build-kernels: build/kernels.wasm in ${Date.now() - started} ms`);
