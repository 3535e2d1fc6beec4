/**
 * The dashboard over HTTP: authentication, read-only refusals at the API,
 * redaction of job data, /healthz, /metrics, and queues picked up live.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { boardName, imageQueueName } from '../../src/queues/names.js';
import { basic, type BoardProcess, sameOrigin, startBoardProcess } from '../helpers/board-process.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { startTestRedis, useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
const CREDS = { FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 's3cret-pass' };
const AUTH = basic('oncall', 's3cret-pass');
/** The board's names for the queues (`<host>:<queue>`, grouped by host in the sidebar), as they appear in its URLs. */
const B1 = boardName('images', 'b-1');
const B1_URL = encodeURIComponent(B1);
let upstream: Upstream;
let root: string;
let worker: WorkerProcess;
let q: QueueClient;
let board: BoardProcess;
let readOnly: BoardProcess;
let failedId: string;

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: 'b-1', FLEETQ_ROOT: root, FLEETQ_HEARTBEAT: '200ms' });
  q = await queueClient(redis.url, imageQueueName('b-1'));
  // One pulled image, one failed job whose (presigned) URL carries a secret, and one that a raw
  // BullMQ producer added with credentials in the URL (the contract refuses those; the board must still hide them).
  const img = qcow2Image(400);
  const ok = await enqueueEnsureImage(q.queue, { image: upstream.serve('/board/ok', img.body), imageDigest: img.digest }, { host: 'b-1', attempts: 1, backoffMs: 10 });
  await q.settle(ok.jobId);
  const secretUrl = `http://127.0.0.1:${upstream.port}/board/missing?token=abc123`;
  failedId = (await enqueueEnsureImage(q.queue, { image: secretUrl, imageDigest: qcow2Image(401).digest }, { host: 'b-1', attempts: 1, backoffMs: 10 })).jobId;
  await q.settle(failedId);
  const raw = await q.queue.add('ensure-image', { image: `http://deploy:hunter2@127.0.0.1:${upstream.port}/board/raw`, imageDigest: qcow2Image(402).digest }, { attempts: 1 });
  await q.settle(raw.id!);
  board = await startBoardProcess({ REDIS_URL: redis.url, ...CREDS, FLEETQ_HOST_DOWN_AFTER: '2s' });
  readOnly = await startBoardProcess({ REDIS_URL: redis.url, ...CREDS }, ['--read-only']);
});

afterAll(async () => {
  await board?.stop();
  await readOnly?.stop();
  await q?.close();
  await worker?.stop();
  await upstream?.stop();
  removeRoot(root);
});

describe('authentication', () => {
  it('401 without or with wrong credentials, on the UI, the API and /metrics', async () => {
    for (const path of ['/', '/api/queues', '/metrics']) {
      const r = await fetch(board.url + path);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Basic realm="fleetq"/);
      expect((await fetch(board.url + path, { headers: basic('oncall', 'wrong') })).status).toBe(401);
    }
  });

  it('200 with credentials; the startup line names where they came from, never the password', async () => {
    expect((await fetch(`${board.url}/`, { headers: AUTH })).status).toBe(200);
    expect(board.stderr()).toMatch(/board at http:\/\/127\.0\.0\.1:\d+\/ \(user "oncall", credentials from FLEETQ_BOARD_USER\/FLEETQ_BOARD_PASSWORD\)/);
    expect(board.stderr()).not.toContain('s3cret-pass');
  });

  it('refuses to start without credentials, and --no-auth off loopback', async () => {
    const env = { REDIS_URL: redis.url };
    const none = await runCli(['board', '--port', '0'], env);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^fleetq: the board needs credentials: set FLEETQ_BOARD_USER and FLEETQ_BOARD_PASSWORD/);
    const open = await runCli(['board', '--port', '0', '--no-auth', '--bind', '0.0.0.0'], env);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/^fleetq: --no-auth: only allowed when bound to loopback/);
  });

  it('--no-auth on loopback serves without credentials', async () => {
    const b = await startBoardProcess({ REDIS_URL: redis.url }, ['--no-auth']);
    try {
      expect((await fetch(`${b.url}/api/queues`)).status).toBe(200);
      expect(b.stderr()).toMatch(/NO authentication/);
    } finally {
      await b.stop();
    }
  });
});

describe('the board API', () => {
  it('shows the host\'s queues and the failed job with its data redacted', async () => {
    const r = await fetch(`${board.url}/api/queues?activeQueue=${B1_URL}&status=failed&page=1&jobsPerPage=10`, { headers: AUTH });
    expect(r.status).toBe(200);
    const body = await r.text();
    const json = JSON.parse(body);
    expect(json.queues.map((x: any) => x.name)).toEqual(expect.arrayContaining([B1, boardName('restores', 'b-1')]));
    expect(json.queues.find((x: any) => x.name === B1).delimiter).toBe(':');
    const images = json.queues.find((x: any) => x.name === B1);
    const failed = images.jobs.find((j: any) => j.id === failedId);
    expect(failed.failedReason).toMatch(/HTTP 404/);
    expect(body).not.toContain('hunter2');
    expect(body).not.toContain('abc123');
    expect(failed.data.image).toMatch(/REDACTED|\*\*\*/);
  });

  it('read-only mode refuses every write at the API (not only the buttons); the normal board accepts them', async () => {
    const writes: Array<[string, string]> = [
      ['PUT', `/api/queues/${B1_URL}/${failedId}/retry`],
      ['PUT', `/api/queues/${B1_URL}/retry/failed`],
      ['PUT', `/api/queues/${B1_URL}/clean/completed`],
      ['PUT', `/api/queues/${B1_URL}/pause`],
      ['PUT', `/api/queues/${B1_URL}/empty`],
      ['PUT', `/api/queues/${B1_URL}/obliterate`],
      ['POST', `/api/queues/${B1_URL}/add`],
      ['DELETE', `/api/queues/${B1_URL}/${failedId}`],
      ['PUT', '/api/queues/pause'],
    ];
    for (const [method, path] of writes) {
      const r = await fetch(readOnly.url + path, { method, headers: { ...AUTH, 'content-type': 'application/json' }, body: method === 'DELETE' ? undefined : '{}' });
      expect(r.status, `${method} ${path}`).toBe(405);
    }
    expect(await (await q.queue.getJob(failedId))!.getState()).toBe('failed');
    expect(await q.queue.isPaused()).toBe(false);
    // Reads still work in read-only mode.
    expect((await fetch(`${readOnly.url}/api/queues`, { headers: AUTH })).status).toBe(200);

    const getsBefore = upstream.gets('/board/missing');
    // A same-origin write (the XSRF-TOKEN cookie echoed in X-XSRF-TOKEN, as the UI does); board-security.test.ts covers the refusals.
    const retried = await fetch(`${board.url}/api/queues/${B1_URL}/${failedId}/retry`, { method: 'PUT', headers: await sameOrigin(board, AUTH) });
    expect(retried.status).toBe(204);
    // It ran again (and failed again: the URL still 404s).
    await expect.poll(() => upstream.gets('/board/missing'), { timeout: 10_000, interval: 50 }).toBe(getsBefore + 1);
  });

  it('picks up a new host\'s queues live, without a restart', async () => {
    const root2 = tempRoot();
    const w2 = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: 'b-2', FLEETQ_ROOT: root2 });
    try {
      await expect
        .poll(async () => ((await (await fetch(`${board.url}/api/queues`, { headers: AUTH })).json()) as any).queues.map((x: any) => x.name), { timeout: 10_000, interval: 200 })
        .toEqual(expect.arrayContaining([boardName('images', 'b-2'), boardName('restores', 'b-2')]));
      // The host view: each queue says whether its host is up and how old its oldest waiting job is.
      const description = async () =>
        ((await (await fetch(`${board.url}/api/queues`, { headers: AUTH })).json()) as any).queues.find((x: any) => x.name === boardName('images', 'b-2'))?.description as string | undefined;
      await expect.poll(description, { timeout: 10_000, interval: 200 }).toMatch(/^images on b-2: host up \(seen \d+s ago\), (nothing waiting|oldest waiting \d+s)$/);
      expect(await w2.stop()).toBe(0);
      await expect.poll(description, { timeout: 10_000, interval: 200 }).toMatch(/^images on b-2: host down /);
    } finally {
      await w2.kill();
      removeRoot(root2);
    }
  });
});

describe('/metrics and /healthz', () => {
  it('/metrics: jobs by queue and state, pulls by outcome, bytes, lock wait, durations, hosts up/down', async () => {
    const r = await fetch(`${board.url}/metrics`, { headers: AUTH });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await r.text();
    expect(text).toMatch(/^fleetq_jobs\{host="b-1",queue="images",state="completed"\} 1$/m);
    expect(text).toMatch(/^fleetq_jobs\{host="b-1",queue="images",state="failed"\} [1-9]/m);
    expect(text).toMatch(/^fleetq_pulls_total\{host="b-1",outcome="pulled"\} 1$/m);
    expect(text).toMatch(/^fleetq_pulls_total\{host="b-1",outcome="failed"\} [1-9]/m);
    expect(text).toMatch(/^fleetq_pulls_total\{host="b-1",outcome="present"\} 0$/m);
    expect(text).toMatch(/^fleetq_bytes_downloaded_total\{host="b-1"\} [1-9]\d*$/m);
    expect(text).toMatch(/^fleetq_lock_wait_seconds_count\{host="b-1"\} [1-9]/m);
    expect(text).toMatch(/^fleetq_pull_duration_seconds_bucket\{le="\+Inf",host="b-1",outcome="pulled"\} 1$/m);
    expect(text).toMatch(/^# TYPE fleetq_restore_duration_seconds histogram$/m);
    expect(text).toMatch(/^fleetq_hosts\{state="up"\} [1-9]/m);
    expect(text).toMatch(/^fleetq_host_up\{host="b-1"\} 1$/m);
  });

  it('/healthz needs no auth: 200 while Redis answers, 503 when it does not', async () => {
    const own = await startTestRedis();
    const b = await startBoardProcess({ REDIS_URL: own.url, ...CREDS });
    try {
      const ok = await fetch(`${b.url}/healthz`);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ status: 'ok' });
      await own.kill();
      const down = await fetch(`${b.url}/healthz`);
      expect(down.status).toBe(503);
      expect(((await down.json()) as any).status).toBe('unavailable');
    } finally {
      await b.stop();
      await own.cleanup();
    }
  });
});
