/**
 * Producer side of restore: one job on the host's restores queue. The
 * producer adds no image job: the snapshot on the host records the base image
 * it needs, so the worker reads it (`cocoon snapshot inspect`) and, only when
 * that blob is missing, adds an ensure-image child pinned to it
 * (`worker/restore-base.ts`).
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { parsePayload } from '../jobs/contracts/common.js';
import { RESTORE, type RestoreInput, RestorePayload, targetVm } from '../jobs/contracts/restore.js';
import type { EnqueueOptions } from './enqueue-ensure-image.js';
import { defaultJobOptions } from './job-options.js';

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
  const payload = parsePayload(RestorePayload, input, RESTORE);
  const job = await restores.add(RESTORE, payload, {
    ...defaultJobOptions(opts),
    jobId: opts.jobId ?? randomUUID(),
    priority: opts.priority,
    delay: opts.delayMs,
  });
  return { jobId: job.id!, vm: targetVm(payload) };
}
