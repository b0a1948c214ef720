/** Parsing `owner/name[@revision][/path/in/repo]`, the way a user names a Hugging Face model. */

export interface RepoSpec {
  /** 'owner/name' */
  repo: string;
  owner: string;
  name: string;
  /** From '@revision' in the spec; undefined means the caller's default (main). */
  revision?: string;
  /** A single file to take, e.g. 'model-q8_0.gguf'; undefined means "pick the model files". */
  file?: string;
}

// HF names: letters, digits, '-', '_', '.', starting with a letter or digit, at most 96 characters.
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The spec as a repo id, or undefined when it cannot be one (then it was meant as a local path). */
export function parseRepoSpec(spec: string): RepoSpec | undefined {
  const parts = spec.split('/');
  if (parts.length < 2) return undefined;
  const owner = parts[0]!;
  let name = parts[1]!;
  let revision: string | undefined;
  const at = name.indexOf('@');
  if (at >= 0) {
    revision = name.slice(at + 1);
    name = name.slice(0, at);
    if (!REVISION.test(revision)) return undefined;
  }
  if (!validName(owner) || !validName(name)) return undefined;
  const rest = parts.slice(2);
  let file: string | undefined;
  if (rest.length > 0) {
    if (!isSafeRepoPath(rest.join('/'))) return undefined;
    file = rest.join('/');
  }
  return { repo: `${owner}/${name}`, owner, name, ...(revision ? { revision } : {}), ...(file ? { file } : {}) };
}

function validName(s: string): boolean {
  // HF also forbids '--' and '..' (they would be ambiguous in cache folder names and paths).
  return NAME.test(s) && !s.includes('--') && !s.includes('..') && !s.endsWith('.') && !s.endsWith('-');
}

/** A relative path inside a repo that cannot climb out of the folder it is joined to. */
export function isSafeRepoPath(p: string): boolean {
  if (p.length === 0 || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((seg) => seg.length > 0 && seg !== '.' && seg !== '..');
}

/** A full git commit id, which names a snapshot directly (no refs/ lookup). */
export function isCommitSha(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}
