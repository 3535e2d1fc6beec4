/**
 * Real worker processes (`node bin/fleetq.js worker`, or the per-host entry
 * point `node dist/workers/host.worker.js` that the image runs), with their
 * JSON logs captured.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { WORKER_NODE_FLAGS } from '../../src/worker/node-flags.js';

export const BIN = fileURLToPath(new URL('../../bin/fleetq.js', import.meta.url));
/** The per-host worker entry point, compiled (the image's CMD, `npm run worker`). */
export const HOST_WORKER = fileURLToPath(new URL('../../dist/workers/host.worker.js', import.meta.url));

export interface WorkerProcess {
  proc: ChildProcess;
  logs: Array<Record<string, unknown>>;
  stderr: string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash). */
  kill(): Promise<void>;
  /** Resolves when the process has exited (for whatever reason) and its output is read. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

export interface WorkerEnv {
  /** A single Redis; or, instead, FLEETQ_REDIS_CLUSTER_NODES / FLEETQ_REDIS_SENTINELS (+ _NAME). */
  REDIS_URL?: string;
  FLEETQ_HOST: string;
  FLEETQ_ROOT: string;
  FLEETQ_PREFIX?: string;
  [k: string]: string | undefined;
}

/** Environment without anything from the developer's shell that could change behaviour. */
function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL') env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface StartOptions {
  /** Run the worker as another user (util-linux setpriv; needs root): file modes then apply to it. */
  asUser?: { uid: number; gid: number };
  /** `host`: run dist/workers/host.worker.js (environment only; `args` must be empty) instead of `fleetq worker`. */
  entry?: 'cli' | 'host';
}

export async function startWorkerProcess(env: WorkerEnv, args: string[] = [], opts: StartOptions = {}): Promise<WorkerProcess> {
  if (opts.entry === 'host' && args.length) throw new Error('the host worker entry point takes no arguments: set variables instead');
  const argv = opts.entry === 'host' ? [...WORKER_NODE_FLAGS, HOST_WORKER] : [BIN, 'worker', ...args];
  const [cmd, cmdArgs] = opts.asUser
    ? ['setpriv', [`--reuid=${opts.asUser.uid}`, `--regid=${opts.asUser.gid}`, '--clear-groups', process.execPath, ...argv]]
    : [process.execPath, argv];
  const proc = spawn(cmd, cmdArgs, {
    env: cleanEnv({ FLEETQ_LOG_LEVEL: 'debug', FLEETQ_STALLED_INTERVAL: '1s', FLEETQ_JOB_LOCK: '3s', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const watchers = new Set<() => void>();
  let buf = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ msg: line });
      }
      for (const w of [...watchers]) w();
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // 'close' (not 'exit'): fires after stdout/stderr are fully read, so every log line is in `logs`.
  const exited = once(proc, 'close') as Promise<[number | null, NodeJS.Signals | null]>;

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const found = logs.find(pred);
      if (found) return resolve(found);
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`log line not seen within ${timeoutMs}ms; stderr: ${stderr}; last logs: ${JSON.stringify(logs.slice(-5))}`));
      }, timeoutMs);
      const check = () => {
        const hit = logs.find(pred);
        if (hit) {
          clearTimeout(timer);
          watchers.delete(check);
          resolve(hit);
        }
      };
      watchers.add(check);
      exited.then(() => {
        if (!logs.find(pred)) {
          clearTimeout(timer);
          watchers.delete(check);
          reject(new Error(`worker exited before the log line; stderr: ${stderr}`));
        }
      });
    });

  const wp: WorkerProcess = {
    proc,
    logs,
    get stderr() {
      return stderr;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const [code] = await exited;
      return code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
    waitForLog,
    exited,
  };
  await waitForLog((l) => l.msg === 'worker started');
  return wp;
}

/** Run the CLI to completion. */
export async function runCli(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
