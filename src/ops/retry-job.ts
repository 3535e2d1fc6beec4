/**
 * Put one failed job back to work, safely and idempotently:
 *   - ensure-image on its own → job.retry('failed') with a fresh attempt budget;
 *   - ensure-image that belongs to a restore → skipped (retry the restore);
 *   - restore → its finished image jobs (`<id>.image.<n>`) are removed, then
 *     job.retry() with a fresh attempt budget: the restore reads its snapshot
 *     again and, if the base is still missing, adds a fresh image job (the
 *     board's Retry button keeps the old jobs and gets a fresh one through
 *     attemptsMade instead).
 * A payload that breaks its job's contract is refused (InvalidInputError
 * naming the field): it could only fail again.
 * The job's dead letter, if any, is removed once it is back in a queue.
 */
import type { Job } from 'bullmq';
import { RESTORE } from '../jobs/contracts/restore.js';
import { imageChildIds } from '../queues/names.js';
import { validatePayload } from '../queues/resubmit.js';
import { deadLetterId, removeDeadLetters } from '../queues/dead-letter-store.js';
import type { Fleet, QueueRef } from './fleet.js';

export type RetryOutcome = { action: 'retried'; id: string; removedImageJobs?: string[] } | { action: 'skipped'; id: string; why: string };

export async function planRetry(job: Job): Promise<RetryOutcome> {
  const state = await job.getState();
  if (state !== 'failed' && state !== 'completed') return { action: 'skipped', id: job.id!, why: `is ${state}, not failed` };
  if (job.parent?.id) return { action: 'skipped', id: job.id!, why: `belongs to restore ${job.parent.id}: retry that` };
  return { action: 'retried', id: job.id! };
}

export async function retryJob(fleet: Fleet, ref: QueueRef, job: Job): Promise<RetryOutcome> {
  const plan = await planRetry(job);
  if (plan.action === 'skipped') return plan;
  validatePayload(job.name, job.data);
  const state = (await job.getState()) as 'failed' | 'completed';
  const removed: string[] = [];
  if (job.name === RESTORE) {
    const images = fleet.queue(ref.host, 'images').queue;
    for (const id of imageChildIds(job.id!, job.attemptsMade)) {
      const child = await images.getJob(id);
      if (child && (await child.isCompleted() || await child.isFailed())) {
        await child.remove();
        removed.push(id);
      }
    }
  }
  await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
  await removeDeadLetters(fleet.redis, fleet.cfg.prefix, [deadLetterId(ref.name, job.id!)]);
  return removed.length ? { ...plan, removedImageJobs: removed } : plan;
}
