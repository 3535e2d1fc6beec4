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

export async function inspectStore(paths: StorePaths, url: string, pinned: Digest | undefined): Promise<StoreSnapshot> {
  const pinnedBlob = pinned ? await statBlob(paths, pinned) : undefined;
  if (pinnedBlob) {
    // The pinned blob is there: the URL cache does not matter, skip reading it.
    return { view: { pinned, pinnedBlobValid: true, urlEntryBlobValid: false }, pinnedBlob };
  }
  let entry;
  try {
    entry = await lookupUrl(paths, url);
  } catch (err) {
    // A pinned digest is decided by the blob on disk: an unreadable index only loses the "stale cache" hint.
    if (!(pinned && err instanceof IndexCorruptError)) throw err;
  }
  const urlBlob = entry ? await statBlob(paths, entry.content_sum, entry.size) : undefined;
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
