import { describe, expect, it } from 'vitest';
import { Progress, formatBytes, formatDuration, type ProgressStream } from '../../src/util/progress.js';

/** A stream that records writes, and a clock the test moves by hand. */
function fakeStream(tty: boolean, columns = 100): ProgressStream & { text: string; writes: string[] } {
  const s = {
    isTTY: tty,
    columns,
    writes: [] as string[],
    text: '',
    write(chunk: string) {
      s.writes.push(chunk);
      s.text += chunk;
      return true;
    },
  };
  return s;
}

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('formatBytes / formatDuration', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(26102720)).toBe('24.9 MiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });

  it('formats durations', () => {
    expect(formatDuration(0.44)).toBe('0.4s');
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(185)).toBe('3m05s');
    expect(formatDuration(3720)).toBe('1h02m');
    expect(formatDuration(2 * 86400 + 3 * 3600)).toBe('2d03h');
    expect(formatDuration(Infinity)).toBe('?');
  });
});

describe('Progress', () => {
  it('non-TTY: no carriage returns, at most one line per ~10 s, and a final line', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = new Progress({ total: 1000, label: 'eval', unit: 'tok', stream, clock: clock.now });
    for (let i = 0; i < 100; i++) {
      clock.advance(50); // 5 s in total: too soon for a progress line
      p.tick(5);
    }
    expect(stream.writes).toHaveLength(0);
    clock.advance(6000);
    p.tick(10);
    p.tick(10); // same instant: throttled
    expect(stream.writes).toHaveLength(1);
    expect(stream.writes[0]).toMatch(/^eval: 51% 510\/1000 tok, .* tok\/s, ETA .+\n$/);
    p.tick(480);
    p.done();
    p.done(); // idempotent
    expect(stream.writes).toHaveLength(2);
    expect(stream.writes[1]).toMatch(/^eval: 1000 tok in 11s, \d+(\.\d)? tok\/s\n$/);
    expect(stream.text).not.toContain('\r');
    expect(stream.text).not.toContain('\x1b');
  });

  it('TTY: redraws one line in place with a bar, rate and ETA, throttled to ~10/s', () => {
    const stream = fakeStream(true, 100);
    const clock = fakeClock();
    const p = new Progress({ total: 10 * 1024 * 1024, label: 'org/model', unit: 'B', stream, clock: clock.now });
    clock.advance(500);
    p.tick(1024 * 1024);
    expect(stream.writes).toHaveLength(1);
    p.tick(1); // within 100 ms of the last draw: no redraw
    expect(stream.writes).toHaveLength(1);
    clock.advance(500);
    p.tick(1024 * 1024 - 1);
    expect(stream.writes).toHaveLength(2);
    const line = stream.writes[1]!;
    expect(line.startsWith('\r')).toBe(true);
    expect(line).not.toContain('\n');
    expect(line).toContain('[######');
    expect(line).toContain('20% 2.0 MiB/10.0 MiB');
    expect(line).toContain('2.0 MiB/s'); // 2 MiB in 1 s
    expect(line).toContain('ETA 4.0s'); // 8 MiB left at 2 MiB/s
    // Fits the terminal (ignoring the leading \r and trailing clear-to-end-of-line).
    expect(line.replace('\r', '').replace('\x1b[K', '').length).toBeLessThan(100);
    p.done();
    expect(stream.writes.at(-1)).toMatch(/^\rorg\/model: 2\.0 MiB in 1\.0s, 2\.0 MiB\/s\x1b\[K\n$/);
  });

  it('TTY: narrow terminals drop the bar rather than wrap', () => {
    const stream = fakeStream(true, 40);
    const p = new Progress({ total: 100, label: 'job', stream, clock: fakeClock().now });
    p.tick(10);
    const line = stream.writes[0]!.replace('\r', '').replace('\x1b[K', '');
    expect(line.length).toBeLessThan(40);
    expect(line).not.toContain('[');
  });

  it('skipped work counts toward the total but not the rate', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = new Progress({ total: 0, label: 'dl', unit: 'B', stream, clock: clock.now });
    p.setTotal(3000);
    p.skip(2000);
    clock.advance(2000);
    p.tick(1000);
    p.done();
    expect(stream.text).toBe('dl: 2.9 KiB (2.0 KiB already present) in 2.0s, 500 B/s\n');
  });

  it('a status (units running and failed on a queue) follows the numbers, and the next line shows its change', () => {
    const stream = fakeStream(true);
    const clock = fakeClock();
    const p = new Progress({ total: 100, label: 'sweep', unit: 'tok', stream, clock: clock.now });
    p.setStatus('2 running');
    clock.advance(1000);
    p.tick(50);
    expect(stream.writes.at(-1)).toMatch(/ETA 1\.0s {2}2 running\x1b\[K$/);
    clock.advance(1000);
    p.setStatus('1 running, 1 failed');
    expect(stream.writes.at(-1)).toMatch(/ETA 2\.0s {2}1 running, 1 failed\x1b\[K$/);
  });
});
