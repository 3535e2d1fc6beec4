/**
 * Many jobs for one digest on one host, spread over two worker processes:
 * one leader downloads, everyone else waits for its release and finishes as
 * `present`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageQueueName } from '../../src/queues/names.js';
import { rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const HOST = 'h-herd';
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let workers: WorkerProcess[] = [];
let q: QueueClient;

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  const env = { REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_CONCURRENCY: '25' };
  workers = await Promise.all([startWorkerProcess(env), startWorkerProcess(env)]);
  q = await queueClient(redis.url, imageQueueName(HOST));
});

afterAll(async () => {
  await q?.close();
  for (const w of workers) expect(await w.stop()).toBe(0);
  await upstream?.stop();
  removeRoot(root);
});

describe('thundering herd on one host', () => {
  it('50 jobs for one digest over two worker processes → exactly one GET, all 50 complete', async () => {
    const img = rawImage(4 * 1024 * 1024);
    // Slow enough that every job is in flight while the leader downloads.
    const url = upstream.serve('/herd.img', img.body, { chunkSize: 64 * 1024, chunkDelayMs: 30 });
    const jobs = await q.queue.addBulk(
      Array.from({ length: 50 }, () => ({ name: 'ensure-image', data: { image: url, imageDigest: img.digest }, opts: { attempts: 1 } })),
    );
    const results = await Promise.all(jobs.map((j) => q.settle(j.id!)));

    expect(results.map((r) => r.state)).toEqual(Array(50).fill('completed'));
    expect(upstream.gets('/herd.img')).toBe(1);
    const outcomes = results.map((r) => r.value.outcome);
    expect(outcomes.filter((o) => o === 'pulled')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'present')).toHaveLength(49);
    expect(new Set(results.map((r) => r.value.digest))).toEqual(new Set([img.digest]));
    // Both processes took part: the herd really was spread.
    // (Log lines travel through a pipe and may trail the completion events a little.)
    const byWorker = () => workers.map((w) => w.logs.filter((l) => l.msg === 'ensure-image done').length);
    await expect.poll(() => byWorker().reduce((a, b) => a + b), { timeout: 5000, interval: 20 }).toBe(50);
    expect(byWorker().every((c) => c > 0), `jobs per worker: ${byWorker()}`).toBe(true);
    // Followers in the other process waited on the lock rather than polling it.
    const waited = workers.flatMap((w) => w.logs.filter((l) => l.msg === 'waiting for pull leader'));
    expect(waited.length).toBeGreaterThan(0);
    expect(storeState(root).temp).toEqual([]);
    assertConsistent(root);
  });

  it('no digest: jobs for one URL are deduplicated on the URL, one GET', async () => {
    const img = rawImage(2 * 1024 * 1024);
    const url = upstream.serve('/herd-url.img', img.body, { chunkSize: 64 * 1024, chunkDelayMs: 10 });
    const jobs = await q.queue.addBulk(Array.from({ length: 20 }, () => ({ name: 'ensure-image', data: { image: url }, opts: { attempts: 1 } })));
    const results = await Promise.all(jobs.map((j) => q.settle(j.id!)));
    expect(results.every((r) => r.state === 'completed' && r.value.digest === img.digest)).toBe(true);
    expect(upstream.gets('/herd-url.img')).toBe(1);
  });
});
