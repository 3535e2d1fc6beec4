/**
 * Secrets, end to end, with a real worker process, real Redis and real
 * loopback HTTP servers:
 *   - credentials in an image URL are refused before anything reaches Redis;
 *   - the worker's credential store (FLEETQ_IMAGE_AUTH_FILE) sends its header
 *     to its origin only, never across a redirect to another origin, and
 *     refuses to start when the file is group/other-readable;
 *   - jobs whose URLs carry presigned-query secrets complete, fail (404) and
 *     are dead-lettered; every CLI command, with --json and without, and the
 *     worker's own log lines show none of the secrets.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { qcow2Image, type TestImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
const HOST = 'sec-a';
const TIMING = { FLEETQ_HEARTBEAT: '200ms', FLEETQ_HOST_DOWN_AFTER: '3s' };
/** Presigned-query secrets (allowed in job data, never shown), URL passwords and the store's header value. */
const SECRETS = ['SECRET1', 'SECRET2', 'hunter2', 'BEARER-SECRET3', 'FRAGMENT-SECRET4'];
const presigned = (url: string) => `${url}?X-Amz-Signature=SECRET1&token=SECRET2&tag=v1`;

let root: string;
let upstream: Upstream;
let worker: WorkerProcess;
let images: QueueClient;
let authFile: string;

/** A loopback server that records every request's path and headers. */
interface Recorder {
  origin: string;
  seen: Array<{ path: string; headers: IncomingHttpHeaders }>;
  server: Server;
}
async function recorder(handle: (path: string, headers: IncomingHttpHeaders) => { status: number; headers?: Record<string, string | number>; body?: Buffer }): Promise<Recorder> {
  const seen: Recorder['seen'] = [];
  const server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    const r = handle((req.url ?? '/').split('?')[0]!, req.headers);
    res.writeHead(r.status, { ...(r.body ? { 'content-length': r.body.length } : {}), ...r.headers }).end(r.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

let authed: Recorder;
let other: Recorder;
let privateImg: TestImage;
let landedImg: TestImage;
let okImg: TestImage;

const cli = (...args: string[]) => runCli(args, { REDIS_URL: redis.url, ...TIMING });

/** Run a CLI command; it must succeed (or exit with `code`), and print no secret on stdout or stderr. */
async function clean(args: string[], code = 0): Promise<string> {
  const r = await cli(...args);
  expect(r.code, `fleetq ${args.join(' ')}: ${r.stderr}`).toBe(code);
  for (const s of SECRETS) {
    expect(r.stdout, `fleetq ${args.join(' ')} printed ${s}`).not.toContain(s);
    expect(r.stderr, `fleetq ${args.join(' ')} printed ${s} on stderr`).not.toContain(s);
  }
  return r.stdout;
}
const cleanJson = async (...args: string[]) => JSON.parse(await clean([...args, '--json']));

async function keys(): Promise<string[]> {
  const r = new Redis(redis.url);
  try {
    return (await r.keys('*')).sort();
  } finally {
    r.disconnect();
  }
}
const keyCount = async () => (await keys()).length;
/** The keys before any job: only what the test's own queue client wrote (BullMQ's queue meta). */
let initialKeys: string[];

beforeAll(async () => {
  root = tempRoot();
  upstream = await startUpstream();
  privateImg = qcow2Image(410);
  landedImg = qcow2Image(411);
  okImg = qcow2Image(412);
  other = await recorder((path) => (path === '/landed.img' ? { status: 200, body: landedImg.body } : { status: 404 }));
  authed = await recorder((path, headers) => {
    if (path === '/private/away.img') return { status: 302, headers: { location: `${other.origin}/landed.img` } };
    if (path === '/private/ok.img') return headers.authorization === 'Bearer BEARER-SECRET3' ? { status: 200, body: privateImg.body } : { status: 401 };
    return { status: 404 };
  });
  authFile = join(root, 'image-auth.json');
  writeFileSync(authFile, JSON.stringify({ [`${authed.origin}/private/`]: { authorization: 'Bearer BEARER-SECRET3' } }));
  chmodSync(authFile, 0o600);
  images = await queueClient(redis.url, imageQueueName(HOST));
  initialKeys = await keys();
});

afterAll(async () => {
  await worker?.kill();
  await images?.close();
  await upstream?.stop();
  for (const r of [authed, other]) if (r) await new Promise((done) => r.server.close(done));
  if (root) removeRoot(root);
});

describe('credentials in an image URL are refused before Redis', () => {
  it.each([
    ['enqueue ensure-image', (image: string) => ['enqueue', 'ensure-image', '--host', HOST, '--image', image]],
    ['enqueue restore', (image: string) => ['enqueue', 'restore', '--host', HOST, '--kind', 'clone', '--snapshot', 'golden', '--image', image]],
    ['prewarm', (image: string) => ['prewarm', '--hosts', HOST, '--image', image]],
  ])('%s exits 2, names --image and FLEETQ_IMAGE_AUTH_FILE, shows the URL redacted, writes nothing', async (_name, argv) => {
    const before = await keyCount();
    for (const image of ['https://user:hunter2@127.0.0.1:9/x.img', 'https://hunter2@127.0.0.1:9/x.img', 'http:user:hunter2@127.0.0.1:9/x.img', 'http:\\\\user:hunter2@127.0.0.1:9/x.img']) {
      const r = await cli(...argv(image), '--json');
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^fleetq: --image: must not carry credentials .*FLEETQ_IMAGE_AUTH_FILE.*\(got "https?:\/\/REDACTED@127\.0\.0\.1:9\/x\.img"\)$/m);
      expect(r.stderr + r.stdout).not.toContain('hunter2');
    }
    expect(await keyCount()).toBe(before);
  });

  it('nothing at all was written (no worker yet): no job, no id counter, only the queue meta', async () => {
    expect(await keys()).toEqual(initialKeys);
    expect(initialKeys.every((k) => k.endsWith(':meta'))).toBe(true);
  });
});

describe('the credential store file', () => {
  it('a group- or other-readable file stops the worker before it starts, naming FLEETQ_IMAGE_AUTH_FILE', async () => {
    const loose = join(root, 'loose-auth.json');
    writeFileSync(loose, JSON.stringify({ 'https://h': { authorization: 'Bearer BEARER-SECRET3' } }));
    chmodSync(loose, 0o644);
    const env = { REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_IMAGE_AUTH_FILE: loose };
    const r = await runCli(['worker'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^fleetq: invalid image credential store .*readable or writable by group or others \(mode 0644\).* \(FLEETQ_IMAGE_AUTH_FILE\)$/m);
    writeFileSync(loose, '{"https://h": {"authorization": "Bearer BEARER-SECRET3"');
    chmodSync(loose, 0o600);
    const bad = await runCli(['worker'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^fleetq: invalid image credential store .*not valid JSON.* \(FLEETQ_IMAGE_AUTH_FILE\)$/m);
    for (const out of [r.stderr, r.stdout, bad.stderr, bad.stdout]) expect(out).not.toContain('BEARER-SECRET3');
    expect(await keys()).toEqual(initialKeys); // refused before connecting to Redis
  });
});

describe('with a worker running', () => {
  const ids = {} as Record<'ok' | 'missing' | 'flaky' | 'private' | 'away' | 'rawCreds' | 'rawScheme', string>;

  beforeAll(async () => {
    worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_IMAGE_AUTH_FILE: authFile, ...TIMING });
    const q = images.queue;
    const opts = { host: HOST, attempts: 2, backoffMs: 20 };
    upstream.serve('/ok.img', okImg.body);
    upstream.serve('/flaky.img', okImg.body, { faults: [{ kind: 'status', status: 500 }, { kind: 'status', status: 500 }] });
    ids.ok = (await enqueueEnsureImage(q, { image: `${presigned(upstream.url('/ok.img'))}#access_token=FRAGMENT-SECRET4`, imageDigest: okImg.digest }, opts)).jobId;
    ids.missing = (await enqueueEnsureImage(q, { image: presigned(upstream.url('/missing.img')) }, opts)).jobId;
    ids.flaky = (await enqueueEnsureImage(q, { image: `${upstream.url('/flaky.img')}?sig=SECRET1&X-Goog-Signature=SECRET2`, imageDigest: qcow2Image(413).digest }, opts)).jobId;
    ids.private = (await enqueueEnsureImage(q, { image: `${authed.origin}/private/ok.img?token=SECRET2`, imageDigest: privateImg.digest }, opts)).jobId;
    ids.away = (await enqueueEnsureImage(q, { image: `${authed.origin}/private/away.img?token=SECRET2`, imageDigest: landedImg.digest }, opts)).jobId;
    // Producers that bypass the contract: the worker refuses the payload, and its reason is shown redacted too.
    ids.rawCreds = (await q.add('ensure-image', { image: 'https://user:hunter2@127.0.0.1:9/x.img' }, { jobId: 'raw-creds', attempts: 1 })).id!;
    ids.rawScheme = (await q.add('ensure-image', { image: 'http:user:hunter2@127.0.0.1:9/x.img?token=SECRET2' }, { jobId: 'raw-scheme', attempts: 1 })).id!;

    expect((await images.settle(ids.ok)).state).toBe('completed');
    expect((await images.settle(ids.private)).state).toBe('completed');
    expect((await images.settle(ids.away)).state).toBe('completed');
    const missing = await images.settle(ids.missing);
    expect(missing).toMatchObject({ state: 'failed', failedReason: expect.stringMatching(/HTTP 404/) });
    expect((await images.settle(ids.flaky)).state).toBe('failed');
    expect((await images.settle(ids.rawCreds)).state).toBe('failed');
    expect((await images.settle(ids.rawScheme)).state).toBe('failed');

    // A schedule: its template holds the presigned URL.
    await clean(['prewarm', '--hosts', HOST, '--image', presigned(upstream.url('/prewarm.img')), '--every', '1h', '--json']);
    // Dead letters are recorded after the failure: wait for them.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const dlq = await cleanJson('dlq', 'ls');
      if ([ids.missing, ids.flaky].every((id) => dlq.some((d: { originalId: string }) => d.originalId === id))) break;
      if (Date.now() > deadline) throw new Error(`dead letters not recorded: ${JSON.stringify(dlq)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  it('the data holding the secrets really is in Redis (presigned queries are allowed), stored canonical without fragment', async () => {
    const ok = (await images.queue.getJob(ids.ok))!;
    expect(ok.data.image).toBe(presigned(upstream.url('/ok.img')));
    expect(ok.data.image).not.toContain('#');
    expect((await images.queue.getJob(ids.missing))!.failedReason).toContain('X-Amz-Signature=REDACTED&token=REDACTED&tag=v1');
    const schedulers = await images.queue.getJobSchedulers();
    expect(JSON.stringify(schedulers)).toContain('SECRET1');
  });

  it('the store header reached its origin, and not the other origin a redirect led to', () => {
    const ok = authed.seen.filter((s) => s.path.startsWith('/private/ok.img'));
    expect(ok.length).toBeGreaterThan(0);
    for (const s of ok) expect(s.headers.authorization).toBe('Bearer BEARER-SECRET3');
    const away = authed.seen.filter((s) => s.path.startsWith('/private/away.img'));
    expect(away.map((s) => s.headers.authorization)).toEqual(['Bearer BEARER-SECRET3']);
    expect(other.seen.map((s) => s.path)).toEqual(['/landed.img']);
    expect(other.seen[0]!.headers.authorization).toBeUndefined();
    expect(other.seen[0]!.headers['user-agent']).toMatch(/^fleetq\//);
  });

  it('every CLI command, with --json and without, shows no secret', async () => {
    const hosts = await cleanJson('hosts');
    expect(hosts.map((h: { host: string }) => h.host)).toContain(HOST);
    await clean(['hosts']);

    const failed = await cleanJson('jobs', 'ls');
    expect(failed.map((j: { id: string }) => j.id)).toEqual(expect.arrayContaining([ids.missing, ids.flaky, ids.rawCreds, ids.rawScheme]));
    const missingRow = failed.find((j: { id: string }) => j.id === ids.missing);
    expect(missingRow.image).toBe(`${upstream.url('/missing.img')}?X-Amz-Signature=REDACTED&token=REDACTED&tag=v1`);
    expect(missingRow.reason).toMatch(/X-Amz-Signature=REDACTED&token=REDACTED&tag=v1 answered HTTP 404/);
    await clean(['jobs', 'ls']);

    const all = await cleanJson('jobs', 'ls', '--state', 'failed,completed,waiting,delayed,active');
    const allIds: string[] = all.map((j: { id: string }) => j.id);
    expect(allIds).toEqual(expect.arrayContaining(Object.values(ids)));
    const scheduled = allIds.filter((id) => id.startsWith('repeat:'));
    expect(scheduled.length).toBeGreaterThan(0); // the prewarm schedule's job
    await clean(['jobs', 'ls', '--state', 'failed,completed,waiting,delayed,active']);

    // Each job shown, JSON and text; a few CLI processes at a time (they only read).
    for (let i = 0; i < allIds.length; i += 4) {
      await Promise.all(
        allIds.slice(i, i + 4).map(async (id) => {
          const show = await cleanJson('jobs', 'show', id);
          expect(show.id).toBe(id);
          await clean(['jobs', 'show', id]);
        }),
      );
    }
    const missing = await cleanJson('jobs', 'show', ids.missing);
    expect(missing.data.image).toBe(`${upstream.url('/missing.img')}?X-Amz-Signature=REDACTED&token=REDACTED&tag=v1`);
    expect(missing.failedReason).toContain('X-Amz-Signature=REDACTED');
    expect(missing.stacktrace).toBeTruthy();
    const rawScheme = await cleanJson('jobs', 'show', ids.rawScheme);
    expect(rawScheme.data.image).toBe('http://REDACTED@127.0.0.1:9/x.img?token=REDACTED');
    expect(rawScheme.failedReason).toMatch(/must not carry credentials/);
    const sched = await cleanJson('jobs', 'show', scheduled[0]!);
    expect(sched.data.image).toContain('X-Amz-Signature=REDACTED');

    const dry = await cleanJson('retry', '--dry-run');
    expect(dry.summary.matched).toBeGreaterThanOrEqual(4);
    await clean(['retry', '--dry-run']);
    await cleanJson('retry', '--dry-run', '--reason', 'HTTP 404');

    const dlq = await cleanJson('dlq', 'ls');
    const dead = dlq.find((d: { originalId: string }) => d.originalId === ids.missing);
    expect(dead.data.image).toContain('X-Amz-Signature=REDACTED');
    expect(dead.reason).toContain('X-Amz-Signature=REDACTED');
    await clean(['dlq', 'ls']);
    await cleanJson('dlq', 'requeue', '--dry-run');
    await clean(['dlq', 'requeue', '--dry-run']);

    await cleanJson('prewarm', '--hosts', HOST, '--image', presigned(upstream.url('/prewarm.img')), '--every', '1h');
    await clean(['prewarm', '--hosts', HOST, '--image', presigned(upstream.url('/prewarm.img')), '--every', '1h']);

    // Waiting for a job prints its failed reason: redacted.
    const waited = await clean(['enqueue', 'ensure-image', '--host', HOST, '--image', presigned(upstream.url('/missing-too.img')), '--wait', '--timeout', '30s', '--json'], 1);
    expect(JSON.parse(waited)).toMatchObject({ state: 'failed', failedReason: expect.stringContaining('X-Amz-Signature=REDACTED') });
    await clean(['enqueue', 'ensure-image', '--host', HOST, '--image', presigned(upstream.url('/missing-three.img')), '--wait', '--timeout', '30s'], 1);

    // A real retry, then what it printed.
    const retried = await cleanJson('retry', '--id', ids.missing, '--yes');
    expect(retried.summary.retried).toBe(1);
    expect((await images.settle(ids.missing)).state).toBe('failed');
    await cleanJson('promote');
    await cleanJson('clean', '--state', 'completed', '--older-than', '1h', '--yes');
  }, 180_000); // some forty CLI processes: allow for a loaded CI machine

  it("the worker's log lines (debug level) hold none of the secrets, though they name the URLs", async () => {
    const text = worker.logs.map((l) => JSON.stringify(l)).join('\n');
    for (const s of SECRETS) expect(text, `worker logged ${s}`).not.toContain(s);
    expect(text).toContain('X-Amz-Signature=REDACTED');
    expect(worker.stderr).not.toMatch(/SECRET|hunter2/);
  });
});
