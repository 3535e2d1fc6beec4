/**
 * Put one failed job back to work, safely and idempotently:
 *   - ensure-image on its own → job.retry('failed') with a fresh attempt budget;
 *   - ensure-image that belongs to a restore → skipped (retry the restore);
 *   - restore that failed in the cocoon step → job.retry('failed') (its child's result is kept);
 *   - restore whose base image child failed → a fresh flow with id `<id>-r` (a re-run adds nothing
 *     twice: BullMQ ignores an existing id), then the old one is removed.
 * The job's dead letter, if any, is removed once it is back in a queue.
 */
import type { Job } from 'bullmq';
import { RESTORE, RestorePayload } from '../jobs/contracts/restore.js';
import { enqueueRestore } from '../queues/enqueue-restore.js';
import { deadLetterId, removeDeadLetters } from './dead-letters.js';
import type { Fleet, QueueRef } from './fleet.js';

export type RetryOutcome = { action: 'retried' | 'reflowed'; id: string; newId?: string } | { action: 'skipped'; id: string; why: string };

export async function planRetry(job: Job): Promise<RetryOutcome> {
  const state = await job.getState();
  if (state !== 'failed' && state !== 'completed') return { action: 'skipped', id: job.id!, why: `is ${state}, not failed` };
  if (job.parent?.id) return { action: 'skipped', id: job.id!, why: `belongs to restore ${job.parent.id}: retry that` };
  if (job.name === RESTORE && Object.keys(await job.getIgnoredChildrenFailures()).length > 0) {
    return { action: 'reflowed', id: job.id!, newId: `${job.id}-r` };
  }
  return { action: 'retried', id: job.id! };
}

export async function retryJob(fleet: Fleet, ref: QueueRef, job: Job): Promise<RetryOutcome> {
  const plan = await planRetry(job);
  if (plan.action === 'skipped') return plan;
  const state = (await job.getState()) as 'failed' | 'completed';
  if (plan.action === 'retried') {
    await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
  } else {
    const payload = RestorePayload.parse(job.data);
    await enqueueRestore(fleet.flow(), payload, {
      host: ref.host,
      jobId: plan.newId,
      attempts: job.opts.attempts ?? fleet.cfg.attempts,
      backoffMs: fleet.cfg.backoffMs,
      priority: job.opts.priority,
    });
    await job.remove({ removeChildren: true });
  }
  await removeDeadLetters(fleet.redis, fleet.cfg.prefix, [deadLetterId(ref.name, job.id!)]);
  return plan;
}
