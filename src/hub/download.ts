/**
 * Turn a model spec into a local path: an existing path as is, or a Hugging Face repo id downloaded into the
 * standard hub cache (see cache.ts), so that huggingface_hub and transformers share the files with kvpack.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, open, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DownloadError, UsageError } from '../errors.js';
import { Progress } from '../util/progress.js';
import { defaultHubCache, findCachedModel, hfHome, repoFolder, shardsFromIndex } from './cache.js';
import { isCommitSha, isSafeRepoPath, parseRepoSpec, type RepoSpec } from './spec.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface DownloadProgress {
  repo: string;
  /** The file being downloaded now. */
  file: string;
  /** Bytes present so far over all files of this call, including ones that were already cached. */
  bytes: number;
  totalBytes: number;
}

export interface ResolveOptions {
  /** Progress reports; default: a Progress bar on stderr; false: silent. */
  onProgress?: ((p: DownloadProgress) => void) | false;
  /** Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** The hub cache folder; default: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Branch, tag or commit; default: '@revision' in the spec, else 'main'. */
  revision?: string;
  /** Default: HF_TOKEN, else the token file huggingface-cli login writes. */
  token?: string;
  /** Use only the cache; default: HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Give up on a request that sends nothing for this long (ms); default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A sibling entry of the hub's model-info answer (`?blobs=true` adds size, blobId and lfs). */
interface RepoFile {
  rfilename: string;
  size?: number;
  blobId?: string;
  lfs?: { sha256?: string; size?: number };
}

interface RepoInfo {
  sha: string;
  siblings: RepoFile[];
}

/** Everything one resolveModel call needs to fetch files. */
interface Context {
  repo: string;
  revision: string;
  endpoint: string;
  repoDir: string;
  sha: string;
  token: string | undefined;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  report: Reporter;
}

/** A failure worth retrying: the connection dropped, timed out, or the server had a passing problem. */
class TransientError extends Error {
  constructor(message: string, readonly madeProgress: boolean) {
    super(message);
  }
}

/** The request never got an answer (DNS, refused, reset, timeout). */
class NetworkError extends Error {}

const MAX_ATTEMPTS_WITHOUT_PROGRESS = 3;
const RETRY_DELAY_MS = 250;

export async function resolveModel(spec: string, options: ResolveOptions = {}): Promise<string> {
  if (existsSync(spec)) return spec;
  const parsed = parseRepoSpec(spec);
  if (!parsed) {
    throw new UsageError(
      `${spec}: no such file or directory, and not a Hugging Face repo id (owner/name[@revision][/file.gguf])`,
    );
  }
  if (parsed.revision && options.revision && parsed.revision !== options.revision) {
    throw new UsageError(`${spec}: names revision '${parsed.revision}' but revision '${options.revision}' was also given`);
  }
  const revision = parsed.revision ?? options.revision ?? 'main';
  if (!isSafeRepoPath(revision)) throw new UsageError(`${spec}: '${revision}' is not a valid revision`);

  const cacheDir = options.cacheDir ?? defaultHubCache();
  const repoDir = repoFolder(cacheDir, parsed.repo);
  const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const offline = options.offline ?? isTruthy(process.env.HF_HUB_OFFLINE);
  const what = `${parsed.repo}@${revision}`;

  // A commit names immutable content, so a complete snapshot of it needs no network at all.
  if (offline || isCommitSha(revision)) {
    const cached = findCachedModel(repoDir, revision, parsed.file);
    if (cached) return cached;
    if (offline) {
      throw new DownloadError(`${what}: offline mode (HF_HUB_OFFLINE) and no complete copy in the cache ${repoDir}`);
    }
  }

  const token = options.token ?? readToken();
  const timeoutMs = options.timeoutMs ?? 30_000;
  let info: RepoInfo;
  try {
    info = await fetchRepoInfo(endpoint, parsed.repo, revision, token, timeoutMs, options.signal);
  } catch (err) {
    if (!(err instanceof NetworkError)) throw err;
    const cached = findCachedModel(repoDir, revision, parsed.file);
    if (cached) return cached;
    throw new DownloadError(
      `${what}: cannot reach ${endpoint} (${err.message}) and the cache ${repoDir} has no complete copy. ` +
        'Check the network connection, or set HF_ENDPOINT to a reachable mirror.',
    );
  }

  const report = new Reporter(parsed.repo, options.onProgress);
  const ctx: Context = {
    repo: parsed.repo, revision, endpoint, repoDir, sha: info.sha, token, timeoutMs, signal: options.signal, report,
  };
  try {
    const result = await fetchModelFiles(ctx, info, parsed);
    // The ref moves only once the snapshot is complete, so an interrupted update leaves the old one usable offline.
    if (!isCommitSha(revision)) {
      const ref = join(repoDir, 'refs', revision);
      await mkdir(dirname(ref), { recursive: true });
      await writeFile(ref, info.sha);
    }
    report.finish();
    return result;
  } catch (err) {
    report.finish('failed');
    throw err;
  }
}

/** Pick the files a model needs, download them, and return the snapshot folder (or the single file asked for). */
async function fetchModelFiles(ctx: Context, info: RepoInfo, spec: RepoSpec): Promise<string> {
  const byName = new Map(info.siblings.map((f) => [f.rfilename, f]));
  const snapshot = join(ctx.repoDir, 'snapshots', ctx.sha);
  const where = `${ctx.repo}@${ctx.revision}`;
  const ggufs = info.siblings.map((f) => f.rfilename).filter((n) => n.toLowerCase().endsWith('.gguf'));

  const single = async (file: string): Promise<string> => {
    const entry = byName.get(file)!;
    ctx.report.plan([entry]);
    await fetchFile(ctx, entry);
    return join(snapshot, file);
  };

  if (spec.file !== undefined) {
    if (!byName.has(spec.file)) {
      const hint = ggufs.length > 0 ? `; its .gguf files: ${ggufs.join(', ')}` : '';
      throw new DownloadError(`${where} has no file '${spec.file}'${hint}`);
    }
    return single(spec.file);
  }

  const hasSingle = byName.has('model.safetensors');
  const hasIndex = byName.has('model.safetensors.index.json');
  if (hasSingle || hasIndex) {
    if (!byName.has('config.json')) throw new DownloadError(`${where} has safetensors weights but no config.json`);
    const names = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];
    const wanted = names.filter((n) => byName.has(n));
    if (hasSingle) {
      wanted.push('model.safetensors');
    } else {
      // The index is small; fetch it first because it names the shards.
      const index = byName.get('model.safetensors.index.json')!;
      ctx.report.plan([index]);
      await fetchFile(ctx, index);
      const shards = shardsFromIndex(join(snapshot, index.rfilename));
      if (!shards || shards.length === 0) {
        throw new DownloadError(`${where}: model.safetensors.index.json has no weight_map naming shard files`);
      }
      const missing = shards.filter((s) => !byName.has(s) || !isSafeRepoPath(s));
      if (missing.length > 0) {
        throw new DownloadError(`${where}: the index names shards the repo does not have: ${missing.join(', ')}`);
      }
      wanted.push(index.rfilename, ...shards);
    }
    const entries = wanted.map((n) => byName.get(n)!);
    ctx.report.plan(entries);
    for (const entry of entries) await fetchFile(ctx, entry);
    return snapshot;
  }

  if (ggufs.length === 1) return single(ggufs[0]!);
  if (ggufs.length > 1) {
    throw new UsageError(
      `${where} has ${ggufs.length} .gguf files; name one as ${ctx.repo}/<file>, e.g. ${ctx.repo}/${ggufs[0]}. ` +
        `Choices: ${ggufs.join(', ')}`,
    );
  }
  const listing = info.siblings.slice(0, 20).map((f) => f.rfilename).join(', ');
  throw new DownloadError(
    `${where} has no model.safetensors, model.safetensors.index.json or .gguf file kvpack can load (files: ${listing})`,
  );
}

async function fetchRepoInfo(
  endpoint: string, repo: string, revision: string, token: string | undefined, timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<RepoInfo> {
  const url = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const what = `${repo}@${revision}`;
  const { response, done } = await request(url, headersFor(token), timeoutMs, signal);
  let body: unknown;
  try {
    // A hub outage is like no network: let a cached snapshot stand in.
    if (response.status >= 500) throw new NetworkError(`HTTP ${response.status} ${response.statusText}`);
    if (!response.ok) throw httpError(response, what, repo, endpoint);
    body = await response.json();
  } catch (err) {
    if (err instanceof DownloadError || err instanceof NetworkError) throw err;
    if (signal?.aborted) throw signal.reason;
    throw new DownloadError(`${what}: unreadable answer from ${url} (${describe(err)})`);
  } finally {
    done();
    discardBody(response);
  }
  return parseRepoInfo(body, what, url);
}

function parseRepoInfo(body: unknown, what: string, url: string): RepoInfo {
  const b = body as { sha?: unknown; siblings?: unknown } | null;
  if (!b || typeof b.sha !== 'string' || !isCommitSha(b.sha) || !Array.isArray(b.siblings)) {
    throw new DownloadError(`${what}: the answer from ${url} lacks a commit sha or a file list`);
  }
  const siblings: RepoFile[] = [];
  for (const s of b.siblings as unknown[]) {
    const f = s as Partial<RepoFile> | null;
    // A file name that could climb out of the snapshot folder is not ours to write.
    if (!f || typeof f.rfilename !== 'string' || !isSafeRepoPath(f.rfilename)) continue;
    const entry: RepoFile = { rfilename: f.rfilename };
    if (typeof f.size === 'number') entry.size = f.size;
    if (typeof f.blobId === 'string' && /^[0-9a-f]{40}$/.test(f.blobId)) entry.blobId = f.blobId;
    if (f.lfs && typeof f.lfs === 'object') {
      entry.lfs = {};
      if (typeof f.lfs.sha256 === 'string' && /^[0-9a-f]{64}$/.test(f.lfs.sha256)) entry.lfs.sha256 = f.lfs.sha256;
      if (typeof f.lfs.size === 'number') entry.lfs.size = f.lfs.size;
    }
    siblings.push(entry);
  }
  return { sha: b.sha, siblings };
}

/**
 * Make snapshots/{sha}/{file} point at a verified blob: reuse a complete blob, else download into
 * blobs/{id}.incomplete (resuming what is there), verify, and rename into place.
 */
async function fetchFile(ctx: Context, file: RepoFile): Promise<void> {
  const name = file.rfilename;
  const expectedSize = file.lfs?.size ?? file.size;
  const sha256 = file.lfs?.sha256;
  // The hub cache names blobs by their etag: sha256 for LFS files, the git blob id otherwise.
  const knownId = sha256 ?? (file.lfs ? undefined : file.blobId);
  const blobs = join(ctx.repoDir, 'blobs');
  const snapPath = join(ctx.repoDir, 'snapshots', ctx.sha, name);

  if (knownId !== undefined) {
    const blob = join(blobs, knownId);
    const size = await fileSize(blob);
    if (size !== undefined && (expectedSize === undefined || size === expectedSize)) {
      ctx.report.skip(name, size);
      await linkSnapshot(snapPath, blob);
      return;
    }
  } else if (existsSync(snapPath)) {
    // No id to check against: trust a snapshot entry that resolves, as huggingface_hub does.
    ctx.report.skip(name, expectedSize ?? 0);
    return;
  }

  await mkdir(blobs, { recursive: true });
  const partName = knownId ?? `tmp-${createHash('sha256').update(`${ctx.sha}/${name}`).digest('hex').slice(0, 40)}`;
  const partial = join(blobs, `${partName}.incomplete`);
  const url = `${ctx.endpoint}/${ctx.repo}/resolve/${ctx.sha}/${name.split('/').map(encodeURIComponent).join('/')}`;
  const what = `${ctx.repo}/${name}`;

  let failures = 0;
  for (;;) {
    try {
      await downloadInto(ctx, url, what, partial, expectedSize, name);
      break;
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      failures = err.madeProgress ? 0 : failures + 1;
      if (failures >= MAX_ATTEMPTS_WITHOUT_PROGRESS) {
        throw new DownloadError(`${what}: download failed from ${ctx.endpoint} (${err.message}); run again to resume`);
      }
      await sleep(RETRY_DELAY_MS * 2 ** failures, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
    }
  }

  // Verify before the blob gets its final name: nothing unverified is ever visible in the cache.
  const size = (await fileSize(partial)) ?? 0;
  if (expectedSize !== undefined && size !== expectedSize) {
    await rm(partial, { force: true });
    throw new DownloadError(`${what}: got ${size} bytes, the hub lists ${expectedSize}; the partial file was removed`);
  }
  const digest = await hashFile(partial, size, file.lfs !== undefined);
  const expectedDigest = file.lfs ? sha256 : file.blobId;
  if (expectedDigest !== undefined && digest !== expectedDigest) {
    await rm(partial, { force: true });
    const kind = file.lfs ? 'sha256' : 'git blob id';
    throw new DownloadError(
      `${what}: ${kind} ${digest} does not match the hub's ${expectedDigest}; the file was removed`,
    );
  }
  const blob = join(blobs, knownId ?? digest);
  await rename(partial, blob);
  await linkSnapshot(snapPath, blob);
}

/** One attempt: GET the file (with a Range header when a partial exists) and append the body to `partial`. */
async function downloadInto(
  ctx: Context, url: string, what: string, partial: string, expectedSize: number | undefined, name: string,
): Promise<void> {
  let offset = (await fileSize(partial)) ?? 0;
  if (expectedSize !== undefined && offset > expectedSize) {
    await rm(partial, { force: true });
    offset = 0;
  }
  ctx.report.resumeAt(name, offset);
  if (expectedSize !== undefined && offset === expectedSize) return; // complete but not yet verified

  const headers = headersFor(ctx.token);
  if (offset > 0) headers.range = `bytes=${offset}-`;
  let req: Awaited<ReturnType<typeof request>>;
  try {
    req = await request(url, headers, ctx.timeoutMs, ctx.signal);
  } catch (err) {
    if (err instanceof NetworkError) throw new TransientError(err.message, false);
    throw err;
  }
  const { response, done, touch } = req;
  try {
    let start: number;
    if (response.status === 206) {
      start = Number(/^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')?.[1] ?? NaN);
      if (start !== offset) {
        // A range we did not ask for cannot extend our partial file: drop it and ask for the whole file.
        await rm(partial, { force: true });
        throw new TransientError(`server resumed at byte ${start}, not ${offset}`, false);
      }
    } else if (response.status === 200) {
      start = 0; // no partial, or the server ignored the Range header: start over
    } else if (response.status === 416) {
      await rm(partial, { force: true });
      throw new TransientError('server rejected the resume range; starting over', false);
    } else if (response.status === 429 || response.status >= 500) {
      throw new TransientError(`HTTP ${response.status} ${response.statusText}`, false);
    } else {
      throw httpError(response, what, ctx.repo, ctx.endpoint);
    }
    ctx.report.resumeAt(name, start);

    const declared = response.headers.get('content-length');
    if (expectedSize !== undefined && declared !== null && !response.headers.get('content-encoding')) {
      if (start + Number(declared) !== expectedSize) {
        await rm(partial, { force: true });
        throw new DownloadError(
          `${what}: the server sends ${start + Number(declared)} bytes, the hub lists ${expectedSize}; nothing kept`,
        );
      }
    }
    if (!response.body) throw new TransientError('empty response', false);

    const fh = await open(partial, start > 0 ? 'a' : 'w');
    let received = 0;
    try {
      for await (const chunk of response.body) {
        const bytes = chunk as Uint8Array;
        if (expectedSize !== undefined && start + received + bytes.length > expectedSize) {
          throw new DownloadError(`${what}: the server sent more than the ${expectedSize} bytes the hub lists`);
        }
        for (let at = 0; at < bytes.length; ) at += (await fh.write(bytes, at)).bytesWritten;
        received += bytes.length;
        touch();
        ctx.report.add(name, bytes.length);
      }
    } catch (err) {
      if (err instanceof DownloadError) {
        await fh.close();
        await rm(partial, { force: true });
        throw err;
      }
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      throw new TransientError(describe(err), received > 0);
    } finally {
      await fh.close().catch(() => undefined);
    }
  } finally {
    done();
    discardBody(response);
  }
}

/** Release the connection of a response whose body was not read (error statuses). */
function discardBody(response: Response): void {
  if (!response.bodyUsed) response.body?.cancel().catch(() => undefined);
}

/**
 * fetch with an inactivity timeout: the timer restarts on every `touch()`, so a slow but live transfer of a large
 * file is never cut, while a stalled one is. Failures to get any answer become NetworkError.
 */
async function request(
  url: string, headers: Record<string, string>, timeoutMs: number, signal: AbortSignal | undefined,
): Promise<{ response: Response; done: () => void; touch: () => void }> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const touch = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new Error(`no data for ${timeoutMs / 1000} s`)), timeoutMs);
  };
  const done = (): void => clearTimeout(timer);
  touch();
  const combined = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
  try {
    const response = await fetch(url, { headers, signal: combined, redirect: 'follow' });
    return { response, done, touch };
  } catch (err) {
    done();
    if (signal?.aborted) throw signal.reason;
    throw new NetworkError(controller.signal.aborted ? describe(controller.signal.reason) : describe(err));
  }
}

function headersFor(token: string | undefined): Record<string, string> {
  // identity: sizes and Range offsets must refer to the stored bytes, not a compressed stream.
  const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'kvpack' };
  if (token) headers.authorization = `Bearer ${token}`;
  return headers;
}

function httpError(response: Response, what: string, repo: string, endpoint: string): DownloadError {
  const detail = response.headers.get('x-error-message');
  const head = `${what}: HTTP ${response.status} ${response.statusText}${detail ? ` (${detail})` : ''} from ${endpoint}`;
  switch (response.status) {
    case 401:
      return new DownloadError(
        `${head}. The repo does not exist, or it is private or gated: check the id, and set HF_TOKEN to a token ` +
          `that can read ${repo}.`,
      );
    case 403:
      return new DownloadError(
        `${head}. If ${repo} is gated, accept its terms at ${endpoint}/${repo} and set HF_TOKEN; ` +
          'if HF_TOKEN is set, check that it grants read access.',
      );
    case 404:
      return new DownloadError(
        `${head}. Check the repo id, revision and file name (private repos need HF_TOKEN); ` +
          `if '${repo}' was meant as a local path, it does not exist.`,
      );
    default:
      return new DownloadError(head);
  }
}

/** Point a snapshot entry at its blob with a relative symlink (a copy where symlinks are not allowed). */
async function linkSnapshot(snapPath: string, blob: string): Promise<void> {
  await mkdir(dirname(snapPath), { recursive: true });
  const target = relative(dirname(snapPath), blob);
  const current = await readlink(snapPath).catch(() => undefined);
  if (current === target) return;
  await rm(snapPath, { force: true });
  try {
    await symlink(target, snapPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await readlink(snapPath).catch(() => undefined)) === target) return; // a racing process
    if (code === 'EPERM') return copyFile(blob, snapPath);
    throw err;
  }
}

/** sha256 for LFS files; otherwise the git blob id (sha1 over "blob <size>\0" + contents), which HF uses as etag. */
async function hashFile(path: string, size: number, lfs: boolean): Promise<string> {
  const hash = createHash(lfs ? 'sha256' : 'sha1');
  if (!lfs) hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

function readToken(): string | undefined {
  const env = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  if (env) return env.trim();
  // The file `huggingface-cli login` writes.
  const path = process.env.HF_TOKEN_PATH ?? join(hfHome(), 'token');
  try {
    const token = readFileSync(path, 'utf8').trim();
    return token.length > 0 ? token : undefined;
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as NodeJS.ErrnoException).code;
      return code ? `${code}: ${cause.message}` : cause.message;
    }
    return err.message;
  }
  return String(err);
}

function isTruthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

/**
 * Byte accounting over all files of one call, reported to the caller's callback or to a Progress bar that appears
 * only once real downloading starts (a fully cached model prints nothing).
 */
class Reporter {
  private total = 0;
  private bytes = 0;
  /** Bytes counted so far per file, so a retry that restarts a file can take its bytes back. */
  private perFile = new Map<string, number>();
  private planned = new Set<string>();
  private bar: Progress | undefined;

  constructor(private readonly repo: string, private readonly callback: ResolveOptions['onProgress']) {}

  plan(files: RepoFile[]): void {
    for (const f of files) {
      if (this.planned.has(f.rfilename)) continue;
      this.planned.add(f.rfilename);
      this.total += f.lfs?.size ?? f.size ?? 0;
    }
    this.bar?.setTotal(this.total);
  }

  /** Bytes already on disk (a complete blob). */
  skip(file: string, n: number): void {
    this.perFile.set(file, n);
    this.bytes += n;
    this.bar?.skip(n);
    this.emit(file);
  }

  /** A partial file holds `offset` bytes (resumed, or 0 when the server starts over). */
  resumeAt(file: string, offset: number): void {
    const before = this.perFile.get(file) ?? 0;
    if (before === offset) return;
    this.perFile.set(file, offset);
    this.bytes += offset - before;
    this.bar?.skip(offset - before);
    this.emit(file);
  }

  add(file: string, n: number): void {
    this.perFile.set(file, (this.perFile.get(file) ?? 0) + n);
    this.bytes += n;
    if (this.callback === undefined && this.bar === undefined) {
      this.bar = new Progress({ total: this.total, label: this.repo, unit: 'B' });
      if (this.bytes > n) this.bar.skip(this.bytes - n);
    }
    this.bar?.tick(n);
    this.emit(file);
  }

  finish(note?: string): void {
    this.bar?.done(note);
  }

  private emit(file: string): void {
    if (typeof this.callback === 'function') {
      this.callback({ repo: this.repo, file, bytes: this.bytes, totalBytes: this.total });
    }
  }
}
