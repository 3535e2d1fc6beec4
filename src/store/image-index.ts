/**
 * cocoon's URL → digest index (db/images.json), with cocoon's field names:
 *   {"images": {"<url>": {"ref", "content_sum", "size", "created_at"}}}
 * Reads are lock-free (writes are atomic renames); every read-modify-write
 * holds db/images.lock so no update loses another's entry.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { z } from 'zod';
import { Digest } from '../jobs/contracts/common.js';
import { InternalError } from '../lib/errors.js';
import { withFileLock } from './file-lock.js';
import { writeFileAtomic } from './fs-atomic.js';
import type { StorePaths } from './paths.js';

export const IndexEntry = z.looseObject({
  ref: z.string(),
  content_sum: Digest,
  size: z.number().int().nonnegative(),
  created_at: z.string(),
});
export type IndexEntry = z.infer<typeof IndexEntry>;

export const ImageIndex = z.looseObject({
  images: z.record(z.string(), IndexEntry).default({}),
});
export type ImageIndex = z.infer<typeof ImageIndex>;

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
    throw new InternalError(`image index ${paths.index} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = ImageIndex.safeParse(json);
  if (!parsed.success) {
    throw new InternalError(`image index ${paths.index} has an unexpected shape: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}

export async function lookupUrl(paths: StorePaths, url: string): Promise<IndexEntry | undefined> {
  const index = await readIndex(paths);
  return Object.hasOwn(index.images, url) ? index.images[url] : undefined;
}

/** Read-modify-write the index under the host-wide flock, atomically. */
export async function updateIndex(paths: StorePaths, mutate: (index: ImageIndex) => void): Promise<void> {
  await mkdir(paths.db, { recursive: true });
  await withFileLock(paths.indexLock, async () => {
    const index = await readIndex(paths);
    mutate(index);
    await writeFileAtomic(paths.index, `${JSON.stringify(index, null, 2)}\n`);
  });
}

/** Point `url` at `digest` (what cocoon does after a successful pull). */
export async function recordUrl(paths: StorePaths, url: string, digest: string, size: number): Promise<void> {
  await updateIndex(paths, (index) => {
    index.images[url] = { ref: url, content_sum: digest, size, created_at: new Date().toISOString() };
  });
}
