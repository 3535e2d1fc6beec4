/**
 * The one way a job is put on a queue by fleetq's producers and operator
 * tools (enqueue, reroute, dlq requeue, prewarm): the payload is validated
 * against its job's contract (by job name), an ensure-image job gets its
 * deduplication id (for the host it is added to), and the retry options come
 * from the config (attempts, jittered exponential backoff, retention).
 * `fleetq retry` puts a job back in place (BullMQ keeps its options) and only
 * needs the validation: `validatePayload`.
 */
import { randomUUID } from 'node:crypto';
import type { JobsOptions, Queue } from 'bullmq';
import type { z } from 'zod';
import { parsePayload } from '../jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload } from '../jobs/contracts/ensure-image.js';
import { RESTORE, RestorePayload } from '../jobs/contracts/restore.js';
import { InvalidInputError } from '../lib/errors.js';
import { defaultJobOptions, type RetryDefaults } from './job-options.js';
import { ensureImageDedupId } from './names.js';

/** Each job name fleetq runs, and its payload contract. */
const CONTRACTS = { [ENSURE_IMAGE]: EnsureImagePayload, [RESTORE]: RestorePayload } as const;
export type JobName = keyof typeof CONTRACTS;
export type JobPayload<N extends JobName = JobName> = z.output<(typeof CONTRACTS)[N]>;

export interface SubmitOptions extends RetryDefaults {
  /** The host whose queue the job goes to (part of an ensure-image job's deduplication id). */
  host: string;
  priority?: number | undefined;
  delayMs?: number | undefined;
  /** Idempotent submission: adding the same id twice adds one job. Default: a random UUID. */
  jobId?: string | undefined;
}

export interface Submitted {
  jobId: string;
  /** true when an identical job was already pending and this submission collapsed into it. */
  deduplicated: boolean;
}

function isJobName(name: string): name is JobName {
  return Object.hasOwn(CONTRACTS, name);
}

/** The payload, parsed by its job's contract; an unknown name or a bad field is an InvalidInputError naming it. */
export function validatePayload<N extends JobName>(name: N, data: unknown): JobPayload<N>;
export function validatePayload(name: string, data: unknown): JobPayload;
export function validatePayload(name: string, data: unknown): JobPayload {
  if (!isJobName(name)) throw new InvalidInputError(`unknown job name ${JSON.stringify(name)}: must be ${ENSURE_IMAGE} or ${RESTORE}`, 'name');
  return parsePayload(CONTRACTS[name], data, name);
}

/** What `queue.add` gets: the validated payload and the job options. Pure. */
export function jobSubmission<N extends JobName>(name: N, data: unknown, opts: SubmitOptions): { name: N; data: JobPayload<N>; opts: JobsOptions & { jobId: string } };
export function jobSubmission(name: string, data: unknown, opts: SubmitOptions): { name: JobName; data: JobPayload; opts: JobsOptions & { jobId: string } };
export function jobSubmission(name: string, data: unknown, opts: SubmitOptions): { name: JobName; data: JobPayload; opts: JobsOptions & { jobId: string } } {
  const payload = validatePayload(name, data);
  const jobOpts: JobsOptions & { jobId: string } = {
    ...defaultJobOptions(opts),
    jobId: opts.jobId ?? randomUUID(),
    priority: opts.priority,
    delay: opts.delayMs,
  };
  if (name === ENSURE_IMAGE) {
    const p = payload as JobPayload<typeof ENSURE_IMAGE>;
    jobOpts.deduplication = { id: ensureImageDedupId(opts.host, p.image, p.imageDigest, p.force) };
  }
  return { name: name as JobName, data: payload, opts: jobOpts };
}

/**
 * Add a job (a new one, or one moving from elsewhere: a dead host's queue, a
 * dead letter): validated, deduplicated, with the config's retry options.
 */
export async function resubmit(queue: Queue, name: string, data: unknown, opts: SubmitOptions): Promise<Submitted> {
  const s = jobSubmission(name, data, opts);
  const job = await queue.add(s.name, s.data, s.opts);
  // With a caller-chosen id, BullMQ returns the existing job for a repeated id: that is idempotency, not deduplication.
  return { jobId: job.id!, deduplicated: job.id !== s.opts.jobId };
}
