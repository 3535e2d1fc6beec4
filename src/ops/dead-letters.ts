/**
 * Dead letters for operators (`fleetq dlq ls|requeue|purge`): list them, put
 * one back to work, remove them. The store itself: queues/dead-letter-store.ts;
 * the worker records them (worker/dead-letter-recorder.ts).
 */
import { Job } from 'bullmq';
import type { RedisClient } from '../redis/connect.js';
import { DeadLetter, deadLetterHosts, removeDeadLetters } from '../queues/dead-letter-store.js';
import { resubmit } from '../queues/resubmit.js';
import { hostKeys } from '../registry/keys.js';
import type { Fleet } from './fleet.js';
import { retryJob } from './retry-job.js';

export { type DeadLetter, purgeDeadLetters } from '../queues/dead-letter-store.js';

export interface ScanOptions {
  since?: number;
  until?: number;
  batch?: number;
  /** Only these hosts (default: every host with a dead-letter store). */
  hosts?: readonly string[];
}

/** One host's dead letters, oldest first, `batch` at a time (its store is in its own Cluster slot). */
async function* hostDeadLetters(redis: RedisClient, prefix: string, host: string, opts: ScanOptions): AsyncGenerator<DeadLetter> {
  const k = hostKeys(prefix, host);
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

/** Page through dead letters of every host, oldest first (a merge of the hosts' stores), `batch` at a time per host. */
export async function* scanDeadLetters(redis: RedisClient, prefix: string, opts: ScanOptions = {}): AsyncGenerator<DeadLetter> {
  const hosts = opts.hosts ?? (await deadLetterHosts(redis, prefix));
  const heads: Array<{ it: AsyncGenerator<DeadLetter>; d: DeadLetter }> = [];
  for (const host of hosts) {
    const it = hostDeadLetters(redis, prefix, host, opts);
    const first = await it.next();
    if (!first.done) heads.push({ it, d: first.value });
  }
  while (heads.length > 0) {
    let i = 0;
    for (let j = 1; j < heads.length; j++) if (heads[j]!.d.failedAt < heads[i]!.d.failedAt) i = j;
    const head = heads[i]!;
    yield head.d;
    const next = await head.it.next();
    if (next.done) heads.splice(i, 1);
    else head.d = next.value;
  }
}

/**
 * Put a dead letter back: retry the original job if it is still failed, else
 * add it again (`resubmit`: a payload that breaks its contract is refused,
 * naming the field). `requeued` holds the ids of the dead letters requeued in
 * the same run: an image job of a restore among them goes back with it.
 */
export async function requeueDeadLetter(fleet: Fleet, d: DeadLetter, requeued: Set<string>): Promise<string> {
  if (d.parent && requeued.has(`${d.parent.queue}/${d.parent.id}`)) return 'skipped: requeued with its restore';
  const ref = fleet.queue(d.host, d.queueKind);
  const job = await Job.fromId(ref.queue, d.originalId);
  if (job && (await job.getState()) === 'failed') {
    if (job.parent?.id) {
      await removeDeadLetters(fleet.redis, fleet.cfg.prefix, [d.id]);
      return 'skipped: part of a restore (requeue or retry the restore)';
    }
    const r = await retryJob(fleet, ref, job);
    return r.action === 'skipped' ? `skipped: ${r.why}` : 'retried';
  }
  if (job) {
    await removeDeadLetters(fleet.redis, fleet.cfg.prefix, [d.id]);
    return `skipped: job is ${await job.getState()} already`;
  }
  await resubmit(ref.queue, d.name, d.data, { host: d.host, jobId: d.originalId, attempts: fleet.cfg.attempts, backoffMs: fleet.cfg.backoffMs });
  await removeDeadLetters(fleet.redis, fleet.cfg.prefix, [d.id]);
  return 're-added';
}
