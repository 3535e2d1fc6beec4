/**
 * Dead letters: a job whose retries are exhausted (or that failed permanently)
 * is recorded with its host, queue, original id, payload and last reason, so
 * on-call can list, requeue or purge them after an incident. Recording is
 * idempotent (keyed by queue and original id).
 *
 * Never lost (issue 10: under Redis OOM BullMQ still moved 6 jobs to `failed`,
 * because its scripts start with a delete and Redis only refuses the *first*
 * write of a script, while the dead-letter HSET was refused and dropped):
 *   - the worker records a dead letter when BullMQ reports the failure,
 *     retrying a few times with backoff (DeadLetterRecorder.record);
 *   - and BullMQ's `failed` set is the source of truth: a sweep (at start-up,
 *     every minute, and every 1–10 s after a recording error until one
 *     succeeds) records every failed
 *     job that is not marked as recorded. The mark is a field on the job's own
 *     hash (`fleetqDeadLetter` = the `finishedOn` it was recorded for), written
 *     in the same script as the entry, so it lives and dies with the job, and
 *     `dlq purge` / `dlq requeue` never see their entries come back. A retried
 *     job that dies again has a new `finishedOn`, so it is recorded again.
 *   - each sweep starts from a per-queue watermark (`<prefix>:dlq:swept`), the
 *     oldest failure not yet known recorded, so it reads only recent failures.
 * Every error on the way is logged and counted
 * (fleetq_dead_letter_record_failures_total, fleetq_redis_errors_total{op="dead-letter"}).
 *
 * Retention (FLEETQ_DLQ_MAX_AGE, default 30d): entries that failed longer ago
 * are dropped, a bounded number at a time, by every recording (in the same
 * script, up to TRIM_ON_RECORD) and by every sweep (up to TRIM_ON_SWEEP), so
 * the store never grows without bound and no call does unbounded work.
 */
import { Job, type MinimalQueue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import { errorMessage } from '../lib/errors.js';
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
/** HASH queue name → ms: failures before this (minus SWEEP_SLACK_MS) are known recorded. */
export const sweptKey = (prefix: string) => registryKeys(prefix).dlqSwept;

/** FLEETQ_DLQ_MAX_AGE's default: dead letters older than this are dropped. */
export const DLQ_DEFAULT_MAX_AGE_MS = 30 * 86_400_000;
/** Expired entries dropped per recording, and per sweep, at most. */
export const TRIM_ON_RECORD = 100;
export const TRIM_ON_SWEEP = 5_000;

export interface DeadLetterRetention {
  /** Entries whose failedAt is older than this are dropped (default DLQ_DEFAULT_MAX_AGE_MS). */
  maxAgeMs?: number | undefined;
  now?: number | undefined;
}

/**
 * KEYS: entries, index, job hash, queue's failed set. ARGV: id, originalId, entry JSON, failedAt, mark field,
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
  redis: Redis,
  prefix: string,
  entry: Omit<DeadLetter, 'id'>,
  job?: { key: string; failedKey: string },
  retention: DeadLetterRetention = {},
): Promise<DeadLetter | undefined> {
  const k = registryKeys(prefix);
  const full: DeadLetter = { id: deadLetterId(entry.queue, entry.originalId), ...entry };
  const cutoff = (retention.now ?? Date.now()) - (retention.maxAgeMs ?? DLQ_DEFAULT_MAX_AGE_MS);
  if (!job) {
    await redis.multi().hset(k.dlqEntries, full.id, JSON.stringify(full)).zadd(k.dlqIndex, full.failedAt, full.id).exec();
    await dropExpired(redis, prefix, cutoff, TRIM_ON_RECORD);
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

/** A queue whose failed jobs a recorder looks after (a BullMQ Worker or Queue). */
export type DeadLetterQueue = MinimalQueue & { readonly name: string };

export interface DeadLetterRecorderOptions {
  redis: Redis;
  prefix: string;
  host: string;
  queues: DeadLetterQueue[];
  log: Logger;
  /** Tries per failure before it is left to the sweep (default 5: 0.25 s, 0.5 s, 1 s, 2 s between them). */
  tries?: number;
  firstBackoffMs?: number;
  /** Periodic sweep (default 60 s); after a recording error the next sweep comes sooner (1 s, doubling up to 10 s). */
  sweepEveryMs?: number;
  onRecorded?: (via: 'event' | 'sweep') => void;
  /** Each failed attempt to record (or to sweep). */
  onRecordError?: (err: unknown) => void;
  /** FLEETQ_DLQ_MAX_AGE: entries older than this are dropped on record and on sweep (default 30 days). */
  maxAgeMs?: number;
  /** Each sweep's retention pass, with how many expired entries it dropped. */
  onExpired?: (dropped: number) => void;
}

/** How far back before the watermark a sweep looks: clocks of other processes that fail jobs (CLI, board). */
export const SWEEP_SLACK_MS = 5 * 60_000;

export class DeadLetterRecorder {
  private readonly tries: number;
  private readonly firstBackoffMs: number;
  private readonly sweepEveryMs: number;
  private readonly maxAgeMs: number;
  private timer: NodeJS.Timeout | undefined;
  private dueAt = 0;
  private sweeping: Promise<void> | undefined;
  private closed = false;
  private errorStreak = 0;
  private readonly waits = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly o: DeadLetterRecorderOptions) {
    this.tries = o.tries ?? 5;
    this.firstBackoffMs = o.firstBackoffMs ?? 250;
    this.sweepEveryMs = o.sweepEveryMs ?? 60_000;
    this.maxAgeMs = o.maxAgeMs ?? DLQ_DEFAULT_MAX_AGE_MS;
  }

  /** Start sweeping: once now (what a crashed predecessor left), then periodically. */
  start(): void {
    this.schedule(0);
  }

  /** BullMQ reported a failure: record it if the job is dead, retrying on errors; the sweep catches the rest. */
  record(job: Job, err: Error | undefined, queue: DeadLetterQueue): Promise<void> {
    const p = this.recordWithRetry(job, err, queue).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }

  private async recordWithRetry(job: Job, err: Error | undefined, queue: DeadLetterQueue): Promise<void> {
    const entry = deadLetterFor(job, this.o.host, queue.name, err?.message);
    for (let attempt = 1; ; attempt++) {
      try {
        const recorded = await recordDeadLetter(this.o.redis, this.o.prefix, entry, { key: queue.toKey(job.id!), failedKey: queue.keys.failed! }, { maxAgeMs: this.maxAgeMs });
        if (recorded) {
          this.o.onRecorded?.('event');
          this.o.log.warn({ jobId: job.id, queue: queue.name, reason: entry.reason, attemptsMade: entry.attemptsMade }, 'job dead-lettered');
        }
        return;
      } catch (e) {
        this.o.onRecordError?.(e);
        const last = attempt >= this.tries || this.closed;
        this.o.log.warn(
          { err: errorMessage(e), jobId: job.id, queue: queue.name, attempt, tries: this.tries },
          last ? 'dead-letter record failed: left to the dead-letter sweep, which records it once Redis accepts writes' : 'dead-letter record failed: retrying',
        );
        if (last) {
          this.schedule(1000);
          return;
        }
        await this.sleep(this.firstBackoffMs * 2 ** (attempt - 1));
      }
    }
  }

  /** After failed sweeps: 1 s, 2 s, 4 s… up to 10 s (a sweep that Redis refuses costs a few reads). */
  private retryDelay(): number {
    return Math.min(this.sweepEveryMs, 10_000, 1000 * 2 ** Math.max(0, this.errorStreak - 1));
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    const at = Date.now() + delayMs;
    if (this.timer && this.dueAt <= at) return; // one is due sooner already
    if (this.timer) clearTimeout(this.timer);
    this.dueAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sweepNow().then(() => {
        if (!this.timer) this.schedule(this.errorStreak ? this.retryDelay() : this.sweepEveryMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  /** One sweep of every queue (single flight). Resolves when it is done; never rejects. */
  sweepNow(): Promise<void> {
    this.sweeping ??= (async () => {
      let failed = false;
      for (const q of this.o.queues) {
        if (this.closed) break;
        try {
          await this.sweepQueue(q);
        } catch (e) {
          failed = true;
          this.o.onRecordError?.(e);
          this.o.log.warn({ err: errorMessage(e), queue: q.name }, 'dead-letter sweep failed: will try again');
        }
      }
      if (!this.closed) {
        try {
          // Retention: bounded, so a sweep after a long outage does not block Redis.
          const dropped = await purgeDeadLetters(this.o.redis, this.o.prefix, this.maxAgeMs, Date.now(), 1000, TRIM_ON_SWEEP);
          this.o.onExpired?.(dropped);
          if (dropped) this.o.log.info({ dropped, maxAgeMs: this.maxAgeMs }, 'dead letters past their retention dropped');
        } catch (e) {
          failed = true;
          this.o.onRecordError?.(e);
          this.o.log.warn({ err: errorMessage(e) }, 'dead-letter retention pass failed: will try again');
        }
      }
      this.errorStreak = failed ? this.errorStreak + 1 : 0;
      this.o.log.debug({ ok: !failed }, 'dead-letter sweep done');
    })().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  /**
   * Record every job in the queue's failed set (from the watermark on) whose
   * mark does not match its finishedOn. Pages by score, not by offset, so jobs
   * leaving the set meanwhile (retried) cannot make it skip one. The
   * watermark moves only when the whole range was recorded.
   */
  private async sweepQueue(q: DeadLetterQueue): Promise<void> {
    const r = this.o.redis;
    const startedAt = Date.now();
    const watermark = await r.hget(sweptKey(this.o.prefix), q.name);
    if (watermark === null) {
      // First sweep of this queue ever: failures from now on are ours (older ones predate the marks).
      await r.hset(sweptKey(this.o.prefix), q.name, String(startedAt));
      return;
    }
    const failedKey = q.keys.failed!;
    const batch = 500;
    let min = String(Number(watermark) - SWEEP_SLACK_MS);
    let lastScore = Number.NaN;
    const seenAtLast = new Set<string>();
    let recovered = 0;
    for (;;) {
      const page = await r.zrangebyscore(failedKey, min, '+inf', 'WITHSCORES', 'LIMIT', 0, batch);
      const entries: Array<[string, number]> = [];
      for (let i = 0; i < page.length; i += 2) entries.push([page[i]!, Number(page[i + 1])]);
      const fresh = entries.filter(([id, score]) => !(score === lastScore && seenAtLast.has(id)));
      if (fresh.length) {
        const pipe = r.pipeline();
        for (const [id] of fresh) pipe.hmget(q.toKey(id), 'finishedOn', DEAD_LETTER_MARK);
        const replies = (await pipe.exec()) ?? [];
        for (const [i, [id]] of fresh.entries()) {
          const [err, v] = replies[i] ?? [new Error('no reply from Redis'), null];
          if (err) throw err;
          const [finishedOn, recordedFor] = v as [string | null, string | null];
          if (finishedOn === null || recordedFor === finishedOn) continue;
          const job = await Job.fromId(q, id);
          if (!job) continue;
          if (await recordDeadLetter(r, this.o.prefix, deadLetterFor(job, this.o.host, q.name), { key: q.toKey(id), failedKey }, { maxAgeMs: this.maxAgeMs })) {
            recovered++;
            this.o.onRecorded?.('sweep');
            this.o.log.warn({ jobId: id, queue: q.name, reason: job.failedReason, attemptsMade: job.attemptsMade }, 'job dead-lettered (by the sweep: it had not been recorded)');
          }
        }
      }
      if (entries.length < batch) break;
      const last = entries.at(-1)![1];
      if (last !== lastScore) seenAtLast.clear();
      lastScore = last;
      for (const [id, score] of entries) if (score === last) seenAtLast.add(id);
      // A full page of one millisecond already seen: step past it.
      min = fresh.length ? String(last) : `(${last}`;
    }
    // Everything that failed before this sweep started is recorded now.
    await r.hset(sweptKey(this.o.prefix), q.name, String(Math.max(Number(watermark), startedAt)));
    if (recovered) this.o.log.info({ queue: q.name, recovered }, 'dead-letter sweep recorded failures that had been missed');
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const w = {
        timer: setTimeout(() => {
          this.waits.delete(w);
          resolve();
        }, ms),
        resolve,
      };
      this.waits.add(w);
    });
  }

  /** Stop sweeping; recordings under way get one last try. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.waits) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.waits.clear();
    await Promise.allSettled([...this.inFlight, this.sweeping]);
  }
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

/**
 * Remove dead letters older than `olderThanMs`, in batches of `batch`, at
 * most `limit` in all (default: every one). Returns how many were removed.
 */
export async function purgeDeadLetters(redis: Redis, prefix: string, olderThanMs: number, now = Date.now(), batch = 1000, limit = Number.POSITIVE_INFINITY): Promise<number> {
  let removed = 0;
  while (removed < limit) {
    const n = await dropExpired(redis, prefix, now - olderThanMs, Math.min(batch, limit - removed), true);
    removed += n;
    if (n === 0) break;
  }
  return removed;
}

/** Drop up to `count` entries that failed before `cutoff` (`inclusive`: at `cutoff` too). */
async function dropExpired(redis: Redis, prefix: string, cutoff: number, count: number, inclusive = false): Promise<number> {
  const ids = await redis.zrangebyscore(registryKeys(prefix).dlqIndex, '-inf', inclusive ? cutoff : `(${cutoff}`, 'LIMIT', 0, count);
  await removeDeadLetters(redis, prefix, ids);
  return ids.length;
}
