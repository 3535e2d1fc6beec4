/**
 * Blobs in cocoon's cloudimg layout: layout, lookups and temp housekeeping.
 * Content is invisible until committed: downloads live in temp/, and a blob
 * appears under blobs/ only through `BlobWriter.commit` (blob-writer.ts).
 */
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../lib/digest.js';
import { removeIfExists } from './fs-atomic.js';
import { blobPath, type StorePaths } from './paths.js';

export interface BlobInfo {
  digest: Digest;
  path: string;
  size: number;
}

export const TEMP_PREFIX = 'pull-';

export async function ensureLayout(paths: StorePaths): Promise<void> {
  await mkdir(paths.blobs, { recursive: true });
  await mkdir(paths.db, { recursive: true });
  await mkdir(paths.temp, { recursive: true });
}

/**
 * The blob for `digest` when it is valid: a regular file (not a symlink) with
 * size > 0 and, when `expectedSize` is given, exactly that size.
 *
 * This is the cache-hit hot path (every ensure-image job for a present image
 * ends here), so it uses one synchronous lstat(2): on the local store that is
 * a ~2 µs syscall, while fs.promises.lstat costs ~15–20 µs of main-thread CPU
 * per call (request object, thread-pool hop, promise) — the largest single
 * item of a cache-hit job (see docs/BENCHMARKS.md). `throwIfNoEntry: false`
 * avoids building an exception for a missing blob. Synchronous, so a cache
 * hit takes no promise or microtask for it either.
 */
export function statBlob(paths: StorePaths, digest: Digest, expectedSize?: number): BlobInfo | undefined {
  const path = blobPath(paths, digest);
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st || !st.isFile() || st.size <= 0) return undefined;
  if (expectedSize !== undefined && st.size !== expectedSize) return undefined;
  return { digest, path, size: st.size };
}

export function newTempPath(paths: StorePaths): string {
  return join(paths.temp, `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}.img`);
}

/** Remove temp files untouched for longer than `maxAgeMs` (left by a crashed process). */
export async function sweepTemp(paths: StorePaths, maxAgeMs: number, now = Date.now()): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(paths.temp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names) {
    // cocoon's conventions: only our pull-* downloads; never .tmp-* (cocoon's conversions) or *.lock.
    if (!name.startsWith(TEMP_PREFIX) || name.endsWith('.lock')) continue;
    const p = join(paths.temp, name);
    try {
      const st = await lstat(p);
      if (now - st.mtimeMs > maxAgeMs) {
        await removeIfExists(p);
        removed.push(p);
      }
    } catch {
      /* raced with its owner: fine */
    }
  }
  return removed;
}
