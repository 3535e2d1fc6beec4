/**
 * kill -9 a worker in the middle of a download: the job is picked up again by
 * stalled-job recovery and completes; the crashed holder's lock expires by TTL;
 * the store stays consistent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageQueueName } from '../../src/queues/names.js';
import { rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const HOST = 'h-crash';
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let q: QueueClient;
const spawned: WorkerProcess[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  q = await queueClient(redis.url, imageQueueName(HOST));
});

afterAll(async () => {
  await q?.close();
  for (const w of spawned) await w.kill();
  await upstream?.stop();
  removeRoot(root);
});

const env = () => ({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_LOCK_TTL: '2s' });

describe('crash during a download', () => {
  it('kill -9 mid-body → the job is recovered by another worker and completes; store consistent', async () => {
    const img = rawImage(3 * 1024 * 1024);
    const url = upstream.serve('/crash.img', img.body, { chunkSize: 32 * 1024, chunkDelayMs: 20 });
    const first = await startWorkerProcess(env());
    spawned.push(first);
    const job = await q.queue.add('ensure-image', { image: url, imageDigest: img.digest }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } });

    // Kill the worker once a good part of the body has gone out.
    await new Promise<void>((resolve) => {
      const onSent = (bytes: number) => {
        if (bytes >= 512 * 1024) {
          upstream.off('sent', onSent);
          resolve();
        }
      };
      upstream.on('sent', onSent);
    });
    await first.kill();
    expect(storeState(root).blobs).toEqual([]);

    const second = await startWorkerProcess(env());
    spawned.push(second);
    const r = await q.settle(job.id!, 45_000);

    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/crash.img')).toBe(2);
    await second.waitForLog((l) => l.msg === 'image pulled', 5000);
    const state = storeState(root);
    expect(state.blobs).toEqual([`${img.hex}.qcow2`]);
    expect(state.index[url]).toBe(img.digest);
    assertConsistent(root);
    expect(await second.stop()).toBe(0);
  });
});
