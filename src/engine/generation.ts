import { logSoftmax, Sampler, topIndices, type SamplingOptions } from './sample.js';
import { TextStream, textAfter } from '../tokenizer/stream.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export interface GenerationLimits extends SamplingOptions {
  maxTokens: number;
  /** Generation ends before any of these strings; the string itself is not emitted. */
  stop: readonly string[];
  /** Report each generated token's log-probability and this many most likely tokens beside it (undefined: none). */
  logprobs?: number;
}

/** A token, its text in running text, and its log-probability under the model's distribution (the log-softmax of its logits). */
export interface TokenLogprob {
  token: number;
  text: string;
  logprob: number;
}

/** What GenerationLimits.logprobs asks for, for one generated token. */
export interface StepLogprobs extends TokenLogprob {
  /** The most likely tokens at that step, most likely first. */
  top: TokenLogprob[];
}

export type FinishReason = 'stop' | 'length';

/** What one step of a generation gives: text to emit, the token to append to the history, and whether it ended. */
export interface GenerationStep {
  text: string;
  /** The sampled token (undefined when it ended the generation: end of sequence, or a stop string). */
  token: number | undefined;
  /** Set when this step ended the generation. */
  finish: FinishReason | undefined;
  /** For a generated token (not an end of sequence) when logprobs are asked for. */
  logprobs?: StepLogprobs;
}

/**
 * Everything after the prompt that turns logits into text: sampling, streaming detokenization, stop
 * strings, the token limit. Whoever runs the model (a session, the server's batch) feeds it logits.
 */
export class Generation {
  produced = 0;
  private readonly sampler: Sampler;
  private readonly stream: TextStream;
  private readonly filter: StopFilter;
  /** The token before the next one (its text depends on it), and the log-softmax buffer. */
  private previous: number | undefined;
  private logprobRow: Float64Array | undefined;

  /** `prompt`: the tokens before the first generated one (the penalties look back on them; the last starts the text). */
  constructor(private readonly tokenizer: Tokenizer, vocabSize: number, prompt: readonly number[], private readonly limits: GenerationLimits) {
    this.sampler = new Sampler(vocabSize, limits);
    this.sampler.accept(prompt);
    this.stream = new TextStream(tokenizer, prompt.slice(-1));
    this.filter = new StopFilter(limits.stop);
    this.previous = prompt.at(-1);
  }

  step(logits: ArrayLike<number>): GenerationStep {
    const token = this.sampler.sample(logits);
    if (this.tokenizer.eos.includes(token)) return { text: this.end(), token: undefined, finish: 'stop' };
    this.produced++;
    const logprobs = this.limits.logprobs === undefined ? undefined : this.logprobsOf(logits, token, this.limits.logprobs);
    this.previous = token;
    const out = this.filter.push(this.stream.push(token));
    if (out.stopped) return { text: out.text, token: undefined, finish: 'stop', logprobs };
    if (this.produced >= this.limits.maxTokens) return { text: out.text + this.end(), token, finish: 'length', logprobs };
    return { text: out.text, token, finish: undefined, logprobs };
  }

  /** The token's and the `top` most likely tokens' log-probabilities before penalties, filters and temperature (as OpenAI reports them). */
  private logprobsOf(logits: ArrayLike<number>, token: number, top: number): StepLogprobs {
    const row = (this.logprobRow ??= new Float64Array(logits.length));
    logSoftmax(logits, row);
    const text = textAfter(this.tokenizer, this.previous);
    const entry = (id: number): TokenLogprob => ({ token: id, text: text(id), logprob: row[id]! });
    return { ...entry(token), top: topIndices(row, top).map(entry) };
  }

  /** The text still held back when generation ends here. */
  end(): string {
    const out = this.filter.push(this.stream.flush());
    return out.stopped ? out.text : out.text + this.filter.flush();
  }
}

/**
 * Holds generated text back while it could still become one of the stop strings, so a stop string
 * is never emitted, not even in part.
 */
export class StopFilter {
  private pending = '';

  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what may be emitted now, and whether a stop string ended the generation. */
  push(text: string): { text: string; stopped: boolean } {
    this.pending += text;
    const hit = firstStop(this.pending, this.stops);
    if (hit >= 0) {
      const out = this.pending.slice(0, hit);
      this.pending = '';
      return { text: out, stopped: true };
    }
    const safe = this.pending.length - longestStopPrefix(this.pending, this.stops);
    const out = this.pending.slice(0, safe);
    this.pending = this.pending.slice(safe);
    return { text: out, stopped: false };
  }

  /** The text held back at the end of generation (it did not become a stop string). */
  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }
}

function firstStop(text: string, stops: readonly string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = s ? text.indexOf(s) : -1;
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** Length of the longest suffix of text that is a proper prefix of some stop string. */
function longestStopPrefix(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let len = Math.min(s.length - 1, text.length); len > best; len--) {
      if (text.endsWith(s.slice(0, len))) {
        best = len;
        break;
      }
    }
  }
  return best;
}
