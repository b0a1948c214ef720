// Import rules (npm run lint:imports): no cycles, and every import points down this list of layers
// (ARCHITECTURE.md). A module may import its own layer and any layer below it.
const LAYERS = [
  ['src/cli/', 'src/index.ts'],
  ['src/bench/'],
  ['src/server/'],
  ['src/trace/'],
  ['src/dev/'],
  ['src/calibrate/'],
  ['src/eval/'],
  ['src/engine/'],
  ['src/model/'],
  ['src/hub/', 'src/tokenizer/'],
  ['src/cache/'],
  ['src/kernels/'],
  ['src/util/', 'src/errors.ts'],
];
// The cache sizes itself from the model's config and checks calibrations against its identity (plain data, no
// code): the one import it may make upward.
const CACHE_MAY_READ = { pathNot: '^src/model/config\\.ts$' };
// The fuzzer's server area runs the server's app in its own process: it may reach up to src/server, no further.
const FUZZ_SERVER = '^src/dev/fuzz-server\\.ts$';
const pattern = (paths) => `^(${paths.map((p) => p.replace(/[.]/g, '\\.') + (p.endsWith('/') ? '' : '$')).join('|')})`;

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'an import cycle', from: {}, to: { circular: true } },
    ...LAYERS.slice(1).map((layer, i) => ({
      name: `down-only:${layer.join('+')}`,
      severity: 'error',
      comment: `${layer.join(', ')} may not import a layer above it`,
      from: { path: pattern(layer), ...(layer[0] === 'src/dev/' ? { pathNot: FUZZ_SERVER } : {}) },
      to: { path: pattern(LAYERS.slice(0, i + 1).flat()), ...(layer[0] === 'src/cache/' ? CACHE_MAY_READ : {}) },
    })),
    {
      name: 'fuzz-server-up-to-server',
      severity: 'error',
      comment: 'src/dev/fuzz-server.ts may import src/server and below, not the commands or the bench',
      from: { path: FUZZ_SERVER },
      to: { path: pattern(LAYERS.slice(0, 2).flat()) },
    },
    {
      name: 'dev-only-for-bench-and-tests',
      severity: 'error',
      comment: 'src/dev (checkpoint writers) is not part of the library: only src/bench and tests use it',
      from: { path: '^src/', pathNot: '^src/(bench|dev)/' },
      to: { path: '^src/dev/' },
    },
  ],
  options: {
    // Type-only imports count: a cycle of types is still a cycle for whoever reads the code.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
  },
};
