import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KvpackError } from '../../src/errors.js';
import { readSmallFile } from '../../src/util/file.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-file-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('readSmallFile: a regular file within a cap, or a clear refusal (issue 22)', () => {
  it('reads a regular file, and says undefined for a missing one', async () => {
    const file = path.join(tmp, 'a.json');
    fs.writeFileSync(file, '{"a": 1}');
    expect(await readSmallFile(file, 100)).toBe('{"a": 1}');
    expect(await readSmallFile(path.join(tmp, 'none.json'), 100)).toBeUndefined();
  });

  it('refuses a FIFO without blocking, a directory, a device, and a file over the cap', async () => {
    const fifo = path.join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(readSmallFile(fifo, 100)).rejects.toThrow(/fifo: not a regular file/);
    await expect(readSmallFile(tmp, 100)).rejects.toThrow(/not a regular file/);
    await expect(readSmallFile('/dev/zero', 100)).rejects.toThrow(KvpackError);
    const big = path.join(tmp, 'big.json');
    fs.writeFileSync(big, 'x'.repeat(101));
    await expect(readSmallFile(big, 100)).rejects.toThrow(/101 bytes, more than the 100/);
    // a file whose size says 0 and that holds more (as /proc's do) is read no further than the cap
    expect((await readSmallFile('/proc/self/status', 1 << 20))!).toMatch(/^Name:/);
    await expect(readSmallFile('/proc/self/status', 10)).rejects.toThrow(/more than the 10 bytes/);
  });
});
