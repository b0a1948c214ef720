// Compiles the AssemblyScript kernels (assembly/) into two builds from the one source:
// build/kernels.wasm (SIMD128, runs everywhere) and build/kernels-relaxed.wasm (relaxed SIMD: FMA and
// i8 dot products; ASC_FEATURE_RELAXED_SIMD selects those code paths at compile time). The runtime
// loads the relaxed build where the engine validates it (src/kernels/wasm.ts).
// Runs from `npm run build`, so a fresh clone builds the wasm with no manual step.
// KVPACK_KERNEL_NAMES=1 keeps the functions' names (asc --debug), so V8's CPU profiles (node --cpu-prof)
// name the kernels' functions instead of wasm-function[N].
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUILDS = [
  { file: 'kernels.wasm', features: ['simd', 'threads'] },
  { file: 'kernels-relaxed.wasm', features: ['simd', 'threads', 'relaxed-simd'] },
];
await mkdir(join(root, 'build'), { recursive: true });

for (const { file, features } of BUILDS) {
  const started = Date.now();
  const { error, stderr } = await asc.main(
    [
      join(root, 'assembly', 'index.ts'),
      '--outFile', join(root, 'build', file),
      '-O3', ...(process.env.KVPACK_KERNEL_NAMES ? ['--debug'] : []),
      '--noAssert',
      '--runtime', 'stub',
      // No env.abort import: kernels never allocate or assert.
      '--use', 'abort=',
      ...features.flatMap((f) => ['--enable', f]),
      '--importMemory',
      '--sharedMemory',
      '--initialMemory', '1',
      '--maximumMemory', '65536',
    ],
    { stdout: process.stdout, stderr: process.stderr },
  );
  if (error) {
    console.error(stderr.toString());
    console.error(`build-kernels: ${file}: ${error.message}`);
    process.exit(1);
  }
  console.log(`build-kernels: build/${file} in ${Date.now() - started} ms`);
}
