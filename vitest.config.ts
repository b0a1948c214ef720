import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * Files that need the built CLI (dist/, `npm run build`), a browser, or take seconds each: the rest is
 * the `unit` project, which needs only the kernels (`npm run test:unit` builds them) and runs in well
 * under a minute. `npm test` runs both.
 */
const SLOW = [
  // run the built CLI or a server process
  'test/cli/**/*.test.ts',
  'test/calibrate/entry-points.test.ts',
  'test/eval/concurrent.test.ts',
  'test/eval/queue.test.ts',
  'test/server/scheduler.test.ts',
  'test/server/load.test.ts',
  'test/trace/cli.test.ts',
  // headless Chromium
  'test/eval/report-browser.test.ts',
  'test/trace/viewer-browser.test.ts',
  // seconds each: many models, formats or long sequences
  'test/model/families.test.ts',
  'test/model/quantized.test.ts',
  'test/model/fuzz.test.ts',
  'test/model/forward-batch.test.ts',
  'test/calibrate/backprop.test.ts',
  'test/calibrate/calibrate.test.ts',
  'test/cache/streaming.test.ts',
  'test/cache/cache.test.ts',
  'test/cache/quant/calibration.test.ts',
  'test/dev/write.test.ts',
  'test/kernels/ggml/formats.test.ts',
  'test/kernels/rope-scaling.test.ts',
  'test/tokenizer/pretokenizers.test.ts',
  'test/hub/download.test.ts',
  'test/engine/layer-groups.test.ts',
  'test/server/memory.test.ts',
  'test/server/trust.test.ts',
  'test/eval/tasks.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // kvquant without calib= uses the calibration store when it has the model's file: tests start from none
    env: { KVPACK_CACHE_DIR: path.join(os.tmpdir(), `kvpack-test-cache-${process.pid}`) },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: SLOW } },
      { extends: true, test: { name: 'slow', include: SLOW } },
    ],
  },
});
