/** Queue names and job ids are built only here. BullMQ forbids ":" in both. Pure. */
import { createHash } from 'node:crypto';

export type QueueKind = 'images' | 'restores';

export function queueName(kind: QueueKind, host: string): string {
  return `${kind}-${host}`;
}

export const imageQueueName = (host: string) => queueName('images', host);
export const restoreQueueName = (host: string) => queueName('restores', host);

/**
 * Deduplication id for an ensure-image job: one pending job per (host, URL,
 * digest, force). The URL is part of it for pinned jobs too: a digest
 * mismatch is a verdict on (URL, digest), so a job pinning D through a good
 * URL must not collapse into one pinning D through a bad URL.
 */
export function ensureImageDedupId(host: string, image: string, digest: string | undefined, force: boolean | undefined): string {
  const url = `u-${createHash('sha256').update(image).digest('hex').slice(0, 40)}`;
  const what = digest ? `d-${digest.slice('sha256:'.length)}.${url}` : url;
  return `ensure-image.${host}.${what}${force ? '.force' : ''}`;
}

/**
 * The ensure-image job a restore adds when its base is missing: one per
 * restore attempt (`attemptsMade`), so a restore retried after its image job
 * failed (by BullMQ, the board's Retry button or `fleetq retry`) gets a fresh
 * image job instead of the old failure.
 */
export function imageChildId(restoreJobId: string, attempt: number): string {
  return `${restoreJobId}.image.${attempt}`;
}

/** The image child ids a restore may have made, newest first, up to `attempt`. */
export function imageChildIds(restoreJobId: string, upTo: number): string[] {
  return Array.from({ length: upTo + 1 }, (_, i) => imageChildId(restoreJobId, upTo - i));
}
