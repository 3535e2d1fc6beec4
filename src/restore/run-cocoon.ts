/**
 * Run the cocoon CLI: argument array (never a shell), a timeout, an AbortSignal
 * (worker shutdown) and every output line handed to `onLine`.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { childExit } from '../lib/child-exit.js';
import { classifyCocoonFailure } from './cocoon-failures.js';
import { CocoonError } from './restore-errors.js';

export interface RunCocoonOptions {
  bin: string;
  args: string[];
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  env?: NodeJS.ProcessEnv;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** How long after SIGTERM before SIGKILL. */
  killGraceMs?: number;
  /** Keep at most this much of stdout (default 1 MiB: one JSON record); more sets `stdoutTruncated`. */
  maxStdout?: number;
}

export interface CocoonRun {
  stdout: string;
  /** stdout was longer than `maxStdout`: what was kept is cut short. */
  stdoutTruncated: boolean;
  stderrTail: string[];
  durationMs: number;
}

const TAIL_LINES = 8;
/** cocoon prints one JSON record; anything beyond this is not a result. */
const MAX_STDOUT = 1024 * 1024;

export async function runCocoon(opts: RunCocoonOptions): Promise<CocoonRun> {
  opts.signal?.throwIfAborted();
  const started = Date.now();
  const child = spawn(opts.bin, opts.args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let spawnError: NodeJS.ErrnoException | undefined;
  // A child that never started (ENOENT, EACCES) emits 'error' and 'close' but never 'exit'.
  const notStarted = new Promise<[null, null]>((resolve) =>
    child.on('error', (err) => {
      if (child.pid !== undefined) return;
      spawnError = err;
      resolve([null, null]);
    }),
  );
  const exited = Promise.race([childExit(child), notStarted]);

  let stdout = '';
  let stdoutTruncated = false;
  const maxStdout = opts.maxStdout ?? MAX_STDOUT;
  const tail: string[] = [];
  /** cobra prints each error as one `Error: <message>` line on stderr (§1). */
  const errors: string[] = [];
  const out = createInterface({ input: child.stdout! });
  const err = createInterface({ input: child.stderr! });
  out.on('line', (line) => {
    if (stdout.length < maxStdout) stdout += `${line}\n`;
    else stdoutTruncated = true;
    opts.onLine?.('stdout', line);
  });
  err.on('line', (line) => {
    if (line.startsWith('Error: ') && errors.length < TAIL_LINES) errors.push(line);
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    opts.onLine?.('stderr', line);
  });
  const drained = Promise.all([new Promise((r) => out.once('close', r)), new Promise((r) => err.once('close', r))]);

  let stoppedBy: 'timeout' | 'abort' | undefined;
  const stop = (why: 'timeout' | 'abort') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    stoppedBy ??= why;
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), opts.killGraceMs ?? 5_000).unref();
  };
  const timer = setTimeout(() => stop('timeout'), opts.timeoutMs);
  const onAbort = () => stop('abort');
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  const [code, signal] = await exited;
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  await Promise.race([drained, new Promise((r) => setTimeout(r, 1000))]);
  const durationMs = Date.now() - started;
  const last = (errors.length ? errors : tail).join(' / ');
  const cmd = `cocoon ${opts.args.slice(0, 2).join(' ')}`;

  if (spawnError) {
    const missing = spawnError.code === 'ENOENT';
    throw new CocoonError(
      missing ? `cocoon binary not found: ${opts.bin} (install cocoon or point the worker at it)` : `cannot run ${opts.bin}: ${spawnError.message}`,
      missing ? 'E_COCOON_MISSING' : 'E_COCOON_SPAWN',
      missing,
      { settings: ['cocoonBin'] },
    );
  }
  if (stoppedBy === 'abort') throw opts.signal?.reason ?? new CocoonError(`${cmd} aborted`, 'E_COCOON_ABORTED', false);
  if (stoppedBy === 'timeout') {
    throw new CocoonError(`${cmd} timed out after ${opts.timeoutMs / 1000}s${last ? `: ${last}` : ''}`, 'E_COCOON_TIMEOUT', false, { settings: ['cocoonTimeoutMs'] });
  }
  if (signal) throw new CocoonError(`${cmd} was killed by ${signal}${last ? `: ${last}` : ''}`, 'E_COCOON_KILLED', false);
  if (code !== 0) {
    const verdict = classifyCocoonFailure((errors.length ? errors : tail).join('\n'));
    throw new CocoonError(`${cmd} exited ${code}: ${last || '(no output)'} [${verdict.code}: ${verdict.hint}]`, verdict.code, verdict.permanent, { settings: verdict.settings });
  }
  return { stdout, stdoutTruncated, stderrTail: tail, durationMs };
}
