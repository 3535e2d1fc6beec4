/**
 * The board held up to the open network (issue 10), over real HTTP against a
 * real `fleetq board` process:
 *   - CSRF: every state-changing route refuses a cross-site request (foreign
 *     Origin, Sec-Fetch-Site other than same-origin, no or wrong XSRF token),
 *     including the classic `text/plain` / urlencoded form post to …/add;
 *     nothing changes in Redis; a same-origin request goes through;
 *   - `--no-auth`: a Host that is not loopback with the board's port → 421;
 *   - failed logins: logged (user, address; no password), bounded, rate-limited
 *     per address with 429 + Retry-After; the right password works again after;
 *   - 10 MB payloads: one page of /api/queues stays small, fields are marked
 *     truncated; logs and the job detail are capped too;
 *   - Duplicate / Edit data (add, update-data) are refused and the stored job
 *     data is unchanged;
 *   - secrets: every GET route of the API (and the pages) over jobs whose
 *     data, failed reason, stack, logs, return value and scheduler template
 *     carry secret URLs shows none of them;
 *   - response headers: CSP without other origins, no framing.
 */
import { request as httpRequest } from 'node:http';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boardName, imageQueueName } from '../../src/queues/names.js';
import { announce } from '../../src/registry/host-registry.js';
import { basic, type BoardProcess, sameOrigin, startBoardProcess } from '../helpers/board-process.js';
import { qcow2Image } from '../helpers/images.js';
import { useTestRedis } from '../helpers/redis.js';

const redis = useTestRedis();
const HOST = 'sec-1';
const QUEUE = imageQueueName(HOST);
/** The queue's name on the board (`<host>:<queue>`), URL-encoded as in the board's URLs. */
const BQ = encodeURIComponent(boardName('images', HOST));
const CREDS = { FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 'right-horse-battery' };
const AUTH = basic('oncall', 'right-horse-battery');
const MB = 1024 * 1024;

let conn: Redis;
let queue: Queue;
let board: BoardProcess;
let open: BoardProcess;
let smallId: string;
const bigIds: string[] = [];
/** A second host whose jobs carry secrets in every field the board shows. */
const HOST2 = 'sec-2';
const QUEUE2 = imageQueueName(HOST2);
const BQ2 = encodeURIComponent(boardName('images', HOST2));
const SECRETS = ['SECRETU', 'SECRETQ', 'SECRETF', 'SECRETT', 'SECRETS', 'SECRETR'];
const SECRET_URL = 'https://deploy:SECRETU@img.example/a.qcow2?X-Amz-Signature=SECRETQ&tag=v1#access_token=SECRETF';
let queue2: Queue;
const secretIds: string[] = [];

/** A raw HTTP request, so that Host can be anything (fetch will not send a foreign Host). */
function raw(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end(opts.body);
  });
}

/** Everything a write could change: job ids per state, paused flag, and every job's stored fields (sizes for the big ones). */
async function state(): Promise<unknown> {
  const k = (s: string) => `fleetq:${QUEUE}:${s}`;
  const ids = {
    wait: await conn.lrange(k('wait'), 0, -1),
    paused: await conn.lrange(k('paused'), 0, -1),
    active: await conn.lrange(k('active'), 0, -1),
    delayed: await conn.zrange(k('delayed'), 0, -1),
    prioritized: await conn.zrange(k('prioritized'), 0, -1),
    failed: await conn.zrange(k('failed'), 0, -1),
    completed: await conn.zrange(k('completed'), 0, -1),
  };
  const jobs: Record<string, unknown> = {};
  for (const id of Object.values(ids).flat()) {
    const [name, delay, priority, opts] = await conn.hmget(k(id), 'name', 'delay', 'priority', 'opts');
    jobs[id] = { name, delay, priority, opts, dataBytes: await conn.hstrlen(k(id), 'data'), data: id.startsWith('big-') ? undefined : await conn.hget(k(id), 'data') };
  }
  return { ids, paused: await queue.isPaused(), meta: await conn.hgetall(k('meta')), jobs };
}

beforeAll(async () => {
  conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  queue = new Queue(QUEUE, { connection: conn, prefix: 'fleetq' });
  // A registered host with no worker: its jobs stay where they are put.
  await announce(conn, 'fleetq', { instance: 'test-1', host: HOST, version: 'test', pid: process.pid, concurrency: 1, restoreConcurrency: 1, queues: [QUEUE], startedAt: Date.now() });
  const small = await queue.add('ensure-image', { image: 'https://images.example/ubuntu.qcow2?X-Amz-Signature=s3cr3tsig', imageDigest: qcow2Image(700).digest }, { delay: 3_600_000, jobId: 'small-1' });
  smallId = small.id!;
  for (let i = 0; i < 10; i++) {
    const j = await queue.add('ensure-image', { image: `https://images.example/big-${i}.qcow2`, imageDigest: qcow2Image(701).digest, blob: 'x'.repeat(10 * MB) }, { delay: 3_600_000, jobId: `big-${i}` });
    bigIds.push(j.id!);
  }
  // 300 log lines of 10 KiB each (3 MB) on the small job.
  for (let i = 0; i < 300; i++) await Job.addJobLog(queue, smallId, `line ${i} ${'y'.repeat(10 * 1024)}`);

  // Secrets everywhere: data (as a raw producer could store it), failed reason, stack, logs, return value, scheduler template.
  queue2 = new Queue(QUEUE2, { connection: conn, prefix: 'fleetq' });
  await announce(conn, 'fleetq', { instance: 'test-2', host: HOST2, version: 'test', pid: process.pid, concurrency: 1, restoreConcurrency: 1, queues: [QUEUE2], startedAt: Date.now() });
  const k2 = (s: string) => `fleetq:${QUEUE2}:${s}`;
  const data = { image: SECRET_URL, imageDigest: qcow2Image(702).digest, note: 'mirror: see https://img.example/b?token=SECRETT for details' };
  const waiting = await queue2.add('ensure-image', data, { delay: 3_600_000, jobId: 'secret-delayed' });
  const failed = await queue2.add('ensure-image', data, { delay: 3_600_000, jobId: 'secret-failed' });
  const done = await queue2.add('ensure-image', data, { delay: 3_600_000, jobId: 'secret-done' });
  secretIds.push(waiting.id!, failed.id!, done.id!);
  const now = Date.now();
  await conn
    .multi()
    .zrem(k2('delayed'), failed.id!, done.id!)
    .hset(k2(failed.id!), {
      failedReason: `GET https://img.example/a.qcow2?X-Amz-Signature=SECRETQ: HTTP 404 (mirror https://deploy:SECRETU@img.example/)`,
      stacktrace: JSON.stringify([`Error: GET https://img.example/a.qcow2?token=SECRETT#access_token=SECRETF failed\n    at fetchImage (fetch-image.js:1:1)`]),
      finishedOn: String(now),
      processedOn: String(now - 10),
      atm: '1',
    })
    .zadd(k2('failed'), now, failed.id!)
    .hset(k2(done.id!), { returnvalue: JSON.stringify({ outcome: 'pulled', from: 'https://img.example/a.qcow2?sig=SECRETS', note: 'https://x.example/?auth=SECRETR' }), finishedOn: String(now), processedOn: String(now - 10), atm: '1' })
    .zadd(k2('completed'), now, done.id!)
    .exec();
  await Job.addJobLog(queue2, failed.id!, `downloading ${SECRET_URL}`);
  await Job.addJobLog(queue2, failed.id!, 'retry with https://img.example/a.qcow2?X-Amz-Credential=AKIA%2FSECRETQ&X-Amz-Signature=SECRETQ');
  await queue2.upsertJobScheduler('prewarm-secret', { every: 3_600_000 }, { name: 'ensure-image', data: { image: SECRET_URL, imageDigest: qcow2Image(703).digest } });

  board = await startBoardProcess({ REDIS_URL: redis.url, ...CREDS });
  open = await startBoardProcess({ REDIS_URL: redis.url }, ['--no-auth']);
}, 120_000);

afterAll(async () => {
  await board?.stop();
  await open?.stop();
  await queue?.close();
  await queue2?.close();
  conn?.disconnect();
});

/** Every state-changing board route, with a body Bull Board would accept. */
const WRITES = (id: string): Array<[string, string, unknown]> => [
  ['POST', `/api/queues/${BQ}/add`, { name: 'ensure-image', data: { image: 'https://evil.example/x' }, options: {} }],
  ['PUT', `/api/queues/${BQ}/${id}/retry`, undefined],
  ['PUT', `/api/queues/${BQ}/retry/failed`, undefined],
  ['PUT', `/api/queues/${BQ}/${id}/clean`, undefined],
  ['PUT', `/api/queues/${BQ}/clean/delayed`, undefined],
  ['PUT', `/api/queues/${BQ}/${id}/promote`, undefined],
  ['PUT', `/api/queues/${BQ}/promote`, undefined],
  ['PATCH', `/api/queues/${BQ}/${id}/update-data`, { jobData: { image: 'https://evil.example/x' } }],
  ['PATCH', `/api/queues/${BQ}/${id}/delay`, { runAt: Date.now() }],
  ['PATCH', `/api/queues/${BQ}/${id}/priority`, { priority: 5 }],
  ['PUT', `/api/queues/${BQ}/pause`, undefined],
  ['PUT', '/api/queues/pause', undefined],
  ['PUT', `/api/queues/${BQ}/resume`, undefined],
  ['PUT', `/api/queues/${BQ}/empty`, undefined],
  ['PUT', `/api/queues/${BQ}/obliterate`, { force: true }],
  ['PUT', `/api/queues/${BQ}/concurrency`, { concurrency: 1 }],
  ['PUT', `/api/queues/${BQ}/rate-limit`, { max: 1, duration: 1000 }],
];

describe('CSRF: state-changing requests must be same-origin', () => {
  it('the classic cross-site form post to …/add (text/plain and urlencoded) gets 403, with or without cached credentials', async () => {
    const before = await state();
    for (const b of [board, open]) {
      for (const [type, body] of [
        ['text/plain', '{"name":"ensure-image","data":{"image":"https://evil.example/x"},"ignored":"='],
        ['application/x-www-form-urlencoded', 'name=ensure-image&data=x'],
      ] as const) {
        // As a browser sends it from another site: foreign Origin, Sec-Fetch-Site: cross-site.
        const r = await fetch(`${b.url}/api/queues/${BQ}/add`, {
          method: 'POST',
          headers: { ...(b === board ? AUTH : {}), 'content-type': type, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' },
          body,
        });
        expect(r.status, `${type} to ${b === board ? 'auth' : 'no-auth'} board`).toBe(403);
        expect(await r.json()).toMatchObject({ error: 'cross-site request refused' });
        // An older browser: no Origin, no Sec-Fetch-*, and of course no token.
        const bare = await fetch(`${b.url}/api/queues/${BQ}/add`, { method: 'POST', headers: { ...(b === board ? AUTH : {}), 'content-type': type }, body });
        expect(bare.status).toBe(403);
      }
    }
    expect(await state()).toEqual(before);
    expect(board.logs().some((l) => l.msg === 'board: cross-site request refused' && /foreign Origin https:\/\/evil\.example|Sec-Fetch-Site/.test(String(l.reason)))).toBe(true);
  });

  it('every write route refuses a foreign Origin, a same-site neighbour, Origin: null, and a missing or wrong token; Redis is unchanged', async () => {
    const good = await sameOrigin(board, AUTH);
    const variants: Array<[string, Record<string, string>]> = [
      ['foreign Origin (even with the token)', { ...good, origin: 'https://evil.example' }],
      ['another port on the same host (same-site)', { ...good, origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' }],
      ['Origin: null', { ...good, origin: 'null' }],
      ['no token', { ...AUTH, origin: board.url }],
      ['token without the cookie', { ...AUTH, origin: board.url, 'x-xsrf-token': good['x-xsrf-token']! }],
      ['wrong token', { ...good, 'x-xsrf-token': 'A'.repeat(43) }],
    ];
    const before = await state();
    for (const [method, path, body] of WRITES(smallId)) {
      for (const [what, headers] of variants) {
        const r = await fetch(board.url + path, { method, headers: { ...headers, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
        expect(r.status, `${method} ${path}: ${what}`).toBe(403);
      }
    }
    expect(await state()).toEqual(before);
  });

  it('the board hands out a readable SameSite=Strict XSRF-TOKEN cookie; a same-origin write with it goes through', async () => {
    const r = await fetch(`${board.url}/`, { headers: AUTH });
    const cookie = r.headers.getSetCookie().find((c) => c.startsWith('XSRF-TOKEN='))!;
    expect(cookie).toMatch(/^XSRF-TOKEN=[A-Za-z0-9_-]{43}; Path=\/; SameSite=Strict$/);
    expect(cookie).not.toMatch(/HttpOnly/i);
    const headers = { ...(await sameOrigin(board, AUTH)), 'sec-fetch-site': 'same-origin' };
    expect((await fetch(`${board.url}/api/queues/${BQ}/pause`, { method: 'PUT', headers })).status).toBe(200);
    expect(await queue.isPaused()).toBe(true);
    // A script (no Origin, no Sec-Fetch-*) that echoes the cookie is fine too.
    const { origin: _o, ...script } = await sameOrigin(board, AUTH);
    expect((await fetch(`${board.url}/api/queues/${BQ}/resume`, { method: 'PUT', headers: script })).status).toBe(200);
    expect(await queue.isPaused()).toBe(false);
  });
});

describe('--no-auth answers only to loopback Host names (DNS rebinding)', () => {
  it('421 for a foreign Host or another port; loopback names with the board\'s port are served', async () => {
    const url = `${open.url}/api/queues`;
    for (const host of ['evil.example', `evil.example:${open.port}`, `127.0.0.1.nip.io:${open.port}`, `127.0.0.1:${open.port + 1}`, '127.0.0.1', `localhost.:${open.port}`]) {
      const r = await raw(url, { headers: { host } });
      expect(r.status, host).toBe(421);
      expect(r.body).not.toContain(QUEUE);
    }
    for (const host of [`127.0.0.1:${open.port}`, `localhost:${open.port}`, `LOCALHOST:${open.port}`, `[::1]:${open.port}`]) {
      expect((await raw(url, { headers: { host } })).status, host).toBe(200);
    }
    // /healthz and the page too.
    expect((await raw(`${open.url}/healthz`, { headers: { host: `rebind.evil.example:${open.port}` } })).status).toBe(421);
    expect((await raw(`${open.url}/`, { headers: { host: `rebind.evil.example:${open.port}` } })).status).toBe(421);
  });

  it('a board with credentials serves any Host (auth is what protects it)', async () => {
    expect((await raw(`${board.url}/api/queues`, { headers: { ...AUTH, host: `board.example:${board.port}` } })).status).toBe(200);
  });
});

describe('failed logins', () => {
  it('are logged without the password, rate-limited per address with 429 + Retry-After, and the right password works after the wait', async () => {
    const b = await startBoardProcess({ REDIS_URL: redis.url, ...CREDS });
    try {
      const statuses: number[] = [];
      let retryAfter = '';
      // 40 guesses, in parallel as an attacker would.
      const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => fetch(`${b.url}/api/queues`, { headers: basic('oncall', `guess-${i}-pw`) })));
      for (const r of rs) {
        statuses.push(r.status);
        if (r.status === 429) retryAfter = r.headers.get('retry-after') ?? '';
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(30);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(retryAfter)).toBeLessThanOrEqual(10);
      // Locked out: even the right password is not checked now.
      const locked = await fetch(`${b.url}/api/queues`, { headers: AUTH });
      expect(locked.status).toBe(429);
      // A request without credentials is the browser's first step: the challenge, not a failure.
      expect((await fetch(`${b.url}/`)).status).toBe(401);

      await new Promise((r) => setTimeout(r, Number(locked.headers.get('retry-after')) * 1000 + 200));
      expect((await fetch(`${b.url}/api/queues`, { headers: AUTH })).status).toBe(200);

      await expect.poll(() => b.logs().filter((l) => l.msg === 'board: failed login').length).toBe(10);
      const failures = b.logs().filter((l) => l.msg === 'board: failed login');
      // One line per failure, bounded by the bucket; one line for the lock-out, not one per refused request.
      expect(failures[0]).toMatchObject({ user: 'oncall', client: expect.stringMatching(/127\.0\.0\.1$/), path: '/api/queues' });
      expect(b.logs().filter((l) => /too many failed logins/.test(String(l.msg)))).toHaveLength(1);
      const everything = JSON.stringify(b.logs()) + b.stderr();
      expect(everything).not.toMatch(/guess-\d+-pw/);
      expect(everything).not.toContain('right-horse-battery');
      expect(everything).not.toContain(Buffer.from('oncall:guess-1-pw').toString('base64'));
    } finally {
      await b.stop();
    }
  });
});

describe('payload size cap', () => {
  it('one page of /api/queues with 10 MB payloads stays small; each big field is marked truncated', async () => {
    const r = await fetch(`${board.url}/api/queues?activeQueue=${BQ}&status=delayed&page=1&jobsPerPage=10`, { headers: AUTH });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(Buffer.byteLength(text)).toBeLessThan(256 * 1024);
    const jobs = JSON.parse(text).queues.find((q: any) => q.name === boardName('images', HOST)).jobs as any[];
    expect(jobs).toHaveLength(10);
    const big = jobs.filter((j) => j.id.startsWith('big-'));
    expect(big.length).toBeGreaterThan(0);
    for (const j of big) {
      expect(j.data).toMatchObject({ truncated: true, bytes: expect.any(Number), preview: expect.any(String) });
      expect(j.data.bytes).toBeGreaterThan(10 * MB);
      expect(j.data.preview.length).toBeLessThanOrEqual(4096);
    }
    // Even a page as large as the server accepts stays bounded.
    const all = await fetch(`${board.url}/api/queues?activeQueue=${BQ}&status=delayed&page=1&jobsPerPage=100000`, { headers: AUTH });
    expect(all.status).toBe(200);
    const allText = await all.text();
    expect(Buffer.byteLength(allText)).toBeLessThan(512 * 1024);
    // jobsPerPage is held to the UI's maximum (300).
    expect(JSON.parse(allText).queues.find((q: any) => q.name === boardName('images', HOST)).pagination.range).toEqual({ start: 0, end: 299 });
  });

  it('the job detail is capped, and small jobs are served whole (redacted)', async () => {
    const big = (await (await fetch(`${board.url}/api/queues/${BQ}/${bigIds[0]}`, { headers: AUTH })).json()) as any;
    expect(big.job.data).toMatchObject({ truncated: true });
    const small = (await (await fetch(`${board.url}/api/queues/${BQ}/${smallId}`, { headers: AUTH })).json()) as any;
    expect(small.job.data.imageDigest).toBe(qcow2Image(700).digest);
    expect(small.job.data.image).toMatch(/^https:\/\/images\.example\/ubuntu\.qcow2\?X-Amz-Signature=(REDACTED|\*\*\*)$/);
  });

  it('logs are capped: the newest lines that fit, after a note', async () => {
    const r = await fetch(`${board.url}/api/queues/${BQ}/${smallId}/logs`, { headers: AUTH });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(Buffer.byteLength(text)).toBeLessThan(80 * 1024);
    const lines = JSON.parse(text) as string[];
    expect(lines[0]).toMatch(/^\[fleetq: \d+ earlier log lines not shown/);
    expect(lines.at(-1)).toMatch(/^line 299 y+$/);
  });
});

describe('Duplicate and Edit data are refused (their forms hold redacted data)', () => {
  it('add and update-data answer 405 with a message; the stored job and the queue are unchanged', async () => {
    const stored = await conn.hget(`fleetq:${QUEUE}:${smallId}`, 'data');
    const before = await state();
    const headers = { ...(await sameOrigin(board, AUTH)), 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' };
    // Exactly what the UI sends: the redacted data from the board, written back.
    const shown = ((await (await fetch(`${board.url}/api/queues/${BQ}/${smallId}`, { headers: AUTH })).json()) as any).job;
    const dup = await fetch(`${board.url}/api/queues/${BQ}/add`, { method: 'POST', headers, body: JSON.stringify({ name: shown.name, data: shown.data, options: shown.opts }) });
    expect(dup.status).toBe(405);
    expect(((await dup.json()) as any).message).toMatch(/fleetq jobs come from producers/);
    expect(await conn.hget(`fleetq:${QUEUE}:${smallId}`, 'data')).toBe(stored);
    expect(await state()).toEqual(before);

    const edit = await fetch(`${board.url}/api/queues/${BQ}/${smallId}/update-data`, { method: 'PATCH', headers, body: JSON.stringify({ jobData: shown.data }) });
    expect(edit.status).toBe(405);
    expect(((await edit.json()) as any).message).toMatch(/does not add jobs or edit job data/);
    expect(await conn.hget(`fleetq:${QUEUE}:${smallId}`, 'data')).toBe(stored);
    expect(JSON.parse(stored!).image).toBe('https://images.example/ubuntu.qcow2?X-Amz-Signature=s3cr3tsig');
    expect(await state()).toEqual(before);
  });
});

describe('secrets', () => {
  it('no GET route of the API, nor the pages, shows a secret from job data, failed reasons, stacks, logs, return values or scheduler templates', async () => {
    const schedulers = (await (await fetch(`${board.url}/api/job-schedulers`, { headers: AUTH })).json()) as any;
    const schedulerJobs = ((await queue2.getJobs(['delayed'])) as Job[]).filter((j) => j?.repeatJobKey).map((j) => j.id!);
    const paths = [
      '/',
      `/queue/${BQ2}`,
      '/api/queues',
      '/api/job-schedulers',
      `/api/job-schedulers?queueName=${BQ2}`,
      '/api/redis/stats',
      ...['latest', 'waiting', 'delayed', 'failed', 'completed', 'active', 'paused', 'prioritized', 'waiting-children'].map((st) => `/api/queues?activeQueue=${BQ2}&status=${st}&page=1&jobsPerPage=50`),
      ...['metrics', 'workers', 'rate-limit', 'default-job-options', 'job-data-schema'].map((r) => `/api/queues/${BQ2}/${r}`),
      ...[...secretIds, ...schedulerJobs].flatMap((id) => [`/api/queues/${BQ2}/${id}`, `/api/queues/${BQ2}/${id}/logs`, `/api/queues/${BQ2}/${id}/flow`, `/queue/${BQ2}/${id}`]),
    ];
    const seen: string[] = [];
    for (const path of paths) {
      const r = await fetch(board.url + path, { headers: AUTH });
      expect(r.status, path).toBeLessThan(500);
      const text = await r.text();
      seen.push(text);
      for (const secret of SECRETS) expect(text, `${path} shows ${secret}`).not.toContain(secret);
    }
    // The walk did see the fields (redacted), not empty answers.
    const all = seen.join('\n');
    expect(schedulers.schedulers.some((x: any) => x.key === 'prewarm-secret' || x.id === 'prewarm-secret')).toBe(true);
    expect(all).toContain('img.example/a.qcow2');
    expect(all).toMatch(/HTTP 404/);
    expect(all).toMatch(/downloading https:\/\/REDACTED@img\.example/);
    expect(all).toContain('"outcome":"pulled"');
  });
});

describe('response headers', () => {
  it('the page: a CSP that allows no other origin, no framing, no sniffing', async () => {
    const r = await fetch(`${board.url}/`, { headers: AUTH });
    const csp = r.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/https?:|\*/);
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await r.text();
    expect(html).not.toMatch(/fonts\.googleapis|gstatic|https?:\/\//);
    expect(html).toMatch(/static\/js\/main\.[0-9a-f]+\.js/);
  });
});
