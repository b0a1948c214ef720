/**
 * The Hugging Face hub cache layout, shared with huggingface_hub and transformers:
 *   {cache}/models--{owner}--{name}/blobs/{etag}                 file contents, named by sha256 (LFS) or git blob id
 *   {cache}/models--{owner}--{name}/refs/{revision}              the commit sha the revision pointed to
 *   {cache}/models--{owner}--{name}/snapshots/{sha}/{file}       relative symlink to ../../blobs/{etag}
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isCommitSha } from './spec.js';

/** `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub` — the same order huggingface_hub uses. */
export function defaultHubCache(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return expandHome(env.HF_HUB_CACHE);
  return join(hfHome(env), 'hub');
}

export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HOME) return expandHome(env.HF_HOME);
  const xdg = env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return join(xdg, 'huggingface');
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, `models--${repo.replace('/', '--')}`);
}

/** The commit a revision points to in the cache, if any (a commit sha is its own answer). */
export function cachedCommit(repoDir: string, revision: string): string | undefined {
  if (isCommitSha(revision)) return revision;
  try {
    const sha = readFileSync(join(repoDir, 'refs', revision), 'utf8').trim();
    return isCommitSha(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What resolveModel would return for a complete cached snapshot, without the network: the named file, else the
 * snapshot folder when it has config.json and all its safetensors, else its single top-level .gguf. Undefined if
 * incomplete.
 * existsSync follows symlinks, so a link whose blob is missing counts as missing.
 */
export function findCachedModel(repoDir: string, revision: string, file?: string): string | undefined {
  const sha = cachedCommit(repoDir, revision);
  if (!sha) return undefined;
  const snap = join(repoDir, 'snapshots', sha);
  if (file !== undefined) return existsSync(join(snap, file)) ? join(snap, file) : undefined;
  if (existsSync(join(snap, 'config.json'))) {
    if (existsSync(join(snap, 'model.safetensors'))) return snap;
    const shards = shardsFromIndex(join(snap, 'model.safetensors.index.json'));
    if (shards && shards.length > 0 && shards.every((s) => existsSync(join(snap, s)))) return snap;
  }
  let ggufs: string[] = [];
  try {
    ggufs = readdirSync(snap).filter((f) => f.toLowerCase().endsWith('.gguf') && existsSync(join(snap, f)));
  } catch {
    return undefined;
  }
  return ggufs.length === 1 ? join(snap, ggufs[0]!) : undefined;
}

/** The shard file names a `model.safetensors.index.json` refers to, or undefined if it is missing or unreadable. */
export function shardsFromIndex(indexPath: string): string[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch {
    return undefined;
  }
  const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (!map || typeof map !== 'object') return undefined;
  const files = new Set<string>();
  for (const v of Object.values(map as Record<string, unknown>)) if (typeof v === 'string') files.add(v);
  return [...files].sort();
}
