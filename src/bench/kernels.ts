import type { Kernels, Matrix } from '../kernels/api.js';
import type { MatmulPart } from '../kernels/types.js';
import { Progress } from '../util/progress.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { KvpackEngine } from './engines.js';
import { promptTokens } from './speed.js';
import { formatNumber, type Table } from './table.js';

/**
 * Where kvpack's time goes: every kernel call is timed (wall clock, so a multi-threaded call counts
 * its synchronisation too) and grouped by kernel, matmuls by weight shape. The timer costs well under
 * a microsecond per call, against tens of microseconds for the smallest matmul.
 */

const TIMED = ['matmul', 'matmuls', 'rmsnorm', 'rope', 'softmax', 'siluMul', 'add', 'addBias', 'embed', 'toF16', 'attention'] as const;

export interface KernelTimes {
  /** label → [ms, calls] */
  byKernel: Map<string, [number, number]>;
}

/** Wraps the kernel methods of `k` in place; `times` is filled while `on()` says so. */
export function instrumentKernels(k: Kernels, on: () => boolean): KernelTimes {
  const times: KernelTimes = { byKernel: new Map() };
  const target = k as unknown as Record<string, (...args: unknown[]) => unknown>;
  let depth = 0; // a kernel that calls another (matmul through matmuls) is timed once, as the outer call
  for (const name of TIMED) {
    const inner = target[name]!.bind(k);
    target[name] = (...args: unknown[]) => {
      if (!on() || depth > 0) return inner(...args);
      const t0 = performance.now();
      depth++;
      let result: unknown;
      try {
        result = inner(...args);
      } finally {
        depth--;
      }
      const ms = performance.now() - t0;
      const label = name === 'matmul' ? matmulLabel([args[2] as Matrix]) : name === 'matmuls' ? matmulLabel((args[1] as MatmulPart[]).map((p) => p.w)) : name;
      const e = times.byKernel.get(label) ?? [0, 0];
      e[0] += ms;
      e[1] += 1;
      times.byKernel.set(label, e);
      return result;
    };
  }
  return times;
}

/** `matmul 2048×8192 q4_k`; fused products (q/k/v, gate/up) as their shapes joined by `+`. */
function matmulLabel(ws: readonly Matrix[]): string {
  return `matmul ${ws.map((w) => `${w.rows}×${w.cols} ${w.dtype}`).join(' + ')}`;
}

interface Breakdown {
  model: string;
  threads: number;
  phase: string;
  totalMs: number;
  tokPerS: number;
  kernels: { label: string; ms: number; calls: number }[];
}

async function profileOne(ctx: BenchContext, specId: string, threads: number, quick: boolean): Promise<Breakdown[]> {
  const spec = ctx.selectedModels().find((m) => m.id === specId)!;
  const model = await ctx.model(spec);
  const file = ctx.options.kvpackFormat === 'hf' ? model.hfDir : model.gguf;
  const engine = await KvpackEngine.open(file, { threads, cache: ctx.options.cache });
  let recording = false;
  const times = instrumentKernels(engine.model.kernels, () => recording);
  const decodeTokens = quick ? 16 : 64;
  const prefillTokens = quick ? 128 : 512;
  const prompt = promptTokens(prefillTokens, model.firstPlainToken, model.vocabSize);
  const chunk = Math.min(prefillTokens, Math.max(...ctx.options.chunkSizes.filter((c) => c <= prefillTokens), 1));
  const out: Breakdown[] = [];
  try {
    for (const phase of ['decode', 'prefill'] as const) {
      const run = (timing?: (on: boolean) => void) =>
        phase === 'decode' ? engine.decode(prompt.slice(0, decodeTokens), decodeTokens, timing) : engine.prefill(prompt, chunk, timing);
      await run(); // warm-up
      times.byKernel.clear();
      const ms = await run((on) => (recording = on));
      const tokens = phase === 'decode' ? decodeTokens : prefillTokens;
      out.push({
        model: spec.label,
        threads,
        phase: phase === 'decode' ? `decode ${decodeTokens}` : `prefill ${prefillTokens} (chunk ${chunk})`,
        totalMs: ms,
        tokPerS: tokens / (ms / 1000),
        kernels: [...times.byKernel].map(([label, [kms, calls]]) => ({ label, ms: kms, calls })).sort((a, b) => b.ms - a.ms),
      });
    }
  } finally {
    await engine.close();
  }
  return out;
}

function breakdownTable(b: Breakdown): Table {
  const inKernels = b.kernels.reduce((a, k) => a + k.ms, 0);
  return {
    title: `kvpack time by kernel: ${b.model}, ${b.threads} thread(s), ${b.phase} — ${formatNumber(b.tokPerS)} tok/s`,
    columns: [
      { key: 'kernel', header: 'kernel', align: 'left' },
      { key: 'share', header: 'share', format: (v) => `${(100 * v).toFixed(1)}%` },
      { key: 'ms', header: 'ms' },
      { key: 'calls', header: 'calls', format: String },
      { key: 'us', header: 'µs/call' },
    ],
    rows: [
      ...b.kernels.map((k) => ({ kernel: k.label, share: k.ms / b.totalMs, ms: k.ms, calls: k.calls, us: (1000 * k.ms) / k.calls })),
      { kernel: 'outside kernels (JS)', share: (b.totalMs - inKernels) / b.totalMs, ms: b.totalMs - inKernels, calls: null, us: null },
    ],
  };
}

async function runKernels(ctx: BenchContext): Promise<SectionResult> {
  const all: Breakdown[] = [];
  const specs = ctx.selectedModels();
  const progress = new Progress({ total: specs.length * ctx.options.threads.length, label: 'kernels', unit: 'configs' });
  for (const spec of specs) {
    for (const threads of ctx.options.threads) {
      all.push(...(await profileOne(ctx, spec.id, threads, ctx.options.quick)));
      progress.tick();
    }
  }
  progress.done();
  return { tables: all.map(breakdownTable), data: all };
}

export const kernelsSection: Section = {
  id: 'kernels',
  describe: 'kvpack time per kernel for decode and prefill (opt-in: --section kernels)',
  defaultOn: false,
  run: runKernels,
};
