/**
 * Producer side of restore: one job on the host's restores queue. The
 * producer adds no image job: the snapshot on the host records the base image
 * it needs, so the worker reads it (`cocoon snapshot inspect`) and, only when
 * that blob is missing, adds an ensure-image child pinned to it
 * (`worker/restore-base.ts`).
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { parsePayload } from '../jobs/contracts/common.js';
import { RESTORE, type RestoreInput, RestorePayload, type RestorePlacement, targetVm } from '../jobs/contracts/restore.js';
import { NoPlacementError, placeRestore } from '../placement/place-restore.js';
import { type PlacementDecision, placementRecord } from '../placement/score.js';
import type { EnqueueOptions } from './enqueue-ensure-image.js';
import { restoreQueueName } from './names.js';
import { queueOptions } from './queue-options.js';
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

export interface AutoRestoreOptions extends Omit<RestoreEnqueueOptions, 'host'> {
  /** FLEETQ_PREFIX: where the registry, the published snapshots and the queues are. */
  prefix: string;
  /** FLEETQ_HOST_DOWN_AFTER: hosts silent this long are not candidates. */
  downAfterMs: number;
  /** Only these hosts are candidates (default: every registered host). */
  hosts?: readonly string[] | undefined;
}

export interface PlacedRestore extends EnqueuedRestore {
  /** The host chosen: the job is on its restores queue. */
  host: string;
  /** What went into the job data's `placement`. */
  placement: RestorePlacement;
  /** Every host considered, with its score or why it was rejected. */
  decision: PlacementDecision;
}

/**
 * `--host auto` from code: validate, pick a live host that has the snapshot
 * (placement/score.ts: image locality, then the shortest restore queue),
 * record the choice and its reason in the job's `placement`, and add the job
 * to that host's restores queue. Throws InvalidInputError for a bad payload
 * (before anything is read) and NoPlacementError, naming every host
 * considered and why it was rejected, when no host can take it.
 */
export async function enqueueRestoreAuto(redis: Redis, input: RestoreInput, opts: AutoRestoreOptions): Promise<PlacedRestore> {
  const payload = parsePayload(RestorePayload, input, RESTORE);
  const decision = await placeRestore(redis, { snapshot: payload.snapshot, imageDigest: payload.imageDigest }, opts);
  const chosen = decision.chosen;
  if (!chosen) throw new NoPlacementError(decision);
  const placement = placementRecord({ ...decision, chosen }, Date.now());
  const queue = new Queue(restoreQueueName(chosen.host), { connection: redis, ...queueOptions(opts.prefix) });
  queue.on('error', () => {});
  try {
    const enq = await enqueueRestore(queue, { ...input, placement }, { ...opts, host: chosen.host });
    return { ...enq, host: chosen.host, placement, decision };
  } finally {
    await queue.close().catch(() => {});
  }
}
