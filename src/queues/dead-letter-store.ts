/**
 * The dead-letter store in Redis, as both sides see it: the worker's recorder
 * (worker/dead-letter-recorder.ts) writes and trims it, the operator tools
 * (ops/dead-letters.ts: `fleetq dlq ls|requeue|purge`) read and remove from it.
 *
 * Per host, in the host's Cluster slot (`{<host>}`, the slot of its queues;
 * registry/keys.ts hostKeys): entries HASH id → JSON entry, index ZSET id →
 * failedAt, and the sweep's watermark per queue (HASH dlqSwept). The
 * recording script touches the entries, the index, the failed job's hash and
 * its queue's failed set at once: one slot, so it runs on a Cluster. Which
 * hosts have dead letters: the `{registry}` SET dlqHosts (added to before each
 * recording; a host leaves it once its store is empty and it is no longer
 * registered).
 */
import type { RedisClient } from '../redis/connect.js';
import { z } from 'zod';
import { hostKeys, registryKeys } from '../registry/keys.js';
import { parseQueueName } from './names.js';

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
/** HASH queue name → ms, per host: failures before this (minus the sweep's slack) are known recorded. */
export const sweptKey = (prefix: string, host: string) => hostKeys(prefix, host).dlqSwept;

/** FLEETQ_DLQ_MAX_AGE's default: dead letters older than this are dropped. */
export const DLQ_DEFAULT_MAX_AGE_MS = 30 * 86_400_000;

/** The host a dead letter id (`<queue>/<original id>`) belongs to: its queue's host. */
export function deadLetterHost(id: string): string | undefined {
  const slash = id.indexOf('/');
  return slash < 0 ? undefined : parseQueueName(id.slice(0, slash))?.host;
}

/** Hosts whose dead-letter store may hold entries, sorted. */
export async function deadLetterHosts(redis: RedisClient, prefix: string): Promise<string[]> {
  return (await redis.smembers(registryKeys(prefix).dlqHosts)).sort();
}

/** Remove dead letters by id (each in its host's store; ids whose queue names no host are ignored). */
export async function removeDeadLetters(redis: RedisClient, prefix: string, ids: string[]): Promise<void> {
  const byHost = new Map<string, string[]>();
  for (const id of ids) {
    const host = deadLetterHost(id);
    if (host !== undefined) byHost.set(host, [...(byHost.get(host) ?? []), id]);
  }
  for (const [host, some] of byHost) {
    const k = hostKeys(prefix, host);
    await redis.multi().hdel(k.dlqEntries, ...some).zrem(k.dlqIndex, ...some).exec();
  }
}

export interface PurgeOptions {
  /** Only these hosts' stores (default: every host in dlqHosts). */
  hosts?: readonly string[] | undefined;
  now?: number | undefined;
  /** Entries per round trip. */
  batch?: number | undefined;
  /** At most this many in all (default: every one). */
  limit?: number | undefined;
}

/** Remove dead letters older than `olderThanMs`, in bounded batches. Returns how many were removed. */
export async function purgeDeadLetters(redis: RedisClient, prefix: string, olderThanMs: number, opts: PurgeOptions = {}): Promise<number> {
  const now = opts.now ?? Date.now();
  const batch = opts.batch ?? 1000;
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  const hosts = opts.hosts ?? (await deadLetterHosts(redis, prefix));
  let removed = 0;
  for (const host of hosts) {
    while (removed < limit) {
      const n = await dropExpiredDeadLetters(redis, prefix, host, now - olderThanMs, Math.min(batch, limit - removed), true);
      removed += n;
      if (n === 0) break;
    }
    await forgetEmptyHost(redis, prefix, host);
    if (removed >= limit) break;
  }
  return removed;
}

/**
 * Drop a host from dlqHosts when its store is empty and no worker of it is registered (a registered
 * host's worker may be about to record: it adds itself first, so it is never left out for long).
 */
async function forgetEmptyHost(redis: RedisClient, prefix: string, host: string): Promise<void> {
  if ((await redis.zcard(hostKeys(prefix, host).dlqIndex)) > 0) return;
  if ((await redis.zscore(registryKeys(prefix).hosts, host)) !== null) return;
  await redis.srem(registryKeys(prefix).dlqHosts, host);
}

/** Drop up to `count` of a host's entries that failed before `cutoff` (`inclusive`: at `cutoff` too). */
export async function dropExpiredDeadLetters(redis: RedisClient, prefix: string, host: string, cutoff: number, count: number, inclusive = false): Promise<number> {
  const ids = await redis.zrangebyscore(hostKeys(prefix, host).dlqIndex, '-inf', inclusive ? cutoff : `(${cutoff}`, 'LIMIT', 0, count);
  await removeDeadLetters(redis, prefix, ids);
  return ids.length;
}
