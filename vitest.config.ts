import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // kvquant without calib= uses the calibration store when it has the model's file: tests start from none
    env: { KVPACK_CACHE_DIR: path.join(os.tmpdir(), `kvpack-test-cache-${process.pid}`) },
  },
});
