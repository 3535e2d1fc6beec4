/**
 * An exclusive flock(2) on a file, shared with cocoon (which flocks
 * db/images.lock around every index update).
 *
 * Why hand-written: Node has no flock binding, and the npm packages that add
 * one (fs-ext and friends) are native addons that are poorly maintained and
 * break on new Node majors. Instead we run util-linux's `flock FILE cat`
 * (argument array, no shell): flock takes the lock, then runs `cat`, which
 * echoes a probe byte back once the lock is held and exits when we close its
 * stdin, releasing the lock. If this process dies, the pipe closes and the
 * lock goes with it — no stale lock files.
 */
import { spawn } from 'node:child_process';
import { childExit } from '../lib/child-exit.js';
import { InternalError } from '../lib/errors.js';

export interface FileLockOptions {
  timeoutMs?: number;
}

export async function withFileLock<T>(lockFile: string, fn: () => Promise<T>, opts: FileLockOptions = {}): Promise<T> {
  const timeoutSec = Math.max(1, Math.ceil((opts.timeoutMs ?? 60_000) / 1000));
  const child = spawn('flock', ['--exclusive', '--timeout', String(timeoutSec), lockFile, 'cat'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = childExit(child);
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new InternalError(`cannot run flock for ${lockFile}: ${err.message} (install util-linux)`)));
  });
  spawnError.catch(() => {}); // only meaningful while racing below
  const acquired = new Promise<void>((resolve) => {
    child.stdout.once('data', () => resolve());
  });
  child.stdin.write('\n');
  try {
    await Promise.race([
      acquired,
      spawnError,
      exited.then(([code]) => {
        throw new InternalError(`could not lock ${lockFile} (flock exited ${code}): ${stderr.trim() || 'timeout'}`);
      }),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  try {
    return await fn();
  } finally {
    child.stdin.end();
    await exited;
  }
}
