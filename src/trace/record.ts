import path from 'node:path';
import { compressionRatio } from '../cache/kvcache.js';
import type { Model } from '../engine/model.js';
import { TextStream } from '../tokenizer/stream.js';
import { Progress } from '../util/progress.js';
import { UsageError } from '../errors.js';
import { TraceRecorder } from './recorder.js';
import { TraceWriter } from './writer.js';

export interface TraceOptions {
  /** Cache specs; each is one run over the same tokens. */
  specs: string[];
  /** Prompt token ids. */
  prompt: readonly number[];
  /** Tokens the first spec generates greedily after the prompt; later specs are fed the same ones. */
  maxTokens: number;
  out: string;
  /** Byte bound of the file (default 64 MiB). */
  maxBytes?: number;
  /** Progress on stderr (default true). */
  progress?: boolean;
}

export interface TraceSummary {
  file: string;
  bytes: number;
  tokens: number;
  /** Per spec: its steps, and the bytes its cache held at the end and their compression against the full fp16 cache. */
  runs: { spec: string; steps: number; truncated: boolean; bytes: number; compression: number }[];
}

export const DEFAULT_TRACE_BYTES = 64 * 2 ** 20;

/**
 * Records a trace: the prompt goes in as one step (compressed as a whole), then one step per
 * generated token. The first spec picks the tokens; every spec then sees the same text, so their
 * held sets can be compared token by token.
 */
export async function recordTrace(model: Model, options: TraceOptions): Promise<TraceSummary> {
  if (options.specs.length === 0) throw new UsageError('a trace needs at least one --cache');
  if (options.prompt.length === 0) throw new UsageError('a trace needs a prompt of at least one token');
  const c = model.config;
  const writer = new TraceWriter(options.out, {
    model: path.basename(model.source), layers: c.numLayers, kvHeads: c.numKvHeads, maxBytes: options.maxBytes ?? DEFAULT_TRACE_BYTES,
  });
  const runs: TraceSummary['runs'] = [];
  let generated: number[] | undefined;
  try {
    for (const spec of options.specs) {
      const session = model.session({ cache: spec });
      const progress = options.progress === false ? undefined : new Progress({ total: options.prompt.length + (generated?.length ?? options.maxTokens), label: `trace ${session.cache.spec}`, unit: 'tok' });
      try {
        let fed = 0;
        const recorder = new TraceRecorder(session, (heads, tokens) => {
          progress?.tick(tokens - fed);
          fed = tokens;
          return writer.step(heads, tokens);
        });
        writer.beginRun(session.cache.spec, recorder.scoreName, recorder.errors);
        if (generated) {
          session.feed(options.prompt);
          for (const id of generated) session.feed([id]);
        } else {
          for await (const _ of session.generate(options.prompt, { maxTokens: options.maxTokens, temperature: 0 }));
          generated = session.tokens.slice(options.prompt.length);
        }
        recorder.detach();
        const end = writer.endRun(session.cache.peakBytes());
        const bytes = session.cache.bytes();
        runs.push({ spec: session.cache.spec, steps: end.steps, truncated: end.truncated, bytes, compression: compressionRatio(c, session.tokens.length, bytes) });
        progress?.done();
      } finally {
        session.dispose();
      }
    }
    const ids = [...options.prompt, ...generated!];
    const stream = new TextStream(model.tokenizer);
    writer.tokens({ ids, pieces: ids.map((id) => stream.push(id)), prompt: options.prompt.length });
  } finally {
    writer.close();
  }
  return { file: options.out, bytes: writer.bytes, tokens: options.prompt.length + generated!.length, runs };
}
