/**
 * Producer side of restore: a BullMQ flow whose parent is the restore (host's
 * restores queue) and whose child is its ensure-image (host's images queue).
 * The parent runs only after the child finished; if the child failed, the
 * parent fails at once with the child's reason (continueParentOnFailure) and
 * never spawns cocoon.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { FlowProducer } from 'bullmq';
import { parsePayload } from '../jobs/contracts/common.js';
import { ENSURE_IMAGE } from '../jobs/contracts/ensure-image.js';
import { RESTORE, type RestoreInput, RestorePayload } from '../jobs/contracts/restore.js';
import type { EnqueueOptions } from './enqueue-ensure-image.js';
import { defaultJobOptions } from './job-options.js';
import { imageQueueName, restoreQueueName } from './names.js';

export interface EnqueuedRestore {
  jobId: string;
  imageJobId: string;
  vm: string;
}

export interface RestoreEnqueueOptions extends EnqueueOptions {
  /** Idempotent submissions: the same id twice adds one flow. */
  jobId?: string | undefined;
}

export async function enqueueRestore(flow: FlowProducer, input: RestoreInput, opts: RestoreEnqueueOptions): Promise<EnqueuedRestore> {
  const payload = parsePayload(RestorePayload, input, RESTORE);
  // A clone always gets a name at enqueue time, so a retried clone is recognisable (idempotent).
  if (payload.kind === 'clone' && !payload.name) payload.name = `vm-${randomBytes(4).toString('hex')}`;
  const defaults = defaultJobOptions(opts);
  const jobId = opts.jobId ?? randomUUID();
  const tree = await flow.add({
    name: RESTORE,
    queueName: restoreQueueName(opts.host),
    data: payload,
    opts: { ...defaults, jobId, priority: opts.priority, delay: opts.delayMs },
    children: [
      {
        name: ENSURE_IMAGE,
        queueName: imageQueueName(opts.host),
        data: { image: payload.image, imageType: payload.imageType, imageDigest: payload.imageDigest },
        opts: { ...defaults, jobId: `${jobId}.image`, priority: opts.priority, continueParentOnFailure: true },
      },
    ],
  });
  return { jobId: tree.job.id!, imageJobId: tree.children![0]!.job.id!, vm: payload.kind === 'clone' ? payload.name! : payload.vm! };
}
