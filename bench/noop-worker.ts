/**
 * The cache-hit baseline: a bare BullMQ worker with a no-op processor and
 * BullMQ's default worker options, in its own process like a fleetq worker.
 *
 *   REDIS_URL=… QUEUE=… PREFIX=… CONCURRENCY=50 node dist/bench/noop-worker.js
 *   → prints "ready" on stdout; SIGTERM closes the worker and exits.
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

const url = process.env.REDIS_URL!;
const connection = new Redis(url, { maxRetriesPerRequest: null });
const worker = new Worker(process.env.QUEUE!, async () => {}, {
  connection,
  prefix: process.env.PREFIX ?? 'bull',
  concurrency: Number(process.env.CONCURRENCY ?? 1),
});
worker.on('error', (err) => process.stderr.write(`worker error: ${err.message}\n`));
await worker.waitUntilReady();
process.stdout.write('ready\n');

const stop = async () => {
  await worker.close();
  connection.disconnect();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
