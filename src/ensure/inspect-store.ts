/** Gather what the pull policy needs to know about the store (the I/O half of the policy). */
import type { Digest } from '../lib/digest.js';
import type { StoreView } from '../policy/pull-policy.js';
import { type BlobInfo, statBlob } from '../store/blob-store.js';
import { lookupUrl } from '../store/image-index.js';
import type { StorePaths } from '../store/paths.js';
import { IndexCorruptError } from '../store/store-errors.js';

export interface StoreSnapshot {
  view: StoreView;
  pinnedBlob?: BlobInfo | undefined;
  urlBlob?: BlobInfo | undefined;
}

/** The snapshot when the pinned blob is on disk (then the URL cache does not matter), else undefined. Synchronous: the cache-hit path. */
export function pinnedSnapshot(paths: StorePaths, pinned: Digest): StoreSnapshot | undefined {
  const pinnedBlob = statBlob(paths, pinned);
  return pinnedBlob ? { view: { pinned, pinnedBlobValid: true, urlEntryBlobValid: false }, pinnedBlob } : undefined;
}

export async function inspectStore(paths: StorePaths, url: string, pinned: Digest | undefined): Promise<StoreSnapshot> {
  return (pinned ? pinnedSnapshot(paths, pinned) : undefined) ?? inspectUrl(paths, url, pinned);
}

/** The URL's index entry and its blob, for when the pinned blob (if any) is absent. */
export async function inspectUrl(paths: StorePaths, url: string, pinned: Digest | undefined): Promise<StoreSnapshot> {
  let entry;
  try {
    entry = await lookupUrl(paths, url);
  } catch (err) {
    // A pinned digest is decided by the blob on disk: an unreadable index only loses the "stale cache" hint.
    if (!(pinned && err instanceof IndexCorruptError)) throw err;
  }
  const urlBlob = entry ? statBlob(paths, entry.content_sum, entry.size) : undefined;
  return {
    view: {
      pinned,
      pinnedBlobValid: false,
      urlEntry: entry ? { digest: entry.content_sum, size: entry.size } : undefined,
      urlEntryBlobValid: urlBlob !== undefined,
    },
    urlBlob,
  };
}
