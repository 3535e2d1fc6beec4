/** Producer side of ensure-image: validate, deduplicate, add. */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { parsePayload } from '../jobs/contracts/common.js';
import { ENSURE_IMAGE, type EnsureImageInput, EnsureImagePayload } from '../jobs/contracts/ensure-image.js';
import { defaultJobOptions, type RetryDefaults } from './job-options.js';
import { ensureImageDedupId } from './names.js';

export interface EnqueueOptions extends RetryDefaults {
  host: string;
  priority?: number | undefined;
  delayMs?: number | undefined;
  /** Idempotent submission: adding the same id twice adds one job. */
  jobId?: string | undefined;
}

export interface Enqueued {
  jobId: string;
  /** true when an identical job was already pending and this enqueue collapsed into it. */
  deduplicated: boolean;
}

export async function enqueueEnsureImage(queue: Queue, input: EnsureImageInput, opts: EnqueueOptions): Promise<Enqueued> {
  const payload = parsePayload(EnsureImagePayload, input, ENSURE_IMAGE);
  const jobId = opts.jobId ?? randomUUID();
  const job = await queue.add(ENSURE_IMAGE, payload, {
    ...defaultJobOptions(opts),
    jobId,
    priority: opts.priority,
    delay: opts.delayMs,
    deduplication: { id: ensureImageDedupId(opts.host, payload.image, payload.imageDigest, payload.force) },
  });
  // With a caller-chosen id, BullMQ returns the existing job for a repeated id: that is idempotency, not deduplication.
  return { jobId: job.id!, deduplicated: job.id !== jobId };
}
