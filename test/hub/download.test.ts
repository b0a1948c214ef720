import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DownloadError, UsageError } from '../../src/errors.js';
import { resolveModel, type ResolveOptions } from '../../src/hub/download.js';
import { COMMIT, FakeHub, gitBlobId, sha256 } from './fake-hub.js';

const REF = fileURLToPath(new URL('../../../shared/models/ref-6m', import.meta.url));
const read = (name: string): Buffer => readFileSync(join(REF, name));
const ref = {
  'config.json': read('config.json'),
  'tokenizer.json': read('tokenizer.json'),
  'model.safetensors': read('model.safetensors'),
};
const REPO_DIR = 'models--test--ref-6m';

const hub = new FakeHub({
  'test/ref-6m': ref,
  'test/one-gguf': { 'model-f32.gguf': Buffer.from('GGUF one') },
  'test/two-ggufs': { 'a-q8.gguf': Buffer.from('GGUF a'), 'b-f16.gguf': Buffer.from('GGUF b'), 'README.md': Buffer.from('hi') },
  'test/sharded': {
    'config.json': ref['config.json'],
    'model.safetensors.index.json': Buffer.from(
      JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }),
    ),
    'model-00001-of-00002.safetensors': Buffer.alloc(3000, 1),
    'model-00002-of-00002.safetensors': Buffer.alloc(2000, 2),
  },
  'test/pytorch-only': { 'config.json': ref['config.json'], 'pytorch_model.bin': Buffer.alloc(10) },
});

let cacheDir: string;
const savedEnv = { ...process.env };

beforeAll(async () => {
  await hub.start();
});

afterAll(async () => {
  await hub.stop();
});

beforeEach(async () => {
  hub.reset();
  cacheDir = await mkdtemp(join(tmpdir(), 'kvpack-hub-'));
  // Nothing from the machine's own Hugging Face setup may leak in (tokens, endpoint, offline mode, cache).
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_ENDPOINT', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HF_TOKEN_PATH']) {
    delete process.env[k];
  }
  process.env.HF_HOME = join(cacheDir, 'hf-home');
});

afterEach(async () => {
  process.env = { ...savedEnv };
  await rm(cacheDir, { recursive: true, force: true });
});

function opts(extra: ResolveOptions = {}): ResolveOptions {
  return { endpoint: hub.endpoint, cacheDir, onProgress: false, ...extra };
}

function expectRefLayout(snapshot: string): void {
  const repoDir = join(cacheDir, REPO_DIR);
  expect(snapshot).toBe(join(repoDir, 'snapshots', COMMIT));
  expect(readFileSync(join(repoDir, 'refs', 'main'), 'utf8')).toBe(COMMIT);
  const expectedBlobs = {
    'config.json': gitBlobId(ref['config.json']),
    'tokenizer.json': gitBlobId(ref['tokenizer.json']),
    'model.safetensors': sha256(ref['model.safetensors']),
  };
  expect(readdirSync(join(repoDir, 'blobs')).sort()).toEqual(Object.values(expectedBlobs).sort());
  for (const [name, blob] of Object.entries(expectedBlobs)) {
    const link = join(snapshot, name);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(`../../blobs/${blob}`);
    expect(readFileSync(link).equals(ref[name as keyof typeof ref])).toBe(true);
  }
}

describe('resolveModel', () => {
  it('returns an existing local path unchanged', async () => {
    expect(await resolveModel(REF, opts())).toBe(REF);
    expect(await resolveModel(join(REF, 'model.safetensors'), opts())).toBe(join(REF, 'model.safetensors'));
    expect(hub.requests).toHaveLength(0);
  });

  it('rejects a missing path that is not a repo id with a UsageError', async () => {
    for (const spec of ['./no/such/dir', 'missing-model.gguf', '/no/such/abs/path', 'a/../b', 'owner/na--me']) {
      const err = await resolveModel(spec, opts()).catch((e: unknown) => e);
      expect(err, spec).toBeInstanceOf(UsageError);
      expect((err as Error).message).toContain(spec);
    }
    expect(hub.requests).toHaveLength(0);
  });

  it('downloads a repo into the hub cache layout, then serves it from the cache', async () => {
    const seen: number[] = [];
    let total = 0;
    const snapshot = await resolveModel('test/ref-6m', opts({ onProgress: (p) => (seen.push(p.bytes), (total = p.totalBytes)) }));
    expectRefLayout(snapshot);
    const sizes = Object.values(ref).reduce((a, b) => a + b.length, 0);
    expect(total).toBe(sizes);
    expect(seen.at(-1)).toBe(sizes);
    expect(hub.requests[0]!.path).toBe('/api/models/test/ref-6m/revision/main');
    // LFS files came through the redirect to the CDN path.
    expect(hub.fileRequests().some((r) => r.path.startsWith('/cdn/'))).toBe(true);
    expect(existsSync(join(cacheDir, REPO_DIR, 'blobs', `${sha256(ref['model.safetensors'])}.incomplete`))).toBe(false);

    hub.reset();
    expect(await resolveModel('test/ref-6m', opts())).toBe(snapshot);
    expect(hub.requests).toHaveLength(1); // the revision lookup only
    expect(hub.fileRequests()).toHaveLength(0);

    // Pinned to the commit: a complete snapshot needs no request at all.
    hub.reset();
    expect(await resolveModel(`test/ref-6m@${COMMIT}`, opts())).toBe(snapshot);
    expect(hub.requests).toHaveLength(0);
  });

  it('shows a progress bar on stderr by default, only while something downloads', async () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    try {
      await resolveModel('test/ref-6m', { endpoint: hub.endpoint, cacheDir });
      expect(writes.join('')).toMatch(/^(\r)?test\/ref-6m: 25\.1 MiB in .*\/s(\x1b\[K)?\n$/m);
      writes.length = 0;
      await resolveModel('test/ref-6m', { endpoint: hub.endpoint, cacheDir });
      expect(writes).toEqual([]);
    } finally {
      spy.mockRestore();
    }
  });

  it('reads HF_ENDPOINT and HF_HOME when no options are given', async () => {
    process.env.HF_ENDPOINT = hub.endpoint;
    const snapshot = await resolveModel('test/one-gguf', { onProgress: false });
    expect(snapshot).toBe(join(cacheDir, 'hf-home', 'hub', 'models--test--one-gguf', 'snapshots', COMMIT, 'model-f32.gguf'));
    expect(readFileSync(snapshot, 'utf8')).toBe('GGUF one');
  });

  it('falls back to a complete cached snapshot when the network fails, and says so when there is none', async () => {
    const snapshot = await resolveModel('test/ref-6m', opts());
    const dead = await deadEndpoint();
    expect(await resolveModel('test/ref-6m', opts({ endpoint: dead }))).toBe(snapshot);
    expect(await resolveModel('test/ref-6m', opts({ endpoint: dead, offline: true }))).toBe(snapshot);
    hub.knobs.apiStatus = 503; // a hub outage counts as no network
    expect(await resolveModel('test/ref-6m', opts())).toBe(snapshot);
    hub.reset();

    const err = await resolveModel('test/one-gguf', opts({ endpoint: dead })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toContain(dead);
    expect((err as Error).message).toContain('test/one-gguf');
  });

  it('resumes with a Range request when the connection drops mid-download', async () => {
    hub.knobs.cut = { file: 'model.safetensors', bytes: 5_000_000, times: 1 };
    const snapshot = await resolveModel('test/ref-6m', opts());
    expectRefLayout(snapshot);
    const cdn = hub.fileRequests().filter((r) => r.path.startsWith('/cdn/'));
    expect(cdn).toHaveLength(2);
    expect(cdn[0]!.range).toBeUndefined();
    expect(cdn[1]!.range).toMatch(/^bytes=\d+-$/);
    const resumedAt = Number(/\d+/.exec(cdn[1]!.range!)![0]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(5_000_000);
  });

  it('gives up after a few attempts that make no progress, naming the file and the endpoint', async () => {
    hub.knobs.cut = { file: 'model-f32.gguf', bytes: 0, times: 100 };
    const err = await resolveModel('test/one-gguf', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toContain('test/one-gguf/model-f32.gguf');
    expect((err as Error).message).toContain(hub.endpoint);
    expect(hub.fileRequests().filter((r) => r.path.startsWith('/cdn/'))).toHaveLength(3);
  });

  it('resumes a partial file left by an earlier run, and starts over when the server ignores Range', async () => {
    const blobs = join(cacheDir, REPO_DIR, 'blobs');
    const partial = join(blobs, `${sha256(ref['model.safetensors'])}.incomplete`);
    mkdirSync(blobs, { recursive: true });
    writeFileSync(partial, ref['model.safetensors'].subarray(0, 1_234_567));
    expectRefLayout(await resolveModel('test/ref-6m', opts()));
    expect(hub.fileRequests().find((r) => r.path.startsWith('/cdn/'))!.range).toBe('bytes=1234567-');

    await rm(join(cacheDir, REPO_DIR), { recursive: true });
    mkdirSync(blobs, { recursive: true });
    writeFileSync(partial, ref['model.safetensors'].subarray(0, 1_234_567));
    hub.reset();
    hub.knobs.ignoreRange = true;
    expectRefLayout(await resolveModel('test/ref-6m', opts()));
  });

  it('rejects a size mismatch and keeps nothing of the file', async () => {
    hub.knobs.apiSize = { 'config.json': ref['config.json'].length + 7 };
    const err = await resolveModel('test/ref-6m', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toMatch(/test\/ref-6m\/config\.json.*bytes/);
    const repoDir = join(cacheDir, REPO_DIR);
    expect(readdirSync(join(repoDir, 'blobs'))).toEqual([]);
    expect(existsSync(join(repoDir, 'refs', 'main'))).toBe(false);
    expect(existsSync(join(repoDir, 'snapshots', COMMIT, 'config.json'))).toBe(false);
  });

  it('rejects contents whose sha256 differs from the hub listing', async () => {
    const bad = Buffer.from(ref['model.safetensors']);
    bad[bad.length - 1]! ^= 0xff;
    hub.knobs.body = { 'model.safetensors': bad };
    const err = await resolveModel('test/ref-6m', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toMatch(/model\.safetensors: sha256 [0-9a-f]{64} does not match/);
    const blobs = readdirSync(join(cacheDir, REPO_DIR, 'blobs'));
    expect(blobs.some((b) => b.startsWith(sha256(ref['model.safetensors'])))).toBe(false);
    expect(existsSync(join(cacheDir, REPO_DIR, 'snapshots', COMMIT, 'model.safetensors'))).toBe(false);
  });

  it('turns HTTP errors into DownloadErrors that name the repo and suggest a fix', async () => {
    const missing = await resolveModel('test/no-such-repo', opts()).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(DownloadError);
    expect((missing as Error).message).toContain('test/no-such-repo');
    expect((missing as Error).message).toContain('HF_TOKEN');

    hub.knobs.apiStatus = 404;
    const notFound = await resolveModel('test/ref-6m@v9', opts()).catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(DownloadError);
    expect((notFound as Error).message).toMatch(/test\/ref-6m@v9: HTTP 404/);

    hub.reset();
    hub.knobs.fileStatus = { 'model.safetensors': 403 };
    const gated = await resolveModel('test/ref-6m', opts()).catch((e: unknown) => e);
    expect(gated).toBeInstanceOf(DownloadError);
    expect((gated as Error).message).toMatch(/test\/ref-6m\/model\.safetensors: HTTP 403.*gated.*HF_TOKEN/);
  });

  it('sends HF_TOKEN as a bearer token', async () => {
    process.env.HF_TOKEN = 'hf_test_token';
    await resolveModel('test/one-gguf', opts());
    expect(hub.requests.length).toBeGreaterThan(1);
    for (const r of hub.requests) expect(r.authorization).toBe('Bearer hf_test_token');
  });

  it('takes the single .gguf, asks which one when there are several, and takes a named file', async () => {
    const one = await resolveModel('test/one-gguf', opts());
    expect(one).toBe(join(cacheDir, 'models--test--one-gguf', 'snapshots', COMMIT, 'model-f32.gguf'));

    const err = await resolveModel('test/two-ggufs', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain('a-q8.gguf');
    expect((err as Error).message).toContain('b-f16.gguf');
    expect((err as Error).message).toContain('test/two-ggufs/');

    const named = await resolveModel('test/two-ggufs/b-f16.gguf', opts());
    expect(readFileSync(named, 'utf8')).toBe('GGUF b');
    expect(readdirSync(join(cacheDir, 'models--test--two-ggufs', 'snapshots', COMMIT))).toEqual(['b-f16.gguf']);

    const absent = await resolveModel('test/two-ggufs/c.gguf', opts()).catch((e: unknown) => e);
    expect(absent).toBeInstanceOf(DownloadError);
    expect((absent as Error).message).toContain('a-q8.gguf');
  });

  it('downloads the index and every shard of a sharded checkpoint', async () => {
    const snapshot = await resolveModel('test/sharded', opts());
    expect(readdirSync(snapshot).sort()).toEqual([
      'config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
    expect(readFileSync(join(snapshot, 'model-00002-of-00002.safetensors')).equals(Buffer.alloc(2000, 2))).toBe(true);
  });

  it('says so when a repo has no weights kvpack can load', async () => {
    const err = await resolveModel('test/pytorch-only', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toContain('pytorch_model.bin');
  });
});

/** An endpoint on loopback where nothing listens: connections are refused at once. */
async function deadEndpoint(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
