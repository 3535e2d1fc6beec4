/**
 * Dead letters: a job whose retries are exhausted (or that failed permanently)
 * is recorded with its host, queue, original id, payload and last reason, so
 * on-call can list, requeue or purge them after an incident. Recording is
 * idempotent (keyed by queue and original id).
 */
import type { Redis } from 'ioredis';
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

export async function recordDeadLetter(redis: Redis, prefix: string, entry: Omit<DeadLetter, 'id'>): Promise<DeadLetter> {
  const k = registryKeys(prefix);
  const full: DeadLetter = { id: deadLetterId(entry.queue, entry.originalId), ...entry };
  await redis.multi().hset(k.dlqEntries, full.id, JSON.stringify(full)).zadd(k.dlqIndex, full.failedAt, full.id).exec();
  return full;
}

/** Page through dead letters oldest first, `batch` at a time. */
export async function* scanDeadLetters(redis: Redis, prefix: string, opts: { since?: number; until?: number; batch?: number } = {}): AsyncGenerator<DeadLetter> {
  const k = registryKeys(prefix);
  const batch = opts.batch ?? 500;
  let offset = 0;
  for (;;) {
    const ids = await redis.zrangebyscore(k.dlqIndex, opts.since ?? '-inf', opts.until ?? '+inf', 'LIMIT', offset, batch);
    if (ids.length === 0) return;
    const values = await redis.hmget(k.dlqEntries, ...ids);
    for (const v of values) {
      if (!v) continue;
      const parsed = DeadLetter.safeParse(JSON.parse(v));
      if (parsed.success) yield parsed.data;
    }
    offset += ids.length;
  }
}

export async function removeDeadLetters(redis: Redis, prefix: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const k = registryKeys(prefix);
  await redis.multi().hdel(k.dlqEntries, ...ids).zrem(k.dlqIndex, ...ids).exec();
}

/** Remove dead letters older than `olderThanMs`, in bounded batches. Returns how many were removed. */
export async function purgeDeadLetters(redis: Redis, prefix: string, olderThanMs: number, now = Date.now(), batch = 1000): Promise<number> {
  const k = registryKeys(prefix);
  let removed = 0;
  for (;;) {
    const ids = await redis.zrangebyscore(k.dlqIndex, '-inf', now - olderThanMs, 'LIMIT', 0, batch);
    if (ids.length === 0) return removed;
    await removeDeadLetters(redis, prefix, ids);
    removed += ids.length;
  }
}
