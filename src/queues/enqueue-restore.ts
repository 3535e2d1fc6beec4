/**
 * Producer side of restore: one job on the host's restores queue. The
 * producer adds no image job: the snapshot on the host records the base image
 * it needs, so the worker reads it (`cocoon snapshot inspect`) and, only when
 * that blob is missing, adds an ensure-image child pinned to it
 * (`worker/restore-base.ts`).
 */
import type { Queue } from 'bullmq';
import { RESTORE, type RestoreInput, targetVm } from '../jobs/contracts/restore.js';
import type { EnqueueOptions } from './enqueue-ensure-image.js';
import { jobSubmission } from './resubmit.js';

export interface EnqueuedRestore {
  jobId: string;
  vm: string;
}

export interface RestoreEnqueueOptions extends EnqueueOptions {
  /** Idempotent submissions: the same id twice adds one job. */
  jobId?: string | undefined;
}

/** `restores` is the host's restores queue (`restoreQueueName(host)`). */
export async function enqueueRestore(restores: Queue, input: RestoreInput, opts: RestoreEnqueueOptions): Promise<EnqueuedRestore> {
  const s = jobSubmission(RESTORE, input, opts);
  const job = await restores.add(s.name, s.data, s.opts);
  return { jobId: job.id!, vm: targetVm(s.data) };
}
