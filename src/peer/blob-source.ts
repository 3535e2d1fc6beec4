/**
 * What the peer server may serve: a readable blob for a digest, or nothing.
 *
 *   - `committedBlobs`: a blob of the store that is known to hash to its name
 *     (`VerifiedBlobs`: this process committed it as received, or hashed the
 *     file itself). A raw or old-qcow2 body is converted at commit, so its
 *     blob does not hash to the pinned digest and is never served.
 *   - `InProgressDownloads.source()` (in-progress.ts): a pinned download still
 *     being written, streamed up to the writer's watermark.
 *
 * `firstOf` tries sources in order.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Digest } from '../lib/digest.js';
import { statBlob } from '../store/blob-store.js';
import type { StorePaths } from '../store/paths.js';
import { VerifiedBlobs } from './verified-blobs.js';

export interface OpenBlob {
  size: number;
  /** Where the bytes come from (for the server's debug log). */
  kind: 'committed' | 'in-progress';
  /** The bytes start..end (inclusive). */
  stream(start: number, end: number): Readable;
  close(): Promise<void>;
}

export interface BlobSource {
  /** The blob, opened; undefined when this source does not have it. */
  open(digest: Digest): Promise<OpenBlob | undefined>;
}

/**
 * Committed blobs that hash to their name: a regular file under blobs/
 * (statBlob: no symlink, size > 0), opened with O_NOFOLLOW and checked again
 * on the descriptor, so a file swapped in between is not served; then
 * `verified.check` on that descriptor (hashing it once when this process does
 * not know it yet). temp/ (pull-*, cocoon's .tmp-*) is never looked at.
 */
export function committedBlobs(paths: StorePaths, verified: VerifiedBlobs = new VerifiedBlobs()): BlobSource {
  return {
    async open(digest) {
      const info = statBlob(paths, digest);
      if (!info) return undefined;
      let fh;
      try {
        fh = await open(info.path, constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch {
        return undefined; // removed (GC) or replaced by a symlink since the stat
      }
      const handle = fh;
      try {
        const st = await handle.stat();
        if (!st.isFile() || st.size <= 0 || !(await verified.check(digest, handle, st))) {
          await handle.close();
          return undefined;
        }
        return {
          size: st.size,
          kind: 'committed',
          stream: (start, end) => handle.createReadStream({ start, end, autoClose: false, highWaterMark: 64 * 1024 }),
          close: () => handle.close(),
        };
      } catch (err) {
        await handle.close().catch(() => {});
        throw err;
      }
    },
  };
}

/** The first source that has the digest. */
export function firstOf(...sources: BlobSource[]): BlobSource {
  return {
    async open(digest) {
      for (const s of sources) {
        const blob = await s.open(digest);
        if (blob) return blob;
      }
      return undefined;
    },
  };
}
