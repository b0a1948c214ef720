import { describe, expect, it } from 'vitest';
import { KvpackError, UsageError } from '../../src/errors.js';
import { createKernels } from '../../src/kernels/index.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { Sampler } from '../../src/engine/sample.js';
import { STORIES_BIN, withModel } from './helpers.js';

// Library misuse a fuzzing pass found crashing or silently wrong: each must be a typed error or right.
let model: Model;
withModel(STORIES_BIN, (m) => (model = m));

async function collect(gen: AsyncGenerator<string>): Promise<string> {
  let text = '';
  for await (const piece of gen) text += piece;
  return text;
}

describe('sampling edge cases', () => {
  it('top-p 0 keeps the most likely token, even from a flat distribution', () => {
    const s = new Sampler(4, { temperature: 1, topP: 0, seed: 1 });
    for (let i = 0; i < 50; i++) expect(s.sample([0.1, 2, 0.3, -1])).toBe(1);
    const flat = new Sampler(5, { temperature: 1, topP: 1e-9, seed: 2 });
    for (let i = 0; i < 20; i++) expect(flat.sample([0, 0, 0, 0, 0])).toBeGreaterThanOrEqual(0);
    expect(new Sampler(1, { temperature: 1, topP: 0.5, seed: 3 }).sample([7])).toBe(0);
  });
});

describe('session options are checked', () => {
  it.each([
    [{ topP: Number.NaN }, 'topP'],
    [{ topP: -1 }, 'topP'],
    [{ temperature: Number.NaN }, 'temperature'],
    [{ temperature: Infinity }, 'temperature'],
    [{ maxTokens: -1 }, 'maxTokens'],
    [{ maxTokens: Number.NaN }, 'maxTokens'],
    [{ stop: [null] }, 'stop'],
    [{ seed: 2 ** 32 }, 'seed'],
    [{ seed: 1.5 }, 'seed'],
    [{ seed: Number.NaN }, 'seed'],
    [{ maxTokenz: 3 }, 'maxTokenz'],
  ])('generate(%j) is a UsageError naming %s', async (options, name) => {
    const session = model.session();
    await expect(collect(session.generate('Once', options as never))).rejects.toThrow(UsageError);
    await expect(collect(session.generate('Once', options as never))).rejects.toThrow(name);
    expect(session.tokens).toEqual([]);
    session.dispose();
  });

  it('session({ cache: 123 }) and a bad chunkSize are UsageErrors', () => {
    expect(() => model.session({ cache: 123 as never })).toThrow(/cache must be a non-empty string/);
    expect(() => model.session({ chunkSize: 0 })).toThrow(UsageError);
  });

  it('a closed model refuses new sessions, and its open sessions refuse every use (issue 22)', async () => {
    const own = await loadModel(STORIES_BIN, { threads: 1 });
    const session = own.session();
    session.feed([1, 400]);
    await own.close();
    expect(own.closed).toBe(true);
    expect(() => own.session()).toThrow(UsageError);
    expect(() => own.session()).toThrow(/the model was closed/);
    expect(() => session.feed([401])).toThrow(/the model was closed/);
    await expect(collect(session.generate('more', { maxTokens: 2 }))).rejects.toThrow(/the model was closed/);
    expect(() => session.score([1, 400, 401])).toThrow(/the model was closed/);
  });

  it('a disposed session refuses every use', async () => {
    const session = model.session();
    session.dispose();
    await expect(collect(session.generate('Once', { maxTokens: 2 }))).rejects.toThrow(/disposed/);
    expect(() => session.feed([1])).toThrow(/disposed/);
    expect(() => session.score([1, 2, 3])).toThrow(/disposed/);
    session.dispose(); // twice is harmless
  });
});

describe('generation and the history', () => {
  it('a second generate() while one runs is refused, and the first is unharmed', async () => {
    const alone = model.session();
    const expected = await collect(alone.generate('Once upon a time', { maxTokens: 16, temperature: 0 }));
    alone.dispose();
    const session = model.session();
    const first = session.generate('Once upon a time', { maxTokens: 16, temperature: 0 });
    const second = session.generate('The cat', { maxTokens: 16, temperature: 0 });
    let text = (await first.next()).value as string;
    await expect(second.next()).rejects.toThrow(/still running/);
    for await (const piece of first) text += piece;
    expect(text).toBe(expected);
    session.dispose();
  });

  it('breaking out of the loop leaves the history holding every token emitted', async () => {
    const session = model.session();
    const promptIds = model.tokenizer.encode('Once upon a time', { addBos: model.tokenizer.addBosByDefault });
    let text = '';
    for await (const piece of session.generate('Once upon a time', { maxTokens: 30, temperature: 0 })) {
      text += piece;
      if (text.length > 20) break;
    }
    const generated = session.tokens.slice(promptIds.length);
    expect(model.tokenizer.decode(generated)).toBe(text);
    // and the session can go on
    await collect(session.generate(' and', { maxTokens: 2, temperature: 0 }));
    session.dispose();
  });
});

describe('memory', () => {
  it('a failed allocation rolls back: later sessions still open', async () => {
    expect(() => model.session({ chunkSize: 1e7 })).toThrow(KvpackError);
    expect(() => model.session({ chunkSize: 1e7 })).toThrow(/out of kernel memory/);
    const session = model.session({ cache: 'h2o(budget=16)' });
    expect(await collect(session.generate('Once', { maxTokens: 3, temperature: 0 }))).not.toBe('');
    session.dispose();
  });

  it('a session reserves slots by its budget, not the whole context', () => {
    const used = model.kernels.arena.used;
    const small = model.session({ cache: 'window(sinks=2,recent=14)', chunkSize: 16 });
    const smallBytes = model.kernels.arena.used - used;
    small.dispose();
    const full = model.session({ cache: 'full', chunkSize: 16 });
    const fullBytes = model.kernels.arena.used - used;
    full.dispose();
    // stories260K: context 512; the window needs 16 + 16 slots per head, the full cache 512
    expect(smallBytes).toBeLessThan(fullBytes / 4);
  });

  it('threads beyond the cores are refused by the library too', async () => {
    await expect(createKernels({ threads: 100000 })).rejects.toThrow(UsageError);
    await expect(createKernels({ threads: Number.NaN })).rejects.toThrow(UsageError);
  });
});

describe('batches (sessions stepped together)', () => {
  it('refuses bad sizes, more sessions than rows, no session, a token count that differs, and another model\'s session', async () => {
    for (const options of [{ rows: 0, chunkSize: 4 }, { rows: 2, chunkSize: 1.5 }, { rows: 2 }]) {
      expect(() => model.batch(options as never), JSON.stringify(options)).toThrow(UsageError);
    }
    const batch = model.batch({ rows: 2, chunkSize: 4 });
    const sessions = [0, 1, 2].map(() => model.session({ chunkSize: 4 }));
    for (const s of sessions) s.feed([1]);
    expect(() => batch.decode(sessions, [5, 6, 7])).toThrow(/3 sessions to decode, the batch holds 1 to 2/);
    expect(() => batch.decode([], [])).toThrow(UsageError);
    expect(() => batch.decode(sessions.slice(0, 2), [5])).toThrow(/1 tokens for 2 sessions/);
    const other = await loadModel(STORIES_BIN, { threads: 1 });
    const stranger = other.session({ chunkSize: 4 });
    expect(() => batch.decode([sessions[0]!, stranger], [5, 6])).toThrow(/another model/);
    expect(() => batch.prefill(stranger, [1, 2]).next()).toThrow(/another model/);
    // what it refused changed nothing: the batch still decodes its model's sessions
    expect(batch.decode(sessions.slice(0, 2), [5, 6])).toHaveLength(2 * model.config.vocabSize);
    expect(sessions.map((s) => s.tokens)).toEqual([[1, 5], [1, 6], [1]]);
    await other.close();
    batch.free();
    for (const s of sessions) s.dispose();
  });
});
