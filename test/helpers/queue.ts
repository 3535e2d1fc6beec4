/** Test-side BullMQ clients: add jobs, wait for them, inspect them. */
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';

export interface QueueClient {
  queue: Queue;
  events: QueueEvents;
  /** Wait until a job completes (returns its value) or fails (returns {failedReason}). */
  settle(jobId: string, timeoutMs?: number): Promise<{ state: 'completed' | 'failed'; value?: any; failedReason?: string; attemptsMade: number }>;
  close(): Promise<void>;
}

export async function queueClient(redisUrl: string, name: string, prefix = 'fleetq'): Promise<QueueClient> {
  const conn = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const evConn = new Redis(redisUrl, { maxRetriesPerRequest: null });
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
