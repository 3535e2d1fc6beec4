/**
 * A producer that knows docs/JOBS.md and nothing else of fleetq: a plain
 * BullMQ `Queue` with literal queue names, job names, payloads, options and
 * the documented deduplication id, against real worker processes (a real
 * upstream, a real qcow2, the fake cocoon). No fleetq helper is used to
 * produce; one test at the end holds the documented formulas against
 * fleetq's own code, so the document cannot drift from it.
 */
import { createHash } from 'node:crypto';
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureImageDedupId, imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { Digest } from '../../src/lib/digest.js';
import { defaultJobOptions } from '../../src/queues/job-options.js';
import { cocoonWorkerEnv, plantSnapshot, readVm, setHostCores } from '../helpers/cocoon.js';
import { qcow2Image } from '../helpers/images.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
const HOST = 'rp-1';

/** Everything below this line until the last describe is what docs/JOBS.md says, typed in by hand. */
const OPTIONS = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 5000, jitter: 0.3 },
  removeOnComplete: { age: 86400, count: 5000 },
  removeOnFail: { age: 604800, count: 50000 },
};
const canonical = (u: string) => {
  const url = new URL(u);
  url.hash = '';
  return url.href;
};
const urlHash = (u: string) => createHash('sha256').update(canonical(u)).digest('hex').slice(0, 40);
const dedupId = (host: string, image: string, digest?: string, force?: boolean) =>
  `ensure-image.${host}.${digest ? `d-${digest.slice('sha256:'.length)}.u-${urlHash(image)}` : `u-${urlHash(image)}`}${force ? '.force' : ''}`;

let upstream: Upstream;
let root: string;
let worker: WorkerProcess;
let connection: Redis;
let images: Queue;
let restores: Queue;
let events: { images: QueueEvents; restores: QueueEvents };
let eventsConn: Redis;

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  setHostCores(root, 16);
  worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, ...cocoonWorkerEnv(root) });
  connection = new Redis(redis.url);
  images = new Queue(`images-{${HOST}}`, { connection, prefix: 'fleetq' });
  restores = new Queue(`restores-{${HOST}}`, { connection, prefix: 'fleetq' });
  eventsConn = new Redis(redis.url, { maxRetriesPerRequest: null });
  events = { images: new QueueEvents(`images-{${HOST}}`, { connection: eventsConn, prefix: 'fleetq' }), restores: new QueueEvents(`restores-{${HOST}}`, { connection: eventsConn.duplicate(), prefix: 'fleetq' }) };
  await Promise.all([events.images.waitUntilReady(), events.restores.waitUntilReady()]);
});

afterAll(async () => {
  await events?.images.close();
  await events?.restores.close();
  await images?.close();
  await restores?.close();
  connection?.disconnect();
  eventsConn?.disconnect();
  await worker?.stop();
  await upstream?.stop();
  if (root) removeRoot(root);
});

describe('a raw BullMQ producer, from docs/JOBS.md alone', () => {
  it('ensure-image: the worker pulls it; a second add with the same dedup id collapses into the first', async () => {
    const img = qcow2Image(640);
    // Slow enough that the first job is still pending when the second is added.
    const image = upstream.serve('/raw/win11.qcow2', img.body, { chunkSize: 64 * 1024, chunkDelayMs: 20 });
    const add = () => images.add('ensure-image', { image, imageDigest: img.digest }, { ...OPTIONS, deduplication: { id: dedupId(HOST, image, img.digest) } });
    const first = await add();
    const second = await add();
    expect(second.id).toBe(first.id);

    const value = await first.waitUntilFinished(events.images, 30_000);
    expect(value).toEqual({ outcome: 'pulled', digest: img.digest, path: expect.stringContaining(img.digest.slice(7)), size: expect.any(Number), bytesDownloaded: img.body.length, durationMs: expect.any(Number) });
    expect(upstream.gets('/raw/win11.qcow2')).toBe(1);

    // Finished: the id is free again, and the next job is a cache hit.
    const third = await add();
    expect(third.id).not.toBe(first.id);
    expect(await third.waitUntilFinished(events.images, 30_000)).toMatchObject({ outcome: 'present', digest: img.digest, bytesDownloaded: 0 });
    // The options as given (retention bounded).
    const stored = (await Job.fromId(images, third.id!))!;
    expect(stored.opts).toMatchObject({ attempts: 5, backoff: { type: 'exponential', delay: 5000 }, removeOnComplete: { age: 86400, count: 5000 } });
  });

  it('a payload the contract refuses fails at once (no retries), naming the field', async () => {
    const job = await images.add('ensure-image', { image: 'https://images.example/x.qcow2', imageDigest: 'sha256:short' }, OPTIONS);
    await expect(job.waitUntilFinished(events.images, 30_000)).rejects.toThrow(/imageDigest/);
    const failed = (await Job.fromId(images, job.id!))!;
    expect(failed.attemptsMade).toBe(1);
  });

  it('restore (kind clone): the worker pulls the snapshot\'s base through images-{<host>} and clones', async () => {
    const base = qcow2Image(641);
    const url = upstream.serve('/raw/golden.qcow2', base.body);
    plantSnapshot(root, { name: 'raw-golden', image: url, imageDigest: base.digest, cpu: 2 });
    const job = await restores.add('restore', { kind: 'clone', snapshot: 'raw-golden', name: 'raw-vm-1', cpu: 2, memory: '1G' }, { ...OPTIONS, jobId: 'raw-restore-1' });
    const value = await job.waitUntilFinished(events.restores, 30_000);
    expect(value).toMatchObject({ kind: 'clone', vm: 'raw-vm-1', snapshot: 'raw-golden', digest: base.digest, digestSource: 'snapshot', outcome: 'done', imageJobId: 'raw-restore-1.image.0' });
    expect(readVm(root, 'raw-vm-1')?.state).toBe('running');
    // The same job id again adds nothing (idempotent submission).
    const again = await restores.add('restore', { kind: 'clone', snapshot: 'raw-golden', name: 'raw-vm-1' }, { ...OPTIONS, jobId: 'raw-restore-1' });
    expect(again.id).toBe('raw-restore-1');
    expect(await restores.getJobCounts('wait', 'active', 'completed')).toMatchObject({ wait: 0, active: 0, completed: 1 });
  });
});

describe('docs/JOBS.md matches the code', () => {
  it('queue names, dedup ids (with and without digest, force, a non-canonical URL) and recommended options', () => {
    expect(`images-{${HOST}}`).toBe(imageQueueName(HOST));
    expect(`restores-{${HOST}}`).toBe(restoreQueueName(HOST));
    const d = `sha256:${'ab'.repeat(32)}`;
    for (const [image, digest, force] of [
      ['https://images.example/win11.qcow2', d, undefined],
      ['https://images.example/win11.qcow2', undefined, true],
      ['http://127.0.0.1:8080/a/b.img?X-Amz-Signature=s', d, true],
    ] as const) {
      expect(dedupId('build-7', image, digest, force)).toBe(ensureImageDedupId('build-7', image, digest === undefined ? undefined : Digest.parse(digest), force));
    }
    // fleetq hashes the canonical URL (the contract stores it): so does the documented formula.
    expect(dedupId('h', 'HTTPS://Images.Example:443/a/./b.qcow2#frag')).toBe(ensureImageDedupId('h', 'https://images.example/a/b.qcow2', undefined, undefined));
    expect(OPTIONS).toEqual(defaultJobOptions({ attempts: 5, backoffMs: 5000 }));
  });
});
