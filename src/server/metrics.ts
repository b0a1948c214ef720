import { Counter, Gauge, Registry } from 'prom-client';
import type { Scheduler } from './scheduler.js';

/** Seconds over which /metrics reports generated tokens per second. */
const RATE_WINDOW_S = 10;

/**
 * Prometheus metrics of one server. Gauges read the scheduler when scraped; token counters and the
 * rate are sampled from the scheduler's running totals then too.
 */
export function serverMetrics(scheduler: Scheduler, maxKvBytes: number): Registry {
  const registry = new Registry();
  const samples: { t: number; generated: number }[] = [];
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  const total = (name: string, help: string, read: () => number) =>
    new Counter({
      name, help, registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });

  gauge('kvpack_kv_bytes', 'real bytes of KV cache held by all sessions', () => scheduler.stats().kvBytes);
  gauge('kvpack_kv_bytes_peak', 'highest kvpack_kv_bytes seen', () => scheduler.stats().kvBytesPeak);
  gauge('kvpack_kv_bytes_reserved', 'bytes the running sessions may grow to', () => scheduler.stats().kvBytesReserved);
  gauge('kvpack_kv_bytes_allocated', 'kernel memory the running sessions\' caches may allocate', () => scheduler.stats().kvBytesAllocated);
  gauge('kvpack_kv_bytes_limit', 'the --max-kv-bytes budget', () => maxKvBytes);
  gauge('kvpack_sessions', 'requests running', () => scheduler.stats().sessions);
  gauge('kvpack_queue_length', 'requests waiting for a session', () => scheduler.stats().queued);
  total('kvpack_sessions_admitted_total', 'requests that got a session', () => scheduler.stats().admitted);
  total('kvpack_prompt_tokens_total', 'prompt tokens of admitted requests', () => scheduler.stats().promptTokens);
  total('kvpack_generated_tokens_total', 'tokens generated', () => scheduler.stats().generatedTokens);
  gauge('kvpack_tokens_per_second', `tokens generated per second since the scrape at least ${RATE_WINDOW_S} s ago`, () => {
    const now = performance.now() / 1000;
    samples.push({ t: now, generated: scheduler.stats().generatedTokens });
    // keep one sample at least a window old, so sparse scrapes still see a rate
    while (samples.length > 2 && now - samples[1]!.t >= RATE_WINDOW_S) samples.shift();
    const first = samples[0]!;
    return now > first.t ? (samples[samples.length - 1]!.generated - first.generated) / (now - first.t) : 0;
  });
  return registry;
}
