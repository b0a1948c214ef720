// The greedy pair-merge loop shared by BPE (best = lowest merge rank) and SentencePiece (best = highest score).

/**
 * Merge adjacent symbols of `text` until no pair has a priority. `bounds` are the initial symbol boundaries
 * (strictly increasing, starting at 0 and ending at text.length). `priority(a, b)` gives the merge priority of
 * adjacent pieces a and b (higher merges first; ties go to the leftmost pair, as in llama.cpp), or undefined if
 * they never merge. Returns the final pieces.
 */
export function mergePairs(
  text: string,
  bounds: readonly number[],
  priority: (left: string, right: string) => number | undefined,
): string[] {
  const n = bounds.length - 1;
  if (n <= 0) return [];
  if (n === 1) return [text];
  const start = new Int32Array(n);
  const len = new Int32Array(n);
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    start[i] = bounds[i]!;
    len[i] = bounds[i + 1]! - bounds[i]!;
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new PairHeap();
  const piece = (i: number) => text.substr(start[i]!, len[i]!);
  const tryAdd = (l: number, r: number) => {
    if (l < 0 || r < 0) return;
    const p = priority(piece(l), piece(r));
    if (p !== undefined) heap.push(p, l, r, len[l]! + len[r]!);
  };
  for (let i = 0; i + 1 < n; i++) tryAdd(i, i + 1);
  while (heap.size > 0) {
    const { left, right, size } = heap.pop();
    // Stale entry: one side has merged since it was queued (lengths only grow, so a changed sum means stale).
    if (len[left] === 0 || len[right] === 0 || len[left]! + len[right]! !== size || next[left] !== right) continue;
    len[left] = size;
    len[right] = 0;
    next[left] = next[right]!;
    if (next[right]! >= 0) prev[next[right]!] = left;
    tryAdd(prev[left]!, left);
    tryAdd(left, next[left]!);
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(piece(i));
  return out;
}

/** Max-heap on priority, then min on left index. */
class PairHeap {
  private pri: number[] = [];
  private left: number[] = [];
  private right: number[] = [];
  private sz: number[] = [];
  get size(): number {
    return this.pri.length;
  }
  private before(a: number, b: number): boolean {
    const pa = this.pri[a]!;
    const pb = this.pri[b]!;
    return pa > pb || (pa === pb && this.left[a]! < this.left[b]!);
  }
  private swap(a: number, b: number): void {
    for (const arr of [this.pri, this.left, this.right, this.sz]) {
      const t = arr[a]!;
      arr[a] = arr[b]!;
      arr[b] = t;
    }
  }
  push(p: number, left: number, right: number, size: number): void {
    this.pri.push(p);
    this.left.push(left);
    this.right.push(right);
    this.sz.push(size);
    let i = this.pri.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  pop(): { left: number; right: number; size: number } {
    const top = { left: this.left[0]!, right: this.right[0]!, size: this.sz[0]! };
    const last = this.pri.length - 1;
    this.swap(0, last);
    this.pri.pop();
    this.left.pop();
    this.right.pop();
    this.sz.pop();
    let i = 0;
    const n = this.pri.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < n && this.before(l, best)) best = l;
      if (r < n && this.before(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
    return top;
  }
}
