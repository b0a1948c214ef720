/** A strict order on numbers (values, or indices the order looks up): whether a goes before b. */
export interface Order {
  before(a: number, b: number): boolean;
}

export const ASCENDING: Order = { before: (a, b) => a < b };

/**
 * Reorders items[0, n) so that items[0, k) are the k that go first under `order`, the k-th of them
 * at k − 1 (Hoare's selection: no sort, O(n) on average).
 */
export function selectFirst(items: Int32Array | Float32Array, n: number, k: number, order: Order): void {
  const kth = k - 1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = items[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (order.before(items[i]!, pivot)) i++;
      while (order.before(pivot, items[j]!)) j--;
      if (i <= j) {
        const t = items[i]!;
        items[i++] = items[j]!;
        items[j--] = t;
      }
    }
    if (kth <= j) hi = j;
    else if (kth >= i) lo = i;
    else break;
  }
}
