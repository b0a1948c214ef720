import type { Policy, PolicyKind } from '../policy.js';

/** Keeps every token: the baseline every other policy is measured against. */
class FullPolicy implements Policy {
  readonly evicts = false;
  readonly tailQueries = 0;
  readonly needsReceived = false;
  budget(): number {
    return Infinity;
  }
  target(): number {
    return Infinity;
  }
  setPromptLength(): void {}
  onAppend(): void {}
  observe(): void {}
  choose(): Int32Array {
    throw new Error('internal: the full policy never evicts');
  }
  move(): void {}
  bytes(): number {
    return 0;
  }
  resize(): void {}
  reset(): void {}
}

export const full: PolicyKind = {
  schema: { name: 'full', doc: 'keep every token', params: {} },
  create: () => new FullPolicy(),
};
