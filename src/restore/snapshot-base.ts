/**
 * Which base image a restore needs: the snapshot decides (cocoon boots the
 * blob the snapshot recorded, `image_digest` / `image_blob_ids`), not the job
 * and not the URL index. Pure.
 *
 *   snapshot digest  job digest   → result
 *   D                —            → D (source "snapshot")
 *   D                D            → D
 *   D                E ≠ D        → permanent failure naming both, nothing runs
 *   —                E            → E (source "job")
 *   —                —            → the URL's current digest (source "url"), said in the job log
 */
import { ImageUrl } from '../jobs/contracts/common.js';
import type { RestorePayload } from '../jobs/contracts/restore.js';
import { Digest } from '../lib/digest.js';
import type { CocoonSnapshot } from './cocoon-records.js';
import { BaseImageMismatchError, SnapshotRecordError } from './restore-errors.js';

export interface BaseImage {
  /** The digest to ensure; undefined only for source "url". */
  digest?: Digest | undefined;
  /** Where to pull it from when it is missing. */
  url?: string | undefined;
  source: 'snapshot' | 'job' | 'url';
  /** Something the operator should read in the job log. */
  note?: string | undefined;
}

/**
 * The digest recorded by the snapshot: `image_digest`, else the single key of
 * `image_blob_ids`. The record is read from disk: this is where its digest is
 * checked, once.
 */
export function snapshotDigest(snap: CocoonSnapshot, jobDigest?: Digest): Digest | undefined {
  const recorded: string | undefined = snap.image_digest;
  if (recorded !== undefined && recorded !== '') {
    const digest = Digest.from(recorded);
    if (!digest) throw new SnapshotRecordError(`snapshot ${snap.name ?? snap.id} records image_digest ${JSON.stringify(recorded.slice(0, 80))}, which is not sha256:<64 hex>`);
    return digest;
  }
  const keys = Object.keys(snap.image_blob_ids ?? {});
  const digests: Digest[] = [];
  for (const k of keys) {
    const d = Digest.fromHex(k);
    if (!d) throw new SnapshotRecordError(`snapshot ${snap.name ?? snap.id} records image_blob_ids key ${JSON.stringify(k.slice(0, 80))}, which is not 64 hex`);
    digests.push(d);
  }
  if (digests.length === 1) return digests[0];
  if (digests.length > 1) {
    // Several base blobs and no image_digest: only a job digest among them can say which one.
    if (jobDigest && digests.some((d) => d.equals(jobDigest))) return jobDigest;
    throw new SnapshotRecordError(`snapshot ${snap.name ?? snap.id} records ${keys.length} base blobs and no image_digest; pass the digest to use (--digest)`);
  }
  return undefined;
}

export function resolveBase(snap: CocoonSnapshot, p: RestorePayload): BaseImage {
  if (snap.image_type && snap.image_type !== 'cloudimg') {
    throw new SnapshotRecordError(`snapshot ${p.snapshot} boots a ${snap.image_type} image; fleetq ensures cloudimg images only`);
  }
  const recorded = snapshotDigest(snap, p.imageDigest);
  // cocoon's record is input too: only a valid http(s) URL, in its canonical form, is used.
  const parsedUrl = snap.image ? ImageUrl.safeParse(snap.image) : undefined;
  const snapUrl = parsedUrl?.success ? parsedUrl.data : undefined;
  const url = p.image ?? snapUrl;
  if (recorded) {
    if (p.imageDigest && !p.imageDigest.equals(recorded)) throw new BaseImageMismatchError(p.snapshot, recorded, p.imageDigest);
    return { digest: recorded, url, source: 'snapshot' };
  }
  if (p.imageDigest) {
    return { digest: p.imageDigest, url, source: 'job', note: `snapshot ${p.snapshot} records no image digest (older snapshot): using the job's ${p.imageDigest}` };
  }
  if (!url) {
    throw new SnapshotRecordError(`snapshot ${p.snapshot} records no image digest and no usable image URL, and the job names neither: nothing to ensure (pass --image and/or --digest)`);
  }
  return { url, source: 'url', note: `snapshot ${p.snapshot} records no image digest and the job pins none: falling back to the URL's current image (the URL cache may be stale; pin --digest to be sure)` };
}
