/** Test-side BullMQ clients: add jobs, wait for them, inspect them. */
import { Job, Queue, QueueEvents } from 'bullmq';
import { type Cluster, Redis } from 'ioredis';

export interface QueueClient {
  queue: Queue;
  events: QueueEvents;
  /** Wait until a job completes (returns its value) or fails (returns {failedReason}). */
  settle(jobId: string, timeoutMs?: number): Promise<{ state: 'completed' | 'failed'; value?: any; failedReason?: string; attemptsMade: number }>;
  close(): Promise<void>;
}

/**
 * `redis`: a single Redis's URL, or a function that opens a connection
 * (a Cluster or Sentinel client, test/helpers/ha-clients.ts), called twice:
 * for the Queue and for its QueueEvents.
 */
export async function queueClient(redis: string | (() => Redis | Cluster), name: string, prefix = 'fleetq'): Promise<QueueClient> {
  const open = typeof redis === 'string' ? () => new Redis(redis, { maxRetriesPerRequest: null }) : redis;
  const conn = open();
  const evConn = open();
  const queue = new Queue(name, { connection: conn, prefix });
  const events = new QueueEvents(name, { connection: evConn, prefix });
  queue.setMaxListeners(0);
  events.setMaxListeners(0);
  await events.waitUntilReady();
  return {
    queue,
    events,
    async settle(jobId, timeoutMs = 30_000) {
      const job = await Job.fromId(queue, jobId);
      if (!job) throw new Error(`job ${jobId} not found`);
      try {
        const value = await job.waitUntilFinished(events, timeoutMs);
        const j = (await Job.fromId(queue, jobId))!;
        return { state: 'completed', value, attemptsMade: j.attemptsMade };
      } catch (err) {
        const j = await Job.fromId(queue, jobId);
        if (/timed out before finishing/.test((err as Error).message)) throw err;
        return { state: 'failed', failedReason: j?.failedReason ?? (err as Error).message, attemptsMade: j?.attemptsMade ?? 0 };
      }
    },
    async close() {
      await events.close();
      await queue.close();
      conn.disconnect();
      evConn.disconnect();
    },
  };
}
