/**
 * Upstream misbehaviour: each fault ends in the right verdict (retry or not)
 * and leaves no temp file and no index entry behind.
 */
import { Job } from 'bullmq';
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
  // The worker records each failed attempt as `<code>: <message>` (src/worker/to-bullmq-error.ts).
  const job = await Job.fromId(q.queue, jobId);
  const codes = (job?.stacktrace ?? []).map((s) => /^(E_[A-Z_]+): /.exec(s)?.[1] ?? `(no code) ${s}`);
  return { ...result, gets: upstream.gets(path), url, store, digest: img.digest, size: img.body.length, codes };
}

/** Failed for good: `attempts` attempts, each failing with `code`, the last with a reason matching `reason`. */
function expectFailed(r: Awaited<ReturnType<typeof run>>, attempts: number, code: string, reason: RegExp) {
  expect(r.state).toBe('failed');
  expect(r.attemptsMade).toBe(attempts);
  expect(r.codes).toEqual(Array.from({ length: attempts }, () => code));
  expect(r.failedReason).toMatch(reason);
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
    expectFailed(r, 1, 'E_HTTP_STATUS', /HTTP 404 \(image not found/);
    expect(r.failedReason).toContain(r.url);
    expect(r.gets).toBe(1);
    expectNothingLeft(r);
  });

  it('HTML body → rejected without retry', async () => {
    const r = await run([{ kind: 'html' }]);
    expectFailed(r, 1, 'E_BODY_REJECTED', /rejected body .*HTML/);
    expect(r.gets).toBe(1);
    expectNothingLeft(r);
  });

  it('gzip body → rejected without retry', async () => {
    const body = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0]), Buffer.alloc(4096, 1)]);
    const r = await run([], { body, pin: false });
    expectFailed(r, 1, 'E_BODY_REJECTED', /gzip-compressed; cloudimg does not auto-decompress/);
    expectNothingLeft(r);
  });

  it('tiny body (< 4 bytes) → rejected', async () => {
    const body = Buffer.from('ok');
    const r = await run([], { body, pin: false });
    expectFailed(r, 1, 'E_BODY_REJECTED', new RegExp(`only ${body.length} bytes`));
    expectNothingLeft(r);
  });

  it('oversize body with Content-Length → rejected before reading it', async () => {
    const r = await run([], { body: rawImage(3 * 1024 * 1024).body, pin: false });
    expectFailed(r, 1, 'E_BODY_REJECTED', /over the 2\.0 MiB cap/);
    expectNothingLeft(r);
  });

  it('oversize chunked body (no Content-Length) → rejected once the cap is crossed', async () => {
    const r = await run([{ kind: 'no-length' }], { body: rawImage(3 * 1024 * 1024).body, pin: false });
    expectFailed(r, 1, 'E_BODY_REJECTED', /exceeds the 2\.0 MiB cap/);
    expectNothingLeft(r);
  });
});

describe('transient failures: retried with backoff', () => {
  it('500 then success → completed on the second attempt', async () => {
    const r = await run([{ kind: 'status', status: 500 }]);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: r.digest });
    expect(r.attemptsMade).toBe(2);
    expect(r.codes).toEqual(['E_HTTP_STATUS']);
    expect(r.gets).toBe(2);
    expect(r.store.index[r.url]).toBe(r.digest);
  });

  /** See below: how an RST mid-body reads depends on whether bytes were still unread when it landed. */
  const RESET_CODES = ['E_TRUNCATED', 'E_NETWORK'];

  it('connection reset mid-body every time → failed after all attempts; nothing left', async () => {
    const r = await run(times(ATTEMPTS, { kind: 'reset', afterBytes: 40_000 }));
    // What the client sees of an RST depends on timing, not on fleetq: one that lands while bytes are still
    // unread reads as end-of-stream on Linux (a cut body, E_TRUNCATED); one that lands on an idle socket
    // is ECONNRESET (E_NETWORK). Either way: transient, every attempt used, never completed.
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(ATTEMPTS);
    expect(r.codes).toHaveLength(ATTEMPTS);
    for (const c of r.codes) expect(RESET_CODES).toContain(c);
    expect(r.failedReason).toMatch(new RegExp(`^body of ${r.url} ended after \\d+ of ${r.size} bytes$|^network error fetching ${r.url}: ECONNRESET`));
    expect(r.gets).toBe(ATTEMPTS);
    expectNothingLeft(r);
  });

  it('connection reset once → retried and completed', async () => {
    const r = await run([{ kind: 'reset', afterBytes: 40_000 }]);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: r.digest });
    expect(r.codes).toHaveLength(1);
    expect(RESET_CODES).toContain(r.codes[0]);
    expect(r.gets).toBe(2);
  });

  it('truncated body (Content-Length not reached) → failed after all attempts as truncated; nothing left', async () => {
    const sent = 50_000;
    const r = await run(times(ATTEMPTS, { kind: 'truncate', afterBytes: sent }));
    expectFailed(r, ATTEMPTS, 'E_TRUNCATED', /./);
    expect(r.failedReason).toBe(`body of ${r.url} ended after ${sent} of ${r.size} bytes`);
    expect(r.gets).toBe(ATTEMPTS);
    expectNothingLeft(r);
  });

  it('slow server that stops sending → idle timeout, retried, then failed; nothing left', async () => {
    const r = await run(times(ATTEMPTS, { kind: 'stall', afterBytes: 20_000 }));
    expectFailed(r, ATTEMPTS, 'E_TIMEOUT', /idle timeout: .* \(FLEETQ_DOWNLOAD_IDLE_TIMEOUT\)$/);
    expect(r.gets).toBe(ATTEMPTS);
    expectNothingLeft(r);
  });

  it('a redirect is followed and the final body is verified', async () => {
    const img = qcow2Image(n++);
    const target = upstream.serve('/redirect/target', img.body);
    const url = upstream.serve('/redirect/source', img.body, { faults: [{ kind: 'redirect', to: target }] });
    const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 50 });
    const r = await q.settle(jobId);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/redirect/source')).toBe(1);
    expect(upstream.gets('/redirect/target')).toBe(1);
  });
});
