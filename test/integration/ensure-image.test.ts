/**
 * ensure-image end to end: real redis-server, a real worker process, a real
 * HTTP upstream on loopback, a real store on disk.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { qcow2Image, qemuInfo, rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, plantBlob, plantIndexEntry, readIndexFile, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';
import { startMonitor } from '../helpers/monitor.js';

const HOST = 'h-e2e';
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let worker: WorkerProcess;
let q: QueueClient;
let sizeMiB = 1;
/** A qcow2 image with a digest no other test uses. */
const freshImage = () => qcow2Image(sizeMiB++);

const enqueue = (data: { image: string; imageDigest?: string; force?: boolean }) =>
  enqueueEnsureImage(q.queue, data, { host: HOST, attempts: 3, backoffMs: 100 });

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root });
  q = await queueClient(redis.url, imageQueueName(HOST));
});

afterAll(async () => {
  await q?.close();
  expect(await worker?.stop()).toBe(0);
  await upstream?.stop();
  removeRoot(root);
});

describe('the seed cases, end to end', () => {
  it('#37: pinned digest missing, URL cached at an older digest whose blob exists → exactly one GET, pinned blob present', async () => {
    const old = freshImage();
    const current = freshImage();
    const url = upstream.serve('/dl/simular/win11', current.body);
    plantBlob(root, old.hex, old.body);
    plantIndexEntry(root, url, old.digest, old.body.length);

    const { jobId } = await enqueue({ image: url, imageDigest: current.digest });
    const r = await q.settle(jobId);

    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: current.digest, size: current.body.length, bytesDownloaded: current.body.length });
    expect(r.value.path).toBe(join(root, 'cloudimg', 'blobs', `${current.hex}.qcow2`));
    expect(upstream.gets('/dl/simular/win11')).toBe(1);
    const state = storeState(root);
    expect(state.blobs).toContain(`${current.hex}.qcow2`);
    expect(state.blobs).toContain(`${old.hex}.qcow2`); // the old blob stays until GC
    expect(state.index[url]).toBe(current.digest); // the URL now points at what it serves
    expect(state.temp).toEqual([]);
    assertConsistent(root);
  });

  it('no digest and a valid cached blob → present with zero GETs', async () => {
    const img = freshImage();
    const url = upstream.serve('/cached/nodigest', img.body);
    plantBlob(root, img.hex, img.body);
    plantIndexEntry(root, url, img.digest, img.body.length);

    const r = await q.settle((await enqueue({ image: url })).jobId);
    expect(r.value).toMatchObject({ outcome: 'present', digest: img.digest, bytesDownloaded: 0 });
    expect(upstream.gets('/cached/nodigest')).toBe(0);
  });

  it('pinned and present → zero GETs and no lock taken', async () => {
    const img = freshImage();
    const url = upstream.serve('/pinned/present', img.body);
    plantBlob(root, img.hex, img.body);
    const monitor = await startMonitor(redis.url);
    const lockCommands: string[] = [];
    monitor.on('monitor', (_t: string, args: string[]) => {
      if (args.some((a) => a.includes('pull-lock') || a.includes('pull-released'))) lockCommands.push(args.join(' '));
    });
    try {
      const r = await q.settle((await enqueue({ image: url, imageDigest: img.digest })).jobId);
      expect(r.value).toMatchObject({ outcome: 'present', digest: img.digest, bytesDownloaded: 0 });
    } finally {
      monitor.disconnect();
    }
    expect(upstream.gets('/pinned/present')).toBe(0);
    expect(lockCommands).toEqual([]);
  });

  it('no digest, cached entry whose blob is gone → downloads again and repairs the index', async () => {
    const gone = freshImage();
    const img = freshImage();
    const url = upstream.serve('/cached/blob-gone', img.body);
    plantIndexEntry(root, url, gone.digest, gone.body.length);
    const r = await q.settle((await enqueue({ image: url })).jobId);
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/cached/blob-gone')).toBe(1);
    expect(storeState(root).index[url]).toBe(img.digest);
    assertConsistent(root);
  });

  it('force → downloads even though the pinned blob is present', async () => {
    const img = freshImage();
    const url = upstream.serve('/forced', img.body);
    plantBlob(root, img.hex, img.body);
    const r = await q.settle((await enqueue({ image: url, imageDigest: img.digest, force: true })).jobId);
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/forced')).toBe(1);
  });
});

describe('#37 reversed: the pinned digest is no longer served', () => {
  it('fails without retry naming both digests; store unchanged; the pin is never reported present', async () => {
    const old = freshImage();
    const pinnedButGone = freshImage();
    const nowServed = freshImage();
    const url = upstream.serve('/dl/moved', nowServed.body);
    plantBlob(root, old.hex, old.body);
    plantIndexEntry(root, url, old.digest, old.body.length);
    const before = storeState(root);

    const r = await q.settle((await enqueue({ image: url, imageDigest: pinnedButGone.digest })).jobId);

    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1); // UnrecoverableError: no retries
    expect(r.failedReason).toContain(pinnedButGone.digest);
    expect(r.failedReason).toContain(nowServed.digest);
    expect(upstream.gets('/dl/moved')).toBe(1);
    expect(storeState(root)).toEqual(before);
    expect(existsSync(join(root, 'cloudimg', 'blobs', `${pinnedButGone.hex}.qcow2`))).toBe(false);
  });
});

describe('bodies that need converting', () => {
  it('a raw body is converted to qcow2 v3 and keeps the hex of the downloaded body', async () => {
    const raw = rawImage(1024 * 1024 + 512);
    const url = upstream.serve('/raw.img', raw.body);
    const r = await q.settle((await enqueue({ image: url, imageDigest: raw.digest })).jobId);
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: raw.digest });
    const info = qemuInfo(r.value.path);
    expect(info.format).toBe('qcow2');
    expect(info['format-specific']?.data?.compat).toBe('1.1');
    expect(info['virtual-size']).toBeGreaterThanOrEqual(raw.body.length);
    expect(readIndexFile(root).images[url]?.size).toBe(r.value.size);
    assertConsistent(root);
  });
});

describe('bad payloads fail at once, without retries, naming the field; nothing is written', () => {
  it.each([
    ['wrong scheme', { image: 'ftp://127.0.0.1/a.img' }, 'image'],
    ['file://', { image: 'file:///etc/passwd' }, 'image'],
    ['malformed digest', { image: 'http://127.0.0.1/a.img', imageDigest: 'sha256:1234' }, 'imageDigest'],
    ['../ in digest', { image: 'http://127.0.0.1/a.img', imageDigest: `sha256:../../../../etc/${'a'.repeat(50)}` }, 'imageDigest'],
    ['missing image', { imageDigest: `sha256:${'c'.repeat(64)}` }, 'image'],
  ])('%s', async (_name, data, field) => {
    const before = storeState(root);
    const job = await q.queue.add('ensure-image', data, { attempts: 5, backoff: { type: 'fixed', delay: 100 } });
    const r = await q.settle(job.id!);
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(new RegExp(`^invalid ensure-image payload: ${field} `));
    expect(storeState(root)).toEqual(before);
  });
});

describe('producer', () => {
  it('collapses duplicate enqueues of one (host, digest) while pending and says so', async () => {
    const img = freshImage();
    const other = await queueClient(redis.url, imageQueueName('h-nobody'));
    try {
      const opts = { host: 'h-nobody', attempts: 1, backoffMs: 100 };
      const a = await enqueueEnsureImage(other.queue, { image: 'http://127.0.0.1/x', imageDigest: img.digest }, opts);
      const b = await enqueueEnsureImage(other.queue, { image: 'http://127.0.0.1/x', imageDigest: img.digest }, opts);
      const c = await enqueueEnsureImage(other.queue, { image: 'http://127.0.0.1/x', imageDigest: img.digest, force: true }, opts);
      expect(a.deduplicated).toBe(false);
      expect(b).toEqual({ jobId: a.jobId, deduplicated: true });
      expect(c.deduplicated).toBe(false);
      expect(await other.queue.getWaitingCount()).toBe(2);
    } finally {
      await other.queue.obliterate({ force: true });
      await other.close();
    }
  });
});

describe('CLI: fleetq enqueue ensure-image', () => {
  const env = () => ({ REDIS_URL: redis.url });

  it('--wait --json prints one JSON object on stdout (progress goes to stderr) and exits 0 on completion', async () => {
    const img = freshImage();
    const url = upstream.serve('/cli/ok', img.body);
    const r = await runCli(['enqueue', 'ensure-image', '--host', HOST, '--image', url, '--digest', img.digest, '--wait', '--json'], env());
    expect(r.stderr).toMatch(/^job [0-9a-f-]{36}: queued on /);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ state: 'completed', outcome: 'pulled', digest: img.digest });
    expect(typeof out.jobId).toBe('string');
  });

  it('--wait exits 1 on a failed job with its reason', async () => {
    const img = freshImage();
    const r = await runCli(['enqueue', 'ensure-image', '--host', HOST, '--image', upstream.url('/cli/missing'), '--digest', img.digest, '--wait', '--json'], env());
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.state).toBe('failed');
    expect(out.failedReason).toMatch(/HTTP 404/);
  });

  it('without --wait prints the job id', async () => {
    const img = freshImage();
    const url = upstream.serve('/cli/nowait', img.body);
    const r = await runCli(['enqueue', 'ensure-image', '--host', HOST, '--image', url], env());
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await q.settle(id)).state).toBe('completed');
  });

  it.each([
    [['--image', 'file:///etc/passwd'], /^fleetq: --image: .*unsupported protocol scheme "file"/],
    [['--image', 'http://x/a', '--digest', 'sha256:xyz'], /^fleetq: --digest: must be "sha256:"/],
    [['--image', 'http://x/a', '--host', 'bad:host'], /^fleetq: --host: /],
    [['--digest', `sha256:${'a'.repeat(64)}`], /^fleetq: --image: is required/],
  ])('invalid arguments exit 2 with one line naming the flag and enqueue nothing: %j', async (args, message) => {
    const before = await q.queue.getJobCounts();
    const r = await runCli(['enqueue', 'ensure-image', '--host', HOST, ...args], env());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await q.queue.getJobCounts()).toEqual(before);
  });
});

describe('progress', () => {
  it('reports {progress, bytes, total, rate} on the job while downloading, at most once a second', async () => {
    const img = rawImage(1024 * 1024);
    const url = upstream.serve('/progress.img', img.body, { chunkSize: 32 * 1024, chunkDelayMs: 100 }); // ~3.2 s
    const seen: Array<{ at: number; data: any }> = [];
    const onProgress = ({ jobId: id, data }: { jobId: string; data: any }) => {
      if (id === jobId) seen.push({ at: Date.now(), data });
    };
    q.events.on('progress', onProgress);
    const { jobId } = await enqueue({ image: url, imageDigest: img.digest });
    const r = await q.settle(jobId);
    q.events.off('progress', onProgress);
    expect(r.state).toBe('completed');
    expect(seen.length).toBeGreaterThanOrEqual(2);
    for (const s of seen) {
      expect(s.data).toEqual({ progress: expect.any(Number), bytes: expect.any(Number), total: img.body.length, rate: expect.any(Number) });
      expect(s.data.bytes).toBeLessThanOrEqual(img.body.length);
      expect(s.data.progress).toBe(Math.floor((s.data.bytes * 100) / img.body.length)); // Bull Board's ring
    }
    expect(seen.at(-1)!.data).toMatchObject({ progress: 100, bytes: img.body.length });
    const bytes = seen.map((s) => s.data.bytes);
    expect([...bytes].sort((a, b) => a - b)).toEqual(bytes);
    // Consecutive updates (but the final one) are at least ~1 s apart.
    for (let i = 1; i < seen.length - 1; i++) expect(seen[i]!.at - seen[i - 1]!.at).toBeGreaterThanOrEqual(900);
  });
});
