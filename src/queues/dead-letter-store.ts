/**
 * The dead-letter store in Redis, as both sides see it: the worker's recorder
 * (worker/dead-letter-recorder.ts) writes and trims it, the operator tools
 * (ops/dead-letters.ts: `fleetq dlq ls|requeue|purge`) read and remove from it.
 * Entries: HASH id → JSON entry, ZSET id → failedAt (registryKeys dlqEntries,
 * dlqIndex); the sweep's watermark per queue: HASH dlqSwept.
 */
import type { RedisClient } from '../redis/connect.js';
import { z } from 'zod';
import { registryKeys } from '../registry/keys.js';

export const DeadLetter = z.object({
  id: z.string(),
  host: z.string(),
  queue: z.string(),
  queueKind: z.enum(['images', 'restores']),
  originalId: z.string(),
  name: z.string(),
  data: z.unknown(),
  reason: z.string(),
  attemptsMade: z.number(),
  failedAt: z.number(),
  parent: z.object({ id: z.string(), queue: z.string() }).optional(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

export function deadLetterId(queue: string, originalId: string): string {
  return `${queue}/${originalId}`;
}

/** Field on a BullMQ job hash: the `finishedOn` of the failure recorded as a dead letter. */
export const DEAD_LETTER_MARK = 'fleetqDeadLetter';
/** HASH queue name → ms: failures before this (minus the sweep's slack) are known recorded. */
export const sweptKey = (prefix: string) => registryKeys(prefix).dlqSwept;

/** FLEETQ_DLQ_MAX_AGE's default: dead letters older than this are dropped. */
export const DLQ_DEFAULT_MAX_AGE_MS = 30 * 86_400_000;

export async function removeDeadLetters(redis: RedisClient, prefix: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const k = registryKeys(prefix);
  await redis.multi().hdel(k.dlqEntries, ...ids).zrem(k.dlqIndex, ...ids).exec();
}

/**
 * Remove dead letters older than `olderThanMs`, in batches of `batch`, at
 * most `limit` in all (default: every one). Returns how many were removed.
 */
export async function purgeDeadLetters(redis: RedisClient, prefix: string, olderThanMs: number, now = Date.now(), batch = 1000, limit = Number.POSITIVE_INFINITY): Promise<number> {
  let removed = 0;
  while (removed < limit) {
    const n = await dropExpiredDeadLetters(redis, prefix, now - olderThanMs, Math.min(batch, limit - removed), true);
    removed += n;
    if (n === 0) break;
  }
  return removed;
}

/** Drop up to `count` entries that failed before `cutoff` (`inclusive`: at `cutoff` too). */
export async function dropExpiredDeadLetters(redis: RedisClient, prefix: string, cutoff: number, count: number, inclusive = false): Promise<number> {
  const ids = await redis.zrangebyscore(registryKeys(prefix).dlqIndex, '-inf', inclusive ? cutoff : `(${cutoff}`, 'LIMIT', 0, count);
  await removeDeadLetters(redis, prefix, ids);
  return ids.length;
}
