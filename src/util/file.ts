import fs from 'node:fs';
import { KvpackError } from '../errors.js';

/**
 * A regular file's text, or undefined when there is no such file. Opened without blocking (a FIFO
 * would hold the event loop) and checked with fstat before a byte is read: anything but a regular
 * file, or one over `maxBytes`, is refused, so /dev/zero or a pipe can neither stall nor swell the reader.
 */
export async function readSmallFile(file: string, maxBytes: number): Promise<string | undefined> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KvpackError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new KvpackError(`${file}: not a regular file`);
    if (stat.size > maxBytes) throw new KvpackError(`${file}: ${stat.size} bytes, more than the ${maxBytes} this file may have`);
    // read to EOF but never past the cap: files such as /proc's report size 0 and hold more
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(Math.max(stat.size, 65536), maxBytes + 1 - total));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, total);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) throw new KvpackError(`${file}: more than the ${maxBytes} bytes this file may have`);
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await handle.close();
  }
}
