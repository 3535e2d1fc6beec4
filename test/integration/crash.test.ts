/**
 * kill -9 a worker in the middle of a download: the job is picked up again by
 * stalled-job recovery and completes; the crashed holder's lock expires by TTL
 * (seen as Redis's keyspace event) before the second download starts;
 * the store stays consistent.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { Digest } from '../../src/lib/digest.js';
import { pullLockRedisKey } from '../../src/lock/keys.js';
import { imageQueueName } from '../../src/queues/names.js';
import { rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { withTimeout } from '../helpers/wait.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const HOST = 'h-crash';
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let q: QueueClient;
let admin: Redis;
let sub: Redis;
const spawned: WorkerProcess[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  q = await queueClient(redis.url, imageQueueName(HOST));
  admin = new Redis(redis.url);
  sub = new Redis(redis.url);
  // Redis announces each key it expires: the TTL expiry is observed as an event, not guessed with a sleep.
  await admin.config('SET', 'notify-keyspace-events', 'Ex');
  await sub.subscribe(`__keyevent@${admin.options.db ?? 0}__:expired`);
});

afterAll(async () => {
  sub?.disconnect();
  admin?.disconnect();
  await q?.close();
  for (const w of spawned) await w.kill();
  await upstream?.stop();
  removeRoot(root);
});

const env = () => ({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_LOCK_TTL: '2s' });

describe('crash during a download', () => {
  it('kill -9 mid-body → the dead holder\'s lock expires by its TTL, then another worker recovers the job and completes; store consistent', async () => {
    const cfg = loadConfig(env());
    const img = rawImage(3 * 1024 * 1024);
    const url = upstream.serve('/crash.img', img.body, { chunkSize: 32 * 1024, chunkDelayMs: 20 });
    const lockKey = pullLockRedisKey(cfg.prefix, HOST, { kind: 'digest', digest: Digest.parse(img.digest), url });
    // What happened, in order: the lock key's expiry and each GET of the image.
    const events: string[] = [];
    const expired = new Promise<void>((resolve) => {
      sub.on('message', (_channel: string, key: string) => {
        if (key !== lockKey) return;
        events.push('lock expired');
        resolve();
      });
    });
    upstream.on('request', (path: string) => path === '/crash.img' && events.push('GET'));

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
    // The dead holder's lock is still there, and will go by its TTL (nobody can release it).
    expect(await admin.get(lockKey)).not.toBeNull();
    const pttl = await admin.pttl(lockKey);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(cfg.lockTtlMs);

    const second = await startWorkerProcess(env());
    spawned.push(second);
    await withTimeout(expired, cfg.lockTtlMs + 10_000, `the expiry of ${lockKey}`);
    const r = await q.settle(job.id!, 45_000);

    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/crash.img')).toBe(2);
    // The second download waited for the dead holder's lock to expire.
    expect(events).toEqual(['GET', 'lock expired', 'GET']);
    // The new leader took the lock under its own token and released it when done.
    expect(await admin.exists(lockKey)).toBe(0);
    await second.waitForLog((l) => l.msg === 'image pulled', 5000);
    const state = storeState(root);
    expect(state.blobs).toEqual([`${img.hex}.qcow2`]);
    expect(state.index[url]).toBe(img.digest);
    assertConsistent(root);
    expect(await second.stop()).toBe(0);
  });
});

