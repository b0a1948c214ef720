import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CLI } from '../cli/run.js';

/**
 * A real Redis for the queue tests (Debian's redis-server, which .ci/run installs): each test starts
 * its own on a free loopback port with its own data directory, append-only so a restart keeps what
 * was written (or without persistence, to lose it all), and stops it. Nothing listens beyond 127.0.0.1.
 */
/** A self-signed certificate for 127.0.0.1 (test only) and its key. */
export const TLS_CA = path.resolve('test/eval/tls/cert.pem');
const TLS_KEY = path.resolve('test/eval/tls/key.pem');

export class TestRedis {
  private process: ChildProcess | undefined;

  private constructor(readonly port: number, readonly dir: string, readonly persist: boolean, readonly password: string | undefined, readonly tls: boolean) {}

  /** The URL, its password included. */
  get url(): string {
    return `${this.tls ? 'rediss' : 'redis'}://${this.password === undefined ? '' : `:${this.password}@`}127.0.0.1:${this.port}`;
  }

  /**
   * `persist: false`: no append-only file, so a restart comes back empty; `password`: requirepass;
   * `tls`: TLS only, with the self-signed certificate TLS_CA (for 127.0.0.1, valid until 2126).
   */
  static async start({ persist = true, password = undefined as string | undefined, tls = false } = {}): Promise<TestRedis> {
    if (spawnSync('redis-server', ['--version']).error) {
      throw new Error('redis-server is not installed: apt-get install -y redis-server (.ci/run does this)');
    }
    const redis = new TestRedis(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-redis-')), persist, password, tls);
    await redis.up();
    return redis;
  }

  /** (Re)starts the server on the same port and data directory. */
  async up(): Promise<void> {
    const listen = this.tls
      ? ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', TLS_CA, '--tls-key-file', TLS_KEY, '--tls-auth-clients', 'no']
      : ['--port', String(this.port)];
    const auth = this.password === undefined ? [] : ['--requirepass', this.password];
    const p = spawn('redis-server', [...listen, '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', this.persist ? 'yes' : 'no', ...auth], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = p;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      p.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      p.on('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)));
    });
  }

  /** Kills the server outright (SIGKILL: no last save), waiting until it is gone. */
  async kill(): Promise<void> {
    const p = this.process;
    this.process = undefined;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((resolve) => p.once('exit', resolve));
    p.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A running `kvpack …` process (the built CLI) whose stderr is collected as it comes. */
export class Kvpack {
  readonly process: ChildProcess;
  stderr = '';
  stdout = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[], cwd?: string, env?: NodeJS.ProcessEnv) {
    this.process = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd, env: env && { ...process.env, ...env } });
    this.process.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.process.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.process.on('exit', (code) => resolve(code)));
  }

  /** Its exit code, waiting at most `limitMs` (a hang fails the test, naming the command, rather than timing it out). */
  async exitCode(limitMs = 40_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`gave up waiting for kvpack ${this.process.spawnargs.slice(2).join(' ')} to exit; its stderr:\n${this.stderr}`)), limitMs);
    });
    try {
      return await Promise.race([this.exited, limit]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(name: NodeJS.Signals): void {
    this.process.kill(name);
  }
}

/** Waits until `condition` holds, checking every 50 ms; fails (naming `what`) after `limitMs`, so a hang is an error, not a stuck test. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, limitMs = 30_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
