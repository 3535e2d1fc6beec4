/**
 * Queue names, board names and job ids are built (and parsed) only here. Pure.
 *
 * Queue names are `images-{<host>}` and `restores-{<host>}` in every mode
 * (standalone, Sentinel, Cluster). The braces are a Redis Cluster hash tag:
 * every key of a host's two queues (`fleetq:images-{h1}:wait`,
 * `fleetq:restores-{h1}:<id>`, …) hashes on `h1` alone, so a restore (parent,
 * restores queue) and its ensure-image child (images queue) share one slot, as
 * BullMQ flows require; different hosts spread over the cluster's masters.
 * Elsewhere the braces are plain characters. BullMQ forbids ":" in queue
 * names; braces are allowed. Before this layout (fleetq ≤ 0.1) the names were
 * `images-<host>` / `restores-<host>`: `fleetq migrate` moves their jobs.
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../lib/digest.js';

export type QueueKind = 'images' | 'restores';
export const QUEUE_KINDS: readonly QueueKind[] = ['images', 'restores'];

/** A host id (config/schema.ts HostId): letters, digits, ".", "_", "-"; never ":" or braces. */
const HOST = '[A-Za-z0-9][A-Za-z0-9._-]{0,62}';
const QUEUE_RE = new RegExp(`^(images|restores)-\\{(${HOST})\\}$`);
const LEGACY_QUEUE_RE = new RegExp(`^(images|restores)-(${HOST})$`);

export function queueName(kind: QueueKind, host: string): string {
  return `${kind}-{${host}}`;
}

export const imageQueueName = (host: string) => queueName('images', host);
export const restoreQueueName = (host: string) => queueName('restores', host);

/** The name fleetq ≤ 0.1 used for the queue (read only by `fleetq migrate`). */
export function legacyQueueName(kind: QueueKind, host: string): string {
  return `${kind}-${host}`;
}

export interface ParsedQueueName {
  kind: QueueKind;
  host: string;
  /** `images-<host>` (before the hash-tagged names): only `fleetq migrate` reads these. */
  legacy: boolean;
}

/** `images-{h1}` → {kind: images, host: h1}; `images-h1` → the same, legacy; anything else → undefined. */
export function parseQueueName(name: string): ParsedQueueName | undefined {
  const m = QUEUE_RE.exec(name);
  if (m) return { kind: m[1] as QueueKind, host: m[2]!, legacy: false };
  const l = LEGACY_QUEUE_RE.exec(name);
  if (l) return { kind: l[1] as QueueKind, host: l[2]!, legacy: true };
  return undefined;
}

/**
 * The board (Bull Board) names a queue `<host>:<queue name>`, e.g.
 * `h1:images-{h1}`, and groups its sidebar by splitting that name on ":", a
 * character no host id and no BullMQ queue name can contain: the sidebar
 * shows a group per host with its two queues. The board name is also the
 * queue's id in the board's URLs and API (`/api/queues/h1%3Aimages-%7Bh1%7D`).
 */
export const BOARD_DELIMITER = ':';

export interface BoardNaming {
  /** What Bull Board calls the queue (`adapter.getName()` = prefix + queue name). */
  name: string;
  /** Bull Board adapter options that produce `name` and the per-host grouping. */
  adapterOptions: { prefix: string; delimiter: string };
}

/** Queue → board name: the one mapping, and the adapter options that make Bull Board use it. */
export function boardNaming(kind: QueueKind, host: string): BoardNaming {
  const prefix = `${host}${BOARD_DELIMITER}`;
  return { name: `${prefix}${queueName(kind, host)}`, adapterOptions: { prefix, delimiter: BOARD_DELIMITER } };
}

export const boardName = (kind: QueueKind, host: string): string => boardNaming(kind, host).name;

/** Board name → queue (the inverse of `boardName`); undefined for anything boardName does not produce. */
export function queueOfBoardName(name: string): { kind: QueueKind; host: string; queue: string } | undefined {
  const at = name.indexOf(BOARD_DELIMITER);
  if (at < 0) return undefined;
  const host = name.slice(0, at);
  const parsed = parseQueueName(name.slice(at + BOARD_DELIMITER.length));
  if (!parsed || parsed.legacy || parsed.host !== host) return undefined;
  return { kind: parsed.kind, host, queue: queueName(parsed.kind, host) };
}

/**
 * Deduplication id for an ensure-image job: one pending job per (host, URL,
 * digest, force). The URL is part of it for pinned jobs too: a digest
 * mismatch is a verdict on (URL, digest), so a job pinning D through a good
 * URL must not collapse into one pinning D through a bad URL.
 * Published in docs/JOBS.md for producers that do not use fleetq's helpers.
 */
export function ensureImageDedupId(host: string, image: string, digest: Digest | undefined, force: boolean | undefined): string {
  const url = `u-${createHash('sha256').update(image).digest('hex').slice(0, 40)}`;
  const what = digest ? `d-${digest.hex}.${url}` : url;
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
