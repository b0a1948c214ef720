import fs from 'node:fs';
import path from 'node:path';
import type { Policy, SlotView } from '../../src/cache/policy.js';

/** The slots a policy chooses to evict from one KV head, `count` of them. */
export function choose(p: Policy, layer: number, head: number, count: number, view: SlotView): Int32Array {
  const out = new Int32Array(count);
  p.choose(layer, head, count, view, out);
  return out;
}

/** The first `count` token ids of stories260K's first sampled story. */
export function storyIds(count: number): number[] {
  const story = JSON.parse(fs.readFileSync(path.resolve('../shared/data/stories260k/samples.jsonl'), 'utf8').split('\n')[0]!) as { ids: number[] };
  return story.ids.slice(0, count);
}
