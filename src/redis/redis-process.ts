/**
 * One redis-server (or sentinel) process of a local Cluster or Sentinel
 * set-up (tests, benchmarks): loopback only, started with an argument array,
 * its own directory and log file, and restartable on the same port and
 * directory (a crashed node that comes back). Ready when it answers PING.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { childExit } from '../lib/child-exit.js';
import { redisAnswers } from './redis-server.js';

export interface RedisProcessSpec {
  /** What the node is (`7001`, `sentinel-2`): names its log lines in errors. */
  name: string;
  port: number;
  dir: string;
  /** Arguments after the binary; `--port`, `--bind`, `--dir` and the log file are added. */
  args: string[];
  /** `redis-server` (default) or another binary. */
  bin?: string;
  /** A config file given before every other argument (sentinels need one they can rewrite). */
  configFile?: string;
  startTimeoutMs?: number;
  /** TLS only: `port` is the TLS port (`--tls-port`, plain `--port 0`), PING is sent over TLS checked against `ca`. */
  tls?: { ca: Buffer };
}

export interface RedisProcess {
  readonly spec: RedisProcessSpec;
  readonly port: number;
  readonly logFile: string;
  /** The running process, undefined while it is down. */
  readonly process: ChildProcess | undefined;
  readonly alive: boolean;
  /** SIGKILL and wait (a crash: nothing is flushed). */
  kill(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** Start it again on the same port and directory (after kill/stop), with extra arguments if given. */
  restart(extraArgs?: string[]): Promise<void>;
}

/** Every process started here that has not exited: killed when the Node process exits, whatever happens. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of live) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

async function spawnOnce(spec: RedisProcessSpec, extraArgs: string[]): Promise<ChildProcess> {
  await mkdir(spec.dir, { recursive: true });
  const logFile = join(spec.dir, 'redis.log');
  const args = [
    ...(spec.configFile ? [spec.configFile] : []),
    ...(spec.tls ? ['--port', '0', '--tls-port', String(spec.port)] : ['--port', String(spec.port)]),
    '--bind', '127.0.0.1',
    '--dir', spec.dir,
    '--daemonize', 'no',
    '--logfile', logFile,
    ...spec.args,
    ...extraArgs,
  ];
  const child = spawn(spec.bin ?? 'redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  installExitHook();
  live.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = childExit(child);
  void exited.then(() => live.delete(child));
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  const timeoutMs = spec.startTimeoutMs ?? 15_000;
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${spec.bin ?? 'redis-server'} ${spec.name} exited (${child.exitCode ?? child.signalCode}) before it answered PING: ${stderr.trim()} (log ${logFile})`);
    }
    const ok = await Promise.race([redisAnswers('127.0.0.1', spec.port, 500, spec.tls), spawnError]);
    if (ok) return child;
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`${spec.bin ?? 'redis-server'} ${spec.name} did not answer PING on port ${spec.port} within ${timeoutMs}ms (log ${logFile})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedisProcess(spec: RedisProcessSpec): Promise<RedisProcess> {
  let child: ChildProcess | undefined = await spawnOnce(spec, []);
  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) {
      child = undefined;
      return;
    }
    const exited = childExit(c);
    c.kill(sig);
    await exited;
    child = undefined;
  };
  return {
    spec,
    port: spec.port,
    logFile: join(spec.dir, 'redis.log'),
    get process() {
      return child;
    },
    get alive() {
      return !!child && child.exitCode === null && child.signalCode === null;
    },
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM'),
    async restart(extraArgs = []) {
      await signal('SIGKILL');
      child = await spawnOnce(spec, extraArgs);
    },
  };
}
