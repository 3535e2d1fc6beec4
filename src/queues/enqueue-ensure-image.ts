/** Producer side of ensure-image: validate, deduplicate, add (queues/resubmit.ts). */
import type { Queue } from 'bullmq';
import { ENSURE_IMAGE, type EnsureImageInput } from '../jobs/contracts/ensure-image.js';
import { resubmit, type SubmitOptions, type Submitted } from './resubmit.js';

export type EnqueueOptions = SubmitOptions;
export type Enqueued = Submitted;

export async function enqueueEnsureImage(queue: Queue, input: EnsureImageInput, opts: EnqueueOptions): Promise<Enqueued> {
  return resubmit(queue, ENSURE_IMAGE, input, opts);
}
