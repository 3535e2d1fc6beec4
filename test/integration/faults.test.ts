/**
 * Upstream misbehaviour: each fault ends in the right verdict (retry or not)
 * and leaves no temp file and no index entry behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { qcow2Image, rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { type Fault, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const HOST = 'h-faults';
const ATTEMPTS = 3;
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let worker: WorkerProcess;
let q: QueueClient;
let n = 1;

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  worker = await startWorkerProcess({
    REDIS_URL: redis.url,
    FLEETQ_HOST: HOST,
    FLEETQ_ROOT: root,
    FLEETQ_DOWNLOAD_IDLE_TIMEOUT: '700ms',
    FLEETQ_MAX_IMAGE_SIZE: '2M',
  });
  q = await queueClient(redis.url, imageQueueName(HOST));
});

afterAll(async () => {
  await q?.close();
  expect(await worker?.stop()).toBe(0);
  await upstream?.stop();
  removeRoot(root);
});

async function run(faults: Fault[], opts: { pin?: boolean; body?: Buffer } = {}) {
  const img = opts.body ? { body: opts.body, digest: undefined } : qcow2Image(n);
  const path = `/fault/${n++}`;
  const url = upstream.serve(path, img.body, { faults, chunkSize: 16 * 1024 });
  const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: opts.pin === false ? undefined : img.digest }, {
    host: HOST,
    attempts: ATTEMPTS,
    backoffMs: 50,
  });
  const result = await q.settle(jobId);
  const store = storeState(root);
  return { ...result, gets: upstream.gets(path), url, store, digest: img.digest };
}

function expectNothingLeft(r: { store: ReturnType<typeof storeState>; url: string }) {
  expect(r.store.temp).toEqual([]);
  expect(r.store.index[r.url]).toBeUndefined();
  assertConsistent(root);
}

const times = (k: number, f: Fault) => Array.from({ length: k }, () => ({ ...f }));

describe('permanent failures: no retries', () => {
  it('404 → failed once, reason says not found', async () => {
    const r = await run([{ kind: 'status', status: 404 }]);
    expect(r.state).not.toBe('completed');
    expect(r.attemptsMade).toBe(1);
    expect(r.gets).toBe(1);
    expect(r.failedReason).toMatch(/HTTP 404 \(image not found/);
    expectNothingLeft(r);
  });

  it('HTML body → rejected without retry', async () => {
    const r = await run([{ kind: 'html' }]);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/rejected body .*HTML/);
    expectNothingLeft(r);
  });

  it('gzip body → rejected without retry', async () => {
    const body = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0]), Buffer.alloc(4096, 1)]);
    const r = await run([], { body, pin: false });
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/gzip-compressed; cloudimg does not auto-decompress/);
    expectNothingLeft(r);
  });

  it('tiny body (< 4 bytes) → rejected', async () => {
    const r = await run([], { body: Buffer.from('ok'), pin: false });
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/only 2 bytes/);
    expectNothingLeft(r);
  });

  it('oversize body with Content-Length → rejected before reading it', async () => {
    const r = await run([], { body: rawImage(3 * 1024 * 1024).body, pin: false });
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/over the 2\.0 MiB cap \(FLEETQ_MAX_IMAGE_SIZE\)/);
    expectNothingLeft(r);
  });

  it('oversize chunked body (no Content-Length) → rejected once the cap is crossed', async () => {
    const r = await run([{ kind: 'no-length' }], { body: rawImage(3 * 1024 * 1024).body, pin: false });
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/exceeds the 2\.0 MiB cap/);
    expectNothingLeft(r);
  });
});

describe('transient failures: retried with backoff', () => {
  it('500 then success → completed on the second attempt', async () => {
    const r = await run([{ kind: 'status', status: 500 }]);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: r.digest });
    expect(r.attemptsMade).toBe(2);
    expect(r.gets).toBe(2);
    expect(r.store.index[r.url]).toBe(r.digest);
  });

  it('connection reset mid-body every time → failed after all attempts; nothing left', async () => {
    const r = await run(times(ATTEMPTS, { kind: 'reset', afterBytes: 40_000 }));
    expect(r.state).not.toBe('completed');
    expect(r.attemptsMade).toBe(ATTEMPTS);
    expect(r.gets).toBe(ATTEMPTS);
    expect(r.failedReason).toMatch(/network error|truncated/);
    expectNothingLeft(r);
  });

  it('connection reset once → retried and completed', async () => {
    const r = await run([{ kind: 'reset', afterBytes: 40_000 }]);
    expect(r.state).toBe('completed');
    expect(r.gets).toBe(2);
  });

  it('truncated body (Content-Length not reached) → failed after all attempts; nothing left', async () => {
    const r = await run(times(ATTEMPTS, { kind: 'truncate', afterBytes: 50_000 }));
    expect(r.attemptsMade).toBe(ATTEMPTS);
    expect(r.failedReason).toMatch(/truncated|ended after|other side closed|network error/);
    expectNothingLeft(r);
  });

  it('slow server that stops sending → idle timeout, retried, then failed; nothing left', async () => {
    const r = await run(times(ATTEMPTS, { kind: 'stall', afterBytes: 20_000 }));
    expect(r.attemptsMade).toBe(ATTEMPTS);
    expect(r.failedReason).toMatch(/idle timeout: .* \(FLEETQ_DOWNLOAD_IDLE_TIMEOUT\)$/);
    expectNothingLeft(r);
  });

  it('a redirect is followed and the final body is verified', async () => {
    const img = qcow2Image(n++);
    const target = upstream.serve('/redirect/target', img.body);
    const url = upstream.serve('/redirect/source', img.body, { faults: [{ kind: 'redirect', to: target }] });
    const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 50 });
    const r = await q.settle(jobId);
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/redirect/target')).toBe(1);
  });
});
