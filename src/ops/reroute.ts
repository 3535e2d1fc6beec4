/**
 * Move a dead host's pending work to another host. Restores move alone (the
 * target's worker reads the snapshot there and ensures its own base; the old
 * image children are removed with them); stand-alone ensure-image jobs are
 * re-added with the same id, and with the target's deduplication id, so one
 * that is already pending there takes them in. Both go through `resubmit`
 * (payload validated, the job's attempts kept). Re-running is safe: adding
 * an existing id is a no-op and the source job is removed only afterwards.
 */
import type { Job } from 'bullmq';
import { ENSURE_IMAGE } from '../jobs/contracts/ensure-image.js';
import { RESTORE } from '../jobs/contracts/restore.js';
import { resubmit } from '../queues/resubmit.js';
import type { Fleet } from './fleet.js';
import type { UserState } from './job-filter.js';

export interface RerouteItem {
  id: string;
  queue: string;
  name: string;
  state: string;
  action: 'move' | 'skip';
  why?: string;
}

export async function reroute(fleet: Fleet, from: string, to: string, states: UserState[], dryRun: boolean, onItem?: (i: RerouteItem) => void): Promise<RerouteItem[]> {
  const items: RerouteItem[] = [];
  const collected: Array<{ job: Job; state: string; kind: 'images' | 'restores' }> = [];
  for (const kind of ['restores', 'images'] as const) {
    for await (const { job, state } of fleet.scan([fleet.queue(from, kind)], states, {})) collected.push({ job, state, kind });
  }
  for (const { job, state, kind } of collected) {
    const base = { id: job.id!, queue: job.queueName, name: job.name, state };
    let item: RerouteItem;
    if (kind === 'images' && job.parent?.id) item = { ...base, action: 'skip', why: `moves with restore ${job.parent.id}` };
    else if (kind === 'images' && job.name !== ENSURE_IMAGE) item = { ...base, action: 'skip', why: 'unknown job name' };
    else if (kind === 'restores' && job.name !== RESTORE) item = { ...base, action: 'skip', why: 'unknown job name' };
    else item = { ...base, action: 'move' };
    if (item.action === 'move' && !dryRun) {
      try {
        await moveJob(fleet, job, kind, to);
      } catch (err) {
        item = { ...item, action: 'skip', why: `error: ${(err as Error).message}` };
      }
    }
    items.push(item);
    onItem?.(item);
  }
  return items;
}

async function moveJob(fleet: Fleet, job: Job, kind: 'images' | 'restores', to: string): Promise<void> {
  await resubmit(fleet.queue(to, kind).queue, job.name, job.data, {
    host: to,
    jobId: job.id!,
    priority: job.opts.priority,
    attempts: job.opts.attempts ?? fleet.cfg.attempts,
    backoffMs: fleet.cfg.backoffMs,
  });
  await job.remove(kind === 'restores' ? { removeChildren: true } : undefined);
}
