/**
 * Child processes of the bench: fleetq workers (`node bin/fleetq.js worker`),
 * helper scripts, and a registry so that every child is killed on the way
 * out, whatever happens.
 */
import { WORKER_NODE_FLAGS } from '../../src/worker/node-flags.js';
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { childExit } from '../../src/lib/child-exit.js';
import { BIN } from './paths.js';

const live = new Set<ChildProcess>();

/** spawn() and remember the child until it exits. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  return child;
}

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
  return track(spawn(cmd, args, opts));
}

/** SIGKILL every child still running (last-resort cleanup). */
export function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export function liveChildren(): number {
  return live.size;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `fn` until it returns something other than undefined, or throw after `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Peak resident set size (VmHWM) of a live process, in bytes; undefined when it cannot be read. */
export function peakRss(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) of a live process so far, in seconds; 0 when it cannot be read. */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

/** Stop a child: SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit code (null when killed). */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = childExit(child);
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const [code] = await exited;
  clearTimeout(t);
  return code;
}

/** Environment without anything from the caller's shell that could change fleetq's behaviour. */
export function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL' && !k.startsWith('NODE_')) env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export interface BenchWorker {
  name: string;
  proc: ChildProcess;
  pid: number;
  logFile: string;
  /** Parsed JSON log lines (read from the log file on demand). */
  logs(): Array<Record<string, unknown>>;
  peakRss(): number | undefined;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number | null>;
}

export interface WorkerSpec {
  name: string;
  dir: string;
  env: Record<string, string | undefined>;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Node flags instead of the production ones (`workerNodeArgs()`), e.g. to compare young-generation settings. */
  replaceNodeArgs?: string[];
  /** Another build's bin/fleetq.js (default: BENCH_FLEETQ_BIN, else this checkout's). */
  bin?: string;
}

/**
 * The node flags fleetq workers run with: the production ones
 * (src/worker/node-flags.ts), or BENCH_WORKER_NODE_ARGS instead, for
 * experiments ("" = none).
 */
export function workerNodeArgs(): string[] {
  return process.env.BENCH_WORKER_NODE_ARGS !== undefined ? process.env.BENCH_WORKER_NODE_ARGS.split(/\s+/).filter(Boolean) : [...WORKER_NODE_FLAGS];
}

/**
 * Start `node bin/fleetq.js worker` with its stdout (pino JSON) going to a
 * file, so the bench process spends no CPU on the worker's logs; resolves
 * once the worker logged "worker started".
 */
export async function startWorker(spec: WorkerSpec): Promise<BenchWorker> {
  const logFile = join(spec.dir, `${spec.name}.log`);
  const errFile = join(spec.dir, `${spec.name}.stderr`);
  const out = openSync(logFile, 'a');
  const err = openSync(errFile, 'a');
  // BENCH_CPU_PROF=DIR: profile every worker (node --cpu-prof), one .cpuprofile per process in DIR.
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`, `--cpu-prof-name=${spec.name}.${Date.now()}.cpuprofile`] : [];
  // BENCH_FLEETQ_BIN=path/to/bin/fleetq.js: run another build of fleetq (A/B comparisons of a change).
  const bin = spec.bin ?? (process.env.BENCH_FLEETQ_BIN || BIN);
  const extra = spec.replaceNodeArgs ?? workerNodeArgs();
  const proc = spawnTracked(process.execPath, [...prof, ...extra, ...(spec.nodeArgs ?? []), bin, 'worker'], {
    env: cleanEnv({ FLEETQ_LOG_LEVEL: 'info', FLEETQ_SHUTDOWN_GRACE: '5s', ...spec.env }),
    stdio: ['ignore', out, err],
    cwd: spec.dir,
  });
  closeSync(out);
  closeSync(err);
  const exited = childExit(proc);
  const readLog = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const tail = () => {
    let e = '';
    try {
      e = readFileSync(errFile, 'utf8');
    } catch {
      /* none */
    }
    return `stderr: ${e.trim().split('\n').slice(-5).join(' / ')}; log: ${readLog().trim().split('\n').slice(-3).join(' / ')}`;
  };
  let dead = false;
  void exited.then(() => (dead = true));
  try {
    await until(`worker ${spec.name} to start`, 30_000, () => {
      if (readLog().includes('"msg":"worker started"')) return true;
      if (dead) throw new Error(`worker ${spec.name} exited before it started (${tail()})`);
      return undefined;
    });
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(`${(e as Error).message}; ${tail()}`);
  }
  return {
    name: spec.name,
    proc,
    pid: proc.pid!,
    logFile,
    logs() {
      const lines: Array<Record<string, unknown>> = [];
      for (const line of readLog().split('\n')) {
        if (!line) continue;
        try {
          lines.push(JSON.parse(line));
        } catch {
          /* partial line */
        }
      }
      return lines;
    },
    peakRss: () => peakRss(proc.pid),
    stop: () => stopChild(proc),
  };
}
