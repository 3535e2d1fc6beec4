/**
 * A restore's base image, ensured through the host's image queue (not
 * inline): the pull gets the image queue's concurrency, progress, metrics and
 * per-(host, digest) lock like any other ensure-image job.
 *
 * On disk → go on at once, no image job. Missing → add an ensure-image child
 * `<restoreId>.image.<attemptsMade>` pinned to the snapshot's digest (no
 * deduplication: BullMQ refuses it together with `parent`), park the restore
 * in waiting-children, and look again when it is resumed: the disk first,
 * then that child only. `continueParentOnFailure` resumes the restore when the
 * child fails too, and a restore retried later (board, CLI) has another
 * attemptsMade, hence a fresh child.
 */
import { type Job, type Queue, WaitingChildrenError } from 'bullmq';
import { ENSURE_IMAGE, EnsureImageResult } from '../jobs/contracts/ensure-image.js';
import type { Digest } from '../lib/digest.js';
import { redactUrl } from '../lib/redact.js';
import { defaultJobOptions, type RetryDefaults } from '../queues/job-options.js';
import { imageChildId } from '../queues/names.js';
import type { BaseEnsurer } from '../restore/restore-handler.js';
import { BaseImageUnavailableError, BlobMissingError, SnapshotRecordError } from '../restore/restore-errors.js';
import type { BaseImage } from '../restore/snapshot-base.js';
import { type BlobInfo, statBlob } from '../store/blob-store.js';
import { inspectStore } from '../ensure/inspect-store.js';
import type { StorePaths } from '../store/paths.js';

export interface QueueEnsurerDeps {
  images: Queue;
  paths: StorePaths;
  retry: RetryDefaults;
  jobLog?: ((line: string) => void) | undefined;
}

/** The base on disk: the digest's blob, or (URL only) the blob the URL's index entry names. */
export async function baseOnDisk(paths: StorePaths, base: BaseImage, digestHint?: Digest): Promise<BlobInfo | undefined> {
  const digest = base.digest ?? digestHint;
  if (digest) return statBlob(paths, digest);
  // URL only: the same look an unpinned ensure-image takes (the URL's entry, its blob of the recorded size).
  return base.url ? (await inspectStore(paths, base.url, undefined)).urlBlob : undefined;
}

export function imageQueueEnsurer(job: Job, token: string | undefined, deps: QueueEnsurerDeps): BaseEnsurer {
  const what = (base: BaseImage) => base.digest ?? redactUrl(base.url ?? '?');
  return {
    async ensure(base) {
      const childId = imageChildId(job.id!, job.attemptsMade);
      for (let round = 0; round < 3; round++) {
        const child = await deps.images.getJob(childId);
        if (!child) {
          const blob = await baseOnDisk(deps.paths, base);
          if (blob) return { blob };
          if (!base.url) {
            throw new SnapshotRecordError(`base image ${what(base)} is not on this host and no URL is known to pull it from (the snapshot records none and the job has no --image); cocoon was not started`);
          }
          await deps.images.add(
            ENSURE_IMAGE,
            { image: base.url, imageDigest: base.digest },
            {
              ...defaultJobOptions(deps.retry),
              jobId: childId,
              parent: { id: job.id!, queue: job.queueQualifiedName },
              continueParentOnFailure: true,
              priority: job.opts.priority,
            },
          );
          deps.jobLog?.(`base image ${what(base)} is not on this host: waiting for image job ${childId}`);
        } else {
          const state = await child.getState();
          if (state === 'completed') {
            const r = EnsureImageResult.safeParse(child.returnvalue);
            if (r.success && base.digest && !r.data.digest.equals(base.digest)) {
              // Only a misconfigured worker (FLEETQ_UNSAFE_LEGACY_URL_CACHE) answers a pin with another digest.
              throw new BaseImageUnavailableError(`image job ${childId} ensured ${r.data.digest}, but the snapshot boots ${base.digest}: cocoon was not started`);
            }
            const blob = await baseOnDisk(deps.paths, base, r.success ? r.data.digest : undefined);
            if (blob) return { blob, imageJobId: childId };
            throw new BlobMissingError(`image job ${childId} completed, but base image ${what(base)} is gone from disk again (deleted, garbage-collected?): cocoon was not started; the retry ensures it again`);
          }
          if (state === 'failed') {
            const blob = await baseOnDisk(deps.paths, base); // somebody else may have pulled it meanwhile
            if (blob) return { blob, imageJobId: childId };
            throw new BaseImageUnavailableError(`base image ${what(base)} could not be ensured (image job ${childId}), cocoon was not started: ${child.failedReason}`);
          }
        }
        // The child is pending: park until it finishes (false: it already has, look again).
        if (await job.moveToWaitingChildren(token ?? '')) throw new WaitingChildrenError();
      }
      throw new BlobMissingError(`base image ${what(base)}: image job ${childId} finished but the blob is still not on disk; retried`);
    },
  };
}
