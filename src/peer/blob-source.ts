/**
 * What the peer server may serve: a readable blob for a digest, or nothing.
 *
 * Today the only source is the store's committed blobs (`committedBlobs`).
 * The seam for serving downloads still in progress (issue 13, "stream behind
 * a peer that is still downloading") is this interface: a second source that
 * answers for digests being pulled, whose `size` is the final size and whose
 * stream waits for bytes not written yet, tried after the committed one.
 */
import { constants, type ReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Digest } from '../lib/digest.js';
import { statBlob } from '../store/blob-store.js';
import type { StorePaths } from '../store/paths.js';

export interface OpenBlob {
  size: number;
  /** The bytes start..end (inclusive). */
  stream(start: number, end: number): ReadStream;
  close(): Promise<void>;
}

export interface BlobSource {
  /** The blob, opened; undefined when this source does not have it. */
  open(digest: Digest): Promise<OpenBlob | undefined>;
}

/**
 * Committed blobs only: a regular file under blobs/ (statBlob: no symlink,
 * size > 0), opened with O_NOFOLLOW and checked again on the descriptor, so
 * a file swapped in between is not served. temp/ (pull-*, cocoon's .tmp-*)
 * is never looked at.
 */
export function committedBlobs(paths: StorePaths): BlobSource {
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
      const st = await fh.stat();
      if (!st.isFile() || st.size <= 0) {
        await fh.close();
        return undefined;
      }
      const handle = fh;
      return {
        size: st.size,
        stream: (start, end) => handle.createReadStream({ start, end, autoClose: false, highWaterMark: 64 * 1024 }),
        close: () => handle.close(),
      };
    },
  };
}
