/**
 * The worker's dead-letter recorder: every job of this host's queues that
 * ends in `failed` (retries exhausted, or permanent) becomes a dead letter
 * (worker/dead-letter-record.ts), which `fleetq dlq` lists, requeues and
 * purges (ops/dead-letters.ts).
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
 *   - each sweep starts from a per-queue watermark (`<prefix>:{<host>}:dlq:swept`), the
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
import type { RedisClient } from '../redis/connect.js';
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { DEAD_LETTER_MARK, DLQ_DEFAULT_MAX_AGE_MS, purgeDeadLetters, sweptKey } from '../queues/dead-letter-store.js';
import { deadLetterFor, recordDeadLetter, TRIM_ON_SWEEP } from './dead-letter-record.js';

/** A queue whose failed jobs a recorder looks after (a BullMQ Worker or Queue). */
export type DeadLetterQueue = MinimalQueue & { readonly name: string };

export interface DeadLetterRecorderOptions {
  redis: RedisClient;
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
          // This host's store only (other hosts' workers keep theirs; `fleetq dlq purge` does every host).
          const dropped = await purgeDeadLetters(this.o.redis, this.o.prefix, this.maxAgeMs, { hosts: [this.o.host], limit: TRIM_ON_SWEEP });
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
    const watermark = await r.hget(sweptKey(this.o.prefix, this.o.host), q.name);
    if (watermark === null) {
      // First sweep of this queue ever: failures from now on are ours (older ones predate the marks).
      await r.hset(sweptKey(this.o.prefix, this.o.host), q.name, String(startedAt));
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
    await r.hset(sweptKey(this.o.prefix, this.o.host), q.name, String(Math.max(Number(watermark), startedAt)));
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
