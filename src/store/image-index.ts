/**
 * cocoon's URL → digest index (db/images.json), with cocoon's field names:
 *   {"images": {"<url>": {"ref", "content_sum", "size", "created_at"}}}
 * Reads are lock-free (writes are atomic renames); every read-modify-write
 * holds db/images.lock so no update loses another's entry.
 *
 * The index is also what keeps a blob alive: `cocoon gc` deletes every blob
 * that no index entry (nor VM or snapshot record) references. So every digest
 * fleetq reports `present` or `pulled` is referenced here. A pinned blob that
 * no entry references (its URL entry was re-pointed to a newer digest) gets an
 * entry of its own under the key `<url>#<digest>` (see `pinnedRef`).
 */
import { type FSWatcher, statSync, watch } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { Digest } from '../lib/digest.js';
import { withFileLock } from './file-lock.js';
import { writeFileAtomic } from './fs-atomic.js';
import type { StorePaths } from './paths.js';
import { IndexCorruptError } from './store-errors.js';

export const IndexEntry = z.looseObject({
  ref: z.string(),
  /** cocoon's name for the digest; a `Digest` once read. */
  content_sum: Digest.schema,
  size: z.number().int().nonnegative(),
  created_at: z.string(),
});
export type IndexEntry = z.infer<typeof IndexEntry>;

export const ImageIndex = z.looseObject({
  images: z.record(z.string(), IndexEntry).default({}),
});
export type ImageIndex = z.infer<typeof ImageIndex>;

const REPAIR =
  'fleetq will not overwrite it; repair it by hand (restore a backup, or move it aside and let pulls re-create entries; until then unindexed blobs are unprotected from `cocoon gc`)';

export async function readIndex(paths: StorePaths): Promise<ImageIndex> {
  let text: string;
  try {
    text = await readFile(paths.index, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { images: {} };
    throw err;
  }
  if (text.trim() === '') return { images: {} };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new IndexCorruptError(`image index ${paths.index} is not valid JSON (${(err as Error).message}): ${REPAIR}`);
  }
  const parsed = ImageIndex.safeParse(json);
  if (!parsed.success) {
    throw new IndexCorruptError(`image index ${paths.index} has an unexpected shape (${parsed.error.issues[0]?.message}): ${REPAIR}`);
  }
  return parsed.data;
}

export async function lookupUrl(paths: StorePaths, url: string): Promise<IndexEntry | undefined> {
  const index = await readIndex(paths);
  return Object.hasOwn(index.images, url) ? index.images[url] : undefined;
}

/** Run `fn` holding db/images.lock (cocoon's own flock): the one critical section for index and blob commits. */
export async function withIndexLock<T>(paths: StorePaths, fn: () => Promise<T>): Promise<T> {
  await mkdir(paths.db, { recursive: true });
  return withFileLock(paths.indexLock, fn);
}

/** Index writes by this process (IndexReferences re-reads after one without waiting for its inotify event). */
let localWrites = 0;

/** Replace images.json atomically (temp + fsync + rename + dir fsync). Call inside `withIndexLock`. */
export async function writeIndex(paths: StorePaths, index: ImageIndex): Promise<void> {
  try {
    await writeFileAtomic(paths.index, `${JSON.stringify(index)}\n`);
  } finally {
    localWrites++;
  }
}

/** Read-modify-write the index under the host-wide flock, atomically. */
export async function updateIndex(paths: StorePaths, mutate: (index: ImageIndex) => boolean | void): Promise<void> {
  await withIndexLock(paths, async () => {
    const index = await readIndex(paths);
    if (mutate(index) === false) return;
    await writeIndex(paths, index);
  });
}

/**
 * The index key that keeps a pinned blob referenced when its URL's entry
 * points at another digest: the URL with the digest as its fragment. A
 * fragment is never sent to a server, so the key still names the same
 * download, and it cannot collide with a real URL entry (job URLs are stored
 * without fragment). `cocoon image ls` shows it as a separate cloudimg entry.
 */
export function pinnedRef(url: string, digest: Digest): string {
  const hash = url.indexOf('#');
  return `${hash === -1 ? url : url.slice(0, hash)}#${digest.value}`;
}

/** Point `url` at `digest` (what cocoon does after a successful pull); a `<url>#<digest>` entry becomes redundant. */
export function setUrlEntry(index: ImageIndex, url: string, digest: Digest, size: number): void {
  index.images[url] = { ref: url, content_sum: digest, size, created_at: new Date().toISOString() };
  const pinned = pinnedRef(url, digest);
  if (pinned !== url) delete index.images[pinned];
}

/** Point `url` at `digest` under the lock. */
export async function recordUrl(paths: StorePaths, url: string, digest: Digest, size: number): Promise<void> {
  await updateIndex(paths, (index) => setUrlEntry(index, url, digest, size));
}

export function referencesDigest(index: ImageIndex, digest: Digest): boolean {
  for (const e of Object.values(index.images)) if (e.content_sum.equals(digest)) return true;
  return false;
}

/**
 * Make sure some entry references `digest` (so `cocoon gc` keeps its blob);
 * adds `<url>#<digest>` when none does. Returns whether it wrote.
 */
export async function ensureReferenced(paths: StorePaths, url: string, digest: Digest, size: number): Promise<boolean> {
  let wrote = false;
  await updateIndex(paths, (index) => {
    if (referencesDigest(index, digest)) return false;
    const ref = pinnedRef(url, digest);
    index.images[ref] = { ref, content_sum: digest, size, created_at: new Date().toISOString() };
    wrote = true;
  });
  return wrote;
}

/**
 * Which digests images.json references, for a pinned cache hit that must know
 * its blob is referenced without parsing the index on every job.
 *
 * The set is re-read when the file changed. A change is seen by an inotify
 * watch on db/ (fs.watch: nothing to do per job while the file stays as it
 * is), by a write of this process (`writeIndex` counts them, so no event has
 * to arrive first), or, where no watch can be set up, by the file's inode,
 * size and mtime (one stat per job, ~5 µs). Any event drops the watch; the
 * next read sets up a new one before it reads, so a change made while it reads
 * is never missed, and a replaced db/ directory is watched afresh. In case a
 * change ever comes without an event (a network file system), the stamp is
 * still compared once a second.
 */
const RECHECK_MS = 1000;

export class IndexReferences {
  private stamp = '';
  private digests = new Set<string>();
  private indexPath = '';
  private watcher: FSWatcher | undefined;
  /** Changes seen (events, this process's writes) since the watch began. */
  private changes = 0;
  private watchFailed = false;
  /** The set is current while the watch holds and nothing has changed since the read. */
  private fresh = false;
  private readAtWrites = -1;
  private checkedAt = 0;

  /** True when the set is current (no file-system call) and holds `digest`; false means "ask `has`". */
  knownReferenced(paths: StorePaths, digest: Digest): boolean {
    return this.isFresh(paths, performance.now()) && this.digests.has(digest.value);
  }

  private isFresh(paths: StorePaths, now: number): boolean {
    return this.fresh && this.readAtWrites === localWrites && this.indexPath === paths.index && now - this.checkedAt < RECHECK_MS;
  }

  async has(paths: StorePaths, digest: Digest): Promise<boolean> {
    const now = performance.now();
    if (this.isFresh(paths, now)) return this.digests.has(digest.value);
    this.fresh = false;
    this.checkedAt = now;
    if (this.indexPath !== paths.index) {
      this.unwatch();
      this.indexPath = paths.index;
      this.stamp = '';
    }
    const watching = this.watch(paths);
    const changes = this.changes;
    const writes = localWrites;
    const st = statSync(paths.index, { throwIfNoEntry: false, bigint: false });
    const stamp = st ? `${st.ino}:${st.size}:${st.mtimeMs}` : 'none';
    if (stamp !== this.stamp || writes !== this.readAtWrites) {
      const index = await readIndex(paths);
      this.digests = new Set(Object.values(index.images).map((e) => e.content_sum.value));
      this.stamp = stamp;
    }
    this.readAtWrites = writes;
    this.fresh = watching && this.changes === changes && this.watcher !== undefined;
    return this.digests.has(digest.value);
  }

  /** Stop watching (tests, shutdown): `has` goes on working, one stat per call. */
  close(): void {
    this.watchFailed = true;
    this.unwatch();
  }

  private watch(paths: StorePaths): boolean {
    if (this.watcher) return true;
    if (this.watchFailed) return false;
    try {
      const name = basename(paths.index);
      const w = watch(paths.db, { persistent: false }, (_event, file) => {
        if (file === null || file === name || !String(file).startsWith('.')) this.changed();
      });
      w.on('error', () => this.changed());
      this.watcher = w;
      return true;
    } catch (err) {
      // No inotify (limit reached, unsupported file system): stat per job. No db/ yet: try again next time.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.watchFailed = true;
      return false;
    }
  }

  private changed(): void {
    this.changes++;
    this.fresh = false;
    this.stamp = ''; // re-read whatever the stat says: an in-place write may keep size and mtime
    this.unwatch();
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
