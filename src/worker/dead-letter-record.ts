/**
 * Recording one dead letter: a job whose retries are exhausted (or that
 * failed permanently) is stored with its host, queue, original id, payload
 * and last reason (queues/dead-letter-store.ts), idempotently (keyed by queue
 * and original id), and the job's own hash is marked as recorded. Each
 * recording also drops up to TRIM_ON_RECORD entries past the retention.
 * Who records when: worker/dead-letter-recorder.ts.
 */
import type { Job } from 'bullmq';
import type { RedisClient } from '../redis/connect.js';
import { DEAD_LETTER_MARK, type DeadLetter, deadLetterHost, deadLetterId, DLQ_DEFAULT_MAX_AGE_MS, dropExpiredDeadLetters } from '../queues/dead-letter-store.js';
import { hostKeys, registryKeys } from '../registry/keys.js';

/** Expired entries dropped per recording, and per sweep, at most. */
export const TRIM_ON_RECORD = 100;
export const TRIM_ON_SWEEP = 5_000;

export interface DeadLetterRetention {
  /** Entries whose failedAt is older than this are dropped (default DLQ_DEFAULT_MAX_AGE_MS). */
  maxAgeMs?: number | undefined;
  now?: number | undefined;
}

/**
 * KEYS: entries, index, job hash, queue's failed set: all four in the host's slot (`{<host>}`: the store's
 * keys are tagged with the host, the queue is `images-{<host>}` / `restores-{<host>}`). ARGV: id, originalId, entry JSON, failedAt, mark field,
 * retention cutoff (ms), how many expired entries to drop at most.
 * Records only while the job is in `failed` (a job retried meanwhile is not dead) and this failure is not
 * marked yet (recorded by the other path, or recorded and purged since: 2), and marks the job.
 * Reads first, so under OOM Redis refuses the first write and nothing is half-written. Then drops up to
 * ARGV[7] entries that failed before the cutoff (deletes: allowed under OOM too).
 */
const RECORD_SCRIPT = `
if redis.call('ZSCORE', KEYS[4], ARGV[2]) == false then return 0 end
local finished = redis.call('HGET', KEYS[3], 'finishedOn') or ARGV[4]
if redis.call('HGET', KEYS[3], ARGV[5]) == finished then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], ARGV[5], finished) end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6], 'LIMIT', 0, tonumber(ARGV[7]))
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return 1
`;

/**
 * Record a dead letter. With `job` (its hash key and its queue's failed-set
 * key), only while the job is still failed and this failure is not recorded
 * yet (else returns undefined), and the job is marked as recorded. Each
 * recording also drops up to TRIM_ON_RECORD entries older than the retention.
 */
export async function recordDeadLetter(
  redis: RedisClient,
  prefix: string,
  entry: Omit<DeadLetter, 'id'>,
  job?: { key: string; failedKey: string },
  retention: DeadLetterRetention = {},
): Promise<DeadLetter | undefined> {
  const full: DeadLetter = { id: deadLetterId(entry.queue, entry.originalId), ...entry };
  // Stored under its queue's host (what removeDeadLetters derives from the id).
  const host = deadLetterHost(full.id) ?? entry.host;
  const k = hostKeys(prefix, host);
  const cutoff = (retention.now ?? Date.now()) - (retention.maxAgeMs ?? DLQ_DEFAULT_MAX_AGE_MS);
  // First, in the {registry} slot: the host is where `fleetq dlq` looks (idempotent; never after the entry).
  await redis.sadd(registryKeys(prefix).dlqHosts, host);
  if (!job) {
    await redis.multi().hset(k.dlqEntries, full.id, JSON.stringify(full)).zadd(k.dlqIndex, full.failedAt, full.id).exec();
    await dropExpiredDeadLetters(redis, prefix, host, cutoff, TRIM_ON_RECORD);
    return full;
  }
  const done = await redis.eval(
    RECORD_SCRIPT,
    4,
    k.dlqEntries,
    k.dlqIndex,
    job.key,
    job.failedKey,
    full.id,
    full.originalId,
    JSON.stringify(full),
    full.failedAt,
    DEAD_LETTER_MARK,
    cutoff,
    TRIM_ON_RECORD,
  );
  return done === 1 ? full : undefined;
}

/** The dead letter for a failed job, from the job as BullMQ holds it. */
export function deadLetterFor(job: Job, host: string, queue: string, fallbackReason = ''): Omit<DeadLetter, 'id'> {
  const parent = job.parent?.id ? { id: job.parent.id, queue: job.parent.queueKey.split(':').slice(1).join(':') } : undefined;
  return {
    host,
    queue,
    queueKind: queue.startsWith('restores-') ? 'restores' : 'images',
    originalId: job.id!,
    name: job.name,
    data: job.data,
    reason: job.failedReason || fallbackReason,
    attemptsMade: job.attemptsMade,
    failedAt: job.finishedOn ?? Date.now(),
    ...(parent ? { parent } : {}),
  };
}
