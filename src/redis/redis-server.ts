/**
 * Start and stop a private redis-server: used by `npm start` when no Redis is
 * configured or running, by the test harness (one per test file) and by the
 * benchmarks. Spawned with an argument array; data in its own directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { childExit } from '../lib/child-exit.js';
import { errorKind } from '../lib/errors.js';
import { mkdir } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { freePort } from '../lib/free-port.js';

export interface RedisServerOptions {
  dir: string;
  port?: number;
  bin?: string;
  /** Turn AOF on (fsync everysec), as production should. */
  appendOnly?: boolean;
  startTimeoutMs?: number;
  /**
   * Own process group and session (`fleetq start`): Ctrl-C in the terminal
   * then reaches fleetq alone, which stops its worker while Redis is still
   * up, and then Redis.
   */
  detached?: boolean;
}

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait (simulate a crash). */
  kill(): Promise<void>;
}

/** No redis-server binary to start (`fleetq start` / `worker --redis-server`). */
export class RedisServerMissingError extends errorKind('E_REDIS_SERVER_MISSING', true) {}

export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServer> {
  await mkdir(opts.dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', opts.dir,
    '--save', '',
    '--appendonly', opts.appendOnly ? 'yes' : 'no',
    '--appendfsync', 'everysec',
    '--maxmemory-policy', 'noeviction',
    '--daemonize', 'no',
    '--protected-mode', 'yes',
    '--logfile', '',
  ];
  const child = spawn(opts.bin ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached ?? false });
  let output = '';
  const exited = childExit(child);
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes('Ready to accept connections')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'ENOENT' ? new RedisServerMissingError(`${opts.bin ?? 'redis-server'} not found on PATH`) : err);
    });
    exited.then(([code]) => reject(new Error(`redis-server exited with ${code} before it was ready: ${output.trim().split('\n').slice(-3).join(' / ')}`)));
    setTimeout(() => reject(new Error(`redis-server did not start within ${opts.startTimeoutMs ?? 10_000}ms`)), opts.startTimeoutMs ?? 10_000).unref();
  });
  try {
    await ready;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  // Keep draining output so the pipe never fills.
  child.stdout!.resume();
  child.stderr!.resume();
  const waitExit = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await exited;
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir: opts.dir,
    process: child,
    stop: () => waitExit('SIGTERM'),
    kill: () => waitExit('SIGKILL'),
  };
}

/** Is something answering PING at host:port? */
export function redisAnswers(host: string, port: number, timeoutMs = 500, tls?: { ca: Buffer }): Promise<boolean> {
  return new Promise((resolve) => {
    // A TLS-only server (tests' TLS Cluster): the handshake checks the certificate against `ca`.
    const sock = tls ? tlsConnect({ host, port, ca: tls.ca }) : createConnection({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('error', () => done(false));
    sock.once(tls ? 'secureConnect' : 'connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => done(d.toString().startsWith('+PONG') || d.toString().startsWith('-NOAUTH')));
  });
}
