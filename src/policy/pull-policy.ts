/**
 * The pull policy: given what the store holds, does an ensure-image job need
 * the network? Pure — the I/O that gathers `StoreView` lives in src/ensure/.
 *
 * The rule that fixes cocoon#37: a pinned digest that is not on disk is always
 * downloaded, bypassing the URL→blob cache, because that cache may point at a
 * different (stale or newer) digest after a mutable tag was re-pushed.
 */
import type { Digest } from '../lib/digest.js';
import type { PullKey } from '../lock/keys.js';

export interface StoreView {
  /** The pinned digest, if the job pins one. */
  pinned?: Digest | undefined;
  /** Whether blobs/<pinned>.qcow2 is a valid blob. */
  pinnedBlobValid: boolean;
  /** The URL's index entry, if any. */
  urlEntry?: { digest: Digest; size: number } | undefined;
  /** Whether the entry's blob is a regular file whose size equals the entry's. */
  urlEntryBlobValid: boolean;
}

export interface PolicyOptions {
  force?: boolean | undefined;
  /**
   * Reproduce cocoon before PR #39: trust the URL cache even when the pinned
   * digest is missing. Never set in production; tests use it to prove the
   * suite detects the bug.
   */
  trustUrlCacheOverPin?: boolean | undefined;
}

export type PullDecision =
  | { action: 'present'; digest: Digest; via: 'pinned-blob' | 'url-cache' }
  | { action: 'download'; expectDigest?: Digest | undefined; reason: DownloadReason };

export type DownloadReason = 'forced' | 'pinned-missing' | 'pinned-missing-url-cache-stale' | 'not-cached' | 'cached-blob-invalid';

export function decidePull(view: StoreView, opts: PolicyOptions = {}): PullDecision {
  const { pinned } = view;
  if (opts.force) return { action: 'download', expectDigest: pinned, reason: 'forced' };
  if (pinned) {
    if (view.pinnedBlobValid) return { action: 'present', digest: pinned, via: 'pinned-blob' };
    if (opts.trustUrlCacheOverPin && view.urlEntry && view.urlEntryBlobValid) {
      return { action: 'present', digest: view.urlEntry.digest, via: 'url-cache' };
    }
    const stale = view.urlEntry !== undefined && !view.urlEntry.digest.equals(pinned);
    return { action: 'download', expectDigest: pinned, reason: stale ? 'pinned-missing-url-cache-stale' : 'pinned-missing' };
  }
  if (!view.urlEntry) return { action: 'download', reason: 'not-cached' };
  if (view.urlEntryBlobValid) return { action: 'present', digest: view.urlEntry.digest, via: 'url-cache' };
  return { action: 'download', reason: 'cached-blob-invalid' };
}

/**
 * The key that serialises downloads on one host: the digest when pinned (with
 * the URL, which splits in-process flights but not the lock), else the URL.
 */
export function pullKey(pinned: Digest | undefined, url: string): PullKey {
  return pinned ? { kind: 'digest', digest: pinned, url } : { kind: 'url', url };
}
