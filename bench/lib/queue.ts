/** Bench-side BullMQ clients: add many jobs, wait until queues are idle, read job timestamps. */
import { Job, type JobsOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { until } from './procs.js';

export function connect(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true });
}

export interface QueueHandle {
  queue: Queue;
  close(): Promise<void>;
}

export function openQueue(url: string, name: string, prefix: string): QueueHandle {
  const conn = connect(url);
  const queue = new Queue(name, { connection: conn, prefix });
  queue.on('error', () => {});
  return {
    queue,
    async close() {
      await queue.close().catch(() => {});
      conn.disconnect();
    },
  };
}


/** addBulk in chunks; returns the job ids in order. */
export async function addJobs(queue: Queue, name: string, datas: unknown[], opts: JobsOptions, chunk = 1000): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < datas.length; i += chunk) {
    const jobs = await queue.addBulk(datas.slice(i, i + chunk).map((data) => ({ name, data, opts })));
    for (const j of jobs) ids.push(j.id!);
  }
  return ids;
}

const PENDING = ['wait', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

export async function pendingCount(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...PENDING);
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Wait until none of `queues` has a job waiting, active, delayed or waiting for children. */
export async function waitIdle(queues: Queue[], timeoutMs: number, everyMs = 25): Promise<void> {
  await until(`queues ${queues.map((q) => q.name).join(', ')} to drain`, timeoutMs, async () => {
    for (const q of queues) if ((await pendingCount(q)) > 0) return undefined;
    return true;
  }, everyMs);
}

export async function fetchJobs(queue: Queue, ids: string[]): Promise<Job[]> {
  const out: Job[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    const batch = await Promise.all(ids.slice(i, i + 500).map((id) => Job.fromId(queue, id)));
    for (const [k, j] of batch.entries()) {
      if (!j) throw new Error(`job ${ids[i + k]} of ${queue.name} is gone`);
      out.push(j);
    }
  }
  return out;
}

/** Throw unless every job completed; names the first failure. */
export async function assertCompleted(queue: Queue, jobs: Job[]): Promise<void> {
  const failed = jobs.filter((j) => !j.finishedOn || j.failedReason);
  if (failed.length) {
    const f = failed[0]!;
    throw new Error(`${failed.length} of ${jobs.length} jobs on ${queue.name} did not complete; first: ${f.id} ${f.failedReason ?? '(no finishedOn)'} (state ${await f.getState()})`);
  }
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
}
