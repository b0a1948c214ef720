/**
 * A loopback HTTP server that answers like the Hugging Face hub for the two endpoints kvpack uses:
 *   GET /api/models/{owner}/{name}/revision/{rev}?blobs=true   model info with sizes, blob ids and LFS sha256
 *   GET /{owner}/{name}/resolve/{rev}/{file}                  file bytes (LFS files redirect to /cdn/, like the hub)
 * with Range support and knobs to misbehave (cut connections, ignore Range, lie about sizes, refuse access).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const COMMIT = '0123456789abcdef0123456789abcdef01234567';

export interface LoggedRequest {
  path: string;
  range?: string;
  authorization?: string;
}

export interface Knobs {
  /** Close the connection after this many body bytes, for the first `times` requests of `file`. */
  cut?: { file: string; bytes: number; times: number };
  /** Answer 200 with the whole file even when a Range was asked for. */
  ignoreRange?: boolean;
  /** Sizes the API reports instead of the true ones. */
  apiSize?: Record<string, number>;
  /** Bytes served instead of the true ones (the API still describes the true file). */
  body?: Record<string, Buffer>;
  /** HTTP status for the API call or a file, instead of serving it. */
  apiStatus?: number;
  fileStatus?: Record<string, number>;
}

const isLfs = (name: string): boolean => /\.(safetensors|gguf)$/.test(name);

export function gitBlobId(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export class FakeHub {
  readonly requests: LoggedRequest[] = [];
  knobs: Knobs = {};
  private server: Server;
  private cutsDone = 0;
  private byHash = new Map<string, Buffer>();
  endpoint = '';

  constructor(private readonly repos: Record<string, Record<string, Buffer>>) {
    this.server = createServer((req, res) => this.handle(req, res));
    for (const files of Object.values(repos)) {
      for (const [name, data] of Object.entries(files)) if (isLfs(name)) this.byHash.set(sha256(data), data);
    }
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve, reject) => this.server.close((err) => (err ? reject(err) : resolve())));
  }

  reset(): void {
    this.requests.length = 0;
    this.knobs = {};
    this.cutsDone = 0;
  }

  /** Requests for file contents (resolve or CDN), as opposed to the API. */
  fileRequests(): LoggedRequest[] {
    return this.requests.filter((r) => !r.path.startsWith('/api/'));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const logged: LoggedRequest = { path: url.pathname };
    if (req.headers.range) logged.range = req.headers.range;
    if (req.headers.authorization) logged.authorization = req.headers.authorization;
    this.requests.push(logged);

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api) return this.info(res, api[1]!, url.searchParams.get('blobs') === 'true');

    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const data = this.byHash.get(cdn[1]!);
      const name = this.nameOf(data);
      return data && name ? this.send(req, res, name, data) : this.fail(res, 404, 'EntryNotFound');
    }

    const file = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!file) return this.fail(res, 404, 'NotFound');
    const files = this.repos[file[1]!];
    if (!files) return this.fail(res, 404, 'RepoNotFound');
    const name = decodeURIComponent(file[3]!);
    const status = this.knobs.fileStatus?.[name];
    if (status) return this.fail(res, status, status === 403 ? 'GatedRepo' : 'Error');
    const data = files[name];
    if (!data) return this.fail(res, 404, 'EntryNotFound');
    if (isLfs(name)) {
      res.writeHead(302, { location: `/cdn/${sha256(data)}`, 'x-linked-etag': `"${sha256(data)}"` });
      res.end();
      return;
    }
    this.send(req, res, name, data);
  }

  private info(res: ServerResponse, repo: string, blobs: boolean): void {
    if (this.knobs.apiStatus) return this.fail(res, this.knobs.apiStatus, 'Error');
    const files = this.repos[repo];
    if (!files) return this.fail(res, 401, 'RepoNotFound'); // the hub hides private repos behind 401
    const siblings = Object.entries(files).map(([rfilename, data]) => {
      if (!blobs) return { rfilename };
      const size = this.knobs.apiSize?.[rfilename] ?? data.length;
      return {
        rfilename,
        size,
        blobId: gitBlobId(data),
        ...(isLfs(rfilename) ? { lfs: { sha256: sha256(data), size, pointerSize: 134 } } : {}),
      };
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: repo, sha: COMMIT, siblings }));
  }

  private send(req: IncomingMessage, res: ServerResponse, name: string, trueData: Buffer): void {
    const data = this.knobs.body?.[name] ?? trueData;
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !this.knobs.ignoreRange) {
      start = Number(range[1]);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        res.end();
        return;
      }
    }
    const headers = { 'content-length': String(data.length - start), etag: `"${gitBlobId(data)}"` };
    if (range && !this.knobs.ignoreRange) {
      res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
    } else {
      res.writeHead(200, headers);
    }
    const body = data.subarray(start);
    const cut = this.knobs.cut;
    if (cut && cut.file === name && this.cutsDone < cut.times) {
      this.cutsDone += 1;
      // Send part of the body, then drop the connection mid-transfer.
      res.write(body.subarray(0, cut.bytes), () => res.destroy());
      return;
    }
    res.end(body);
  }

  private nameOf(data: Buffer | undefined): string | undefined {
    for (const files of Object.values(this.repos)) {
      for (const [name, d] of Object.entries(files)) if (d === data) return name;
    }
    return undefined;
  }

  private fail(res: ServerResponse, status: number, code: string): void {
    res.writeHead(status, { 'x-error-code': code, 'content-type': 'text/plain' });
    res.end(code);
  }
}
