import { budget } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape, type ReconstructionChunk, type SlotView, type TokenRows } from '../policy.js';
import { int, type Infer } from '../../util/schema.js';
import { selectFirst } from '../../util/select.js';
import { BudgetPolicy, leavingRoom, SlotArrays } from './base.js';

const PARAMS = {
  budget: budget({ doc: 'tokens kept per KV head on average over every layer and head: a count or a fraction of the prompt' }),
  every: int({ min: 1, max: 65536, default: 32, doc: 'tokens that may arrive between reconstructions: a cut keeps that many fewer than the budget (at most half of it)' }),
  sinks: int({ min: 0, max: 1024, default: 4, doc: 'first tokens always kept' }),
  chunk: int({ min: 128, max: 1 << 20, default: 2000, doc: "held tokens per reconstruction chunk; each chunk's repeat is scored over its own chunk and the sinks (KVzip: 2000)" }),
};

type Params = Infer<typeof PARAMS>;

/** What the model is asked before the held tokens are fed again (KVzip's prompts, without a chat template). */
const REPEAT_PROMPT = '\n\nRepeat the previous context exactly.';
/** Later chunks: this, then the last LEAD tokens of the chunk before, then the chunk. */
const REPEAT_PART_PROMPT = '\n\nRepeat the part of the previous context exactly, starting with ';
const LEAD = 8;

/**
 * KVzip (Kim et al., arXiv:2505.23416): query-agnostic scores from a context reconstruction. When
 * the cache holds more than numLayers × numKvHeads × budget tokens, the session feeds the model
 * `reconstructionPrompt` and then every held token again, one at a time after the last position,
 * with nothing evicted; a slot's score is the most attention any of those queries (any query head
 * of its KV head) paid it. Past `chunk` held tokens this runs chunk by chunk as KVzip's
 * `self_task` does: chunk i > 0 is fed after REPEAT_PART_PROMPT and the last 8 tokens of chunk i − 1,
 * each chunk's repeat is dropped before the next, and its queries' attention is renormalised over
 * the keys KVzip's score softmax takes (the sinks, the chunk's held slots and the repeat's own; the
 * model's own attention still sees everything, as there) and scores the chunk's slots only.
 * The repeat is then dropped from the cache and one threshold over every
 * layer and head keeps the best numLayers × numKvHeads × target (sinks always), so layers and heads
 * keep different counts. Between reconstructions nothing is evicted; a cut leaves `every` tokens
 * of room. Scores are transient (as in the paper): they are not counted in the cache's bytes.
 */
class KVzipPolicy extends BudgetPolicy<Params & { schedule: 'uniform' }> {
  readonly tailQueries = 1;
  readonly needsReceived = false;
  readonly reconstructionPrompt = REPEAT_PROMPT;
  /** Per slot: the most attention a reconstruction query paid it; +Infinity once chosen to stay. */
  private readonly best: SlotArrays<Float32Array>;
  private readonly sink: SlotArrays<Uint8Array>;
  /** Per slot: its position (the cache's slot positions, which it counts, mirrored for the chunk test). */
  private readonly position: SlotArrays<Int32Array>;
  /** The positions of the chunk being repeated (undefined: every held slot, as one chunk). */
  private chunkRange: { first: number; last: number } | undefined;
  private chunks = 0;
  /** Per layer, per KV head: slots of the held tokens while a reconstruction runs (the repeat follows them). */
  private context: number[][] | undefined;
  /** Per layer: tokens all its heads keep after the cut now due (undefined: none due). */
  private keep: number[] | undefined;
  private passes = 0;
  private extraTokens = 0;
  private extraMs = 0;

  constructor(params: Params, shape: PolicyShape) {
    super({ ...params, schedule: 'uniform' }, shape);
    this.best = this.track(new SlotArrays((n) => new Float32Array(n), shape), false);
    this.sink = this.track(new SlotArrays((n) => new Uint8Array(n), shape));
    this.position = this.track(new SlotArrays((n) => new Int32Array(n), shape), false);
  }

  /** KVzip's chunks of the held positions: `chunk` each, later ones led in by the last LEAD of the one before. */
  reconstructionChunks(positions: readonly number[]): ReconstructionChunk[] {
    const size = this.params.chunk;
    const chunks: ReconstructionChunk[] = [];
    for (let from = 0; from < positions.length || from === 0; from += size) {
      chunks.push({
        prompt: from === 0 ? REPEAT_PROMPT : REPEAT_PART_PROMPT,
        lead: positions.slice(Math.max(0, from - LEAD), from),
        positions: positions.slice(from, from + size),
      });
    }
    return chunks;
  }

  beginChunk(chunk: ReconstructionChunk): void {
    this.chunks++;
    const p = chunk.positions;
    this.chunkRange = p.length > 0 && p.length < this.totalHeld ? { first: p[0]!, last: p[p.length - 1]! } : undefined;
  }

  /** Distinct positions held when the pass began (a chunk holding them all is the whole context). */
  private totalHeld = 0;

  override get raggedHeads(): boolean {
    return true;
  }

  /** The nominal budget per head; the cut a reconstruction decides is per layer (see target). */
  private nominal(): number {
    return this.budgets.forLayer(0);
  }

  private cutTo(): number {
    return leavingRoom(this.nominal(), this.params.every);
  }

  /** Nothing is evicted but the cut a reconstruction decided (or room a byte limit asks for). */
  override budget(layer: number): number {
    return this.keep ? this.keep[layer]! / this.shape.numKvHeads : Infinity;
  }

  override target(layer: number): number {
    return this.budget(layer);
  }

  /** Asked before every compression: a cut decided by the last reconstruction has been made by then. */
  reconstructionDue(held: number): boolean {
    this.keep = undefined;
    return held > this.nominal() * this.shape.numLayers * this.shape.numKvHeads;
  }

  /** `counts[l][h]`: the slots a layer's head holds; their scores start from nothing. */
  beginReconstruction(counts: readonly (readonly number[])[]): void {
    this.context = counts.map((c) => [...c]);
    this.best.reset();
    this.chunkRange = undefined;
    const held = new Set<number>();
    counts.forEach((heads, l) => heads.forEach((n, h) => {
      const pos = this.position.of(l, h);
      for (let s = 0; s < n; s++) held.add(pos[s]!);
    }));
    this.totalHeld = held.size;
  }

  /** Sets the cut: the best numLayers × numKvHeads × target held slots of all layers and heads together. */
  endReconstruction(tokens: number, ms: number): void {
    const counts = this.context!;
    this.context = undefined;
    this.chunkRange = undefined;
    this.passes++;
    this.extraTokens += tokens;
    this.extraMs += ms;
    const { numLayers, numKvHeads } = this.shape;
    const total = counts.reduce((sum, c) => sum + c.reduce((a, b) => a + b, 0), 0);
    const wanted = Math.min(total, this.cutTo() * numLayers * numKvHeads);
    // sinks and each head's best slot stay whatever the threshold; the rest compete together
    let fixed = 0;
    const rest: number[] = [];
    for (let l = 0; l < numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        const best = this.best.of(l, h);
        const sink = this.sink.of(l, h);
        let top = -1;
        for (let s = 0; s < counts[l]![h]!; s++) {
          if (sink[s]) continue;
          if (top < 0 || best[s]! > best[top]!) top = s;
        }
        for (let s = 0; s < counts[l]![h]!; s++) {
          if (sink[s] || s === top) {
            best[s] = Infinity;
            fixed++;
          } else rest.push((l * numKvHeads + h) * this.capacityOf() + s);
        }
      }
    }
    const more = Math.max(0, wanted - fixed);
    const items = Int32Array.from(rest);
    const score = (e: number) => this.best.data[Math.floor(e / this.capacityOf())]![e % this.capacityOf()]!;
    if (more > 0 && more < items.length) selectFirst(items, items.length, more, { before: (a, b) => score(a) > score(b) || (score(a) === score(b) && a > b) });
    for (let i = 0; i < Math.min(more, items.length); i++) {
      const e = items[i]!;
      this.best.data[Math.floor(e / this.capacityOf())]![e % this.capacityOf()] = Infinity;
    }
    this.keep = new Array<number>(numLayers).fill(0);
    for (let l = 0; l < numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        const best = this.best.of(l, h);
        for (let s = 0; s < counts[l]![h]!; s++) if (best[s] === Infinity) this.keep[l]!++;
      }
    }
  }

  private capacityOf(): number {
    return this.best.data[0]!.length;
  }

  override onAppend(layer: number, head: number, from: number, n: number, positions: Int32Array, rows: TokenRows | undefined): void {
    super.onAppend(layer, head, from, n, positions, rows);
    const sink = this.sink.of(layer, head);
    const position = this.position.of(layer, head);
    for (let t = 0; t < n; t++) {
      sink[from + t] = positions[t]! < this.params.sinks ? 1 : 0;
      position[from + t] = positions[t]!;
    }
  }

  protected update(stats: AttentionStats): void {
    if (!this.context || stats.tailRows === 0) return;
    const row = (stats.tailRows - 1) * this.shape.numKvHeads * stats.group * stats.capacity;
    const range = this.chunkRange;
    for (let h = 0; h < this.shape.numKvHeads; h++) {
      const best = this.best.of(stats.layer, h);
      const held = this.context[stats.layer]![h]!;
      const sink = this.sink.of(stats.layer, h);
      const position = this.position.of(stats.layer, h);
      const inChunk = (s: number): boolean => !range || (position[s]! >= range.first && position[s]! <= range.last);
      for (let g = 0; g < stats.group; g++) {
        const base = row + (h * stats.group + g) * stats.capacity;
        // softmax over the sinks, the chunk and the repeat = the full softmax renormalised over them
        let kept = 1;
        if (range) {
          kept = 0;
          for (let s = 0; s < stats.length; s++) if (s >= held || sink[s] || inChunk(s)) kept += stats.tail[base + s]!;
        }
        for (let s = 0; s < held; s++) if (inChunk(s)) best[s] = Math.max(best[s]!, stats.tail[base + s]! / kept);
      }
    }
  }

  /** Slots the cut keeps score +Infinity, the rest their reconstruction attention (a byte limit takes the lowest). */
  protected scores(layer: number, head: number, _view: SlotView): ArrayLike<number> {
    return this.best.of(layer, head);
  }

  override reset(): void {
    super.reset();
    this.keep = undefined;
    this.context = undefined;
    this.passes = this.extraTokens = this.extraMs = this.chunks = 0;
    this.chunkRange = undefined;
  }

  readonly scoreName = 'reconstruction attention (∞: kept by the last cut)';
  heldScores(layer: number, head: number, length: number): ArrayLike<number> {
    return this.best.of(layer, head).subarray(0, length);
  }

  note(): string | undefined {
    if (this.passes === 0) return undefined;
    const chunks = this.chunks > this.passes ? ` in ${this.chunks} chunks of at most ${this.params.chunk}` : '';
    return `kvzip ran ${this.passes} reconstruction pass${this.passes === 1 ? '' : 'es'}${chunks}: ${this.extraTokens} extra tokens through the model, ${(this.extraMs / 1000).toFixed(2)} s`;
  }

  stats(): Record<string, number> {
    return { reconstructions: this.passes, reconstruction_chunks: this.chunks, reconstruction_tokens: this.extraTokens, reconstruction_ms: Math.round(this.extraMs) };
  }
}

export const kvzip = policyKind({
  schema: {
    name: 'kvzip',
    doc: 'KVzip: query-agnostic scores from the model repeating what the cache holds; one threshold over all layers and heads',
    paper: 'Kim et al., KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction, NeurIPS 2025 (arXiv:2505.23416)',
    params: PARAMS,
  },
  create: (params, shape) => new KVzipPolicy(params, shape),
});
