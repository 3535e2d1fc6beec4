/**
 * SSRF guard end to end: real worker processes (own redis-server, loopback
 * HTTP servers) and, in-process, the dispatcher of createHttpClient observed
 * through undici's diagnostics channels and a net.Socket#connect spy.
 *
 * Worker "allow":  FLEETQ_IMAGE_ALLOW=http://127.0.0.1:<A>        (one origin)
 * Worker "open":   FLEETQ_IMAGE_ALLOW=127.0.0.0/8,169.254.0.0/16  (the list allows loopback and
 *                  even link-local: the always-refused rules must still win)
 */
import { spawn } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseDestinationPolicy } from '../../src/fetch/destination-policy.js';
import { DestinationRefusedError, RedirectError } from '../../src/fetch/fetch-errors.js';
import { createHttpClient } from '../../src/fetch/http-client.js';
import { freePort } from '../../src/lib/free-port.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { BIN, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const ALLOW_HOST = 'h-dest-allow';
const OPEN_HOST = 'h-dest-open';
const redis = useTestRedis();

/** A loopback HTTP server that must never be reached: counts TCP connections and requests, records headers. */
interface Sentinel {
  server: Server;
  port: number;
  connections: number;
  requests: Array<{ url: string; headers: IncomingHttpHeaders }>;
  url(path: string): string;
}
async function startSentinel(body = Buffer.from('sentinel body')): Promise<Sentinel> {
  const s: Sentinel = {
    server: createServer((req, res) => {
      s.requests.push({ url: req.url ?? '', headers: req.headers });
      res.writeHead(200, { 'content-length': body.length }).end(body);
    }),
    port: 0,
    connections: 0,
    requests: [],
    url: (path) => `http://127.0.0.1:${s.port}${path}`,
  };
  s.server.on('connection', () => s.connections++);
  await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', r));
  s.port = (s.server.address() as AddressInfo).port;
  return s;
}

let upstream: Upstream; // port A
let sentinel: Sentinel; // port B: another loopback port
let closedPort: number; // nothing listens here
let root: string;
let allowWorker: WorkerProcess;
let openWorker: WorkerProcess;
let qAllow: QueueClient;
let qOpen: QueueClient;
let probe: Redis;
let n = 1;

beforeAll(async () => {
  upstream = await startUpstream();
  sentinel = await startSentinel();
  closedPort = await freePort();
  root = tempRoot();
  const common = { REDIS_URL: redis.url, FLEETQ_ROOT: root, FLEETQ_DOWNLOAD_IDLE_TIMEOUT: '2s' };
  [allowWorker, openWorker] = await Promise.all([
    startWorkerProcess({ ...common, FLEETQ_HOST: ALLOW_HOST, FLEETQ_IMAGE_ALLOW: `http://127.0.0.1:${upstream.port}` }),
    startWorkerProcess({ ...common, FLEETQ_HOST: OPEN_HOST, FLEETQ_IMAGE_ALLOW: '127.0.0.0/8,169.254.0.0/16' }),
  ]);
  [qAllow, qOpen] = await Promise.all([queueClient(redis.url, imageQueueName(ALLOW_HOST)), queueClient(redis.url, imageQueueName(OPEN_HOST))]);
  probe = new Redis(redis.url, { maxRetriesPerRequest: null });
});

afterAll(async () => {
  probe?.disconnect();
  await qAllow?.close();
  await qOpen?.close();
  const codes = await Promise.all([allowWorker?.stop(), openWorker?.stop()]);
  expect(codes).toEqual([0, 0]);
  await upstream?.stop();
  await new Promise((r) => sentinel?.server.close(r));
  removeRoot(root);
});

async function runJob(q: QueueClient, host: string, url: string, imageDigest?: string) {
  const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest }, { host, attempts: 3, backoffMs: 50 });
  return { jobId, ...(await q.settle(jobId)) };
}

/** The worker's own "ensure-image failed" log line for a job: its error code and permanence. */
async function failureLog(w: WorkerProcess, jobId: string) {
  const l = await w.waitForLog((x) => x.msg === 'ensure-image failed' && x.jobId === jobId);
  return { code: l.code, permanent: l.permanent };
}

async function redisConnectionsReceived(): Promise<number> {
  const info = await probe.info('stats');
  return Number(/total_connections_received:(\d+)/.exec(info)![1]);
}

describe('FLEETQ_IMAGE_ALLOW=http://127.0.0.1:<A>', () => {
  it('(1a) an image on the allowed origin is pulled', async () => {
    const img = qcow2Image(n++);
    const url = upstream.serve('/allowed/image', img.body);
    const r = await runJob(qAllow, ALLOW_HOST, url, img.digest);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(storeState(root).index[url]).toBe(img.digest);
  });

  it('(1b) a redirect from A to another loopback port B is refused permanently; B sees no connection at all', async () => {
    const before = { conns: sentinel.connections, reqs: sentinel.requests.length };
    const url = upstream.serve('/allowed/redirects-away', Buffer.alloc(8), { faults: [{ kind: 'redirect', to: sentinel.url('/elsewhere') }] });
    const r = await runJob(qAllow, ALLOW_HOST, url);
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toBe(`destination refused by policy: 127.0.0.1:${sentinel.port} (not in the image allow-list) (FLEETQ_IMAGE_ALLOW)`);
    expect(await failureLog(allowWorker, r.jobId)).toEqual({ code: 'E_DESTINATION_REFUSED', permanent: true });
    expect(upstream.gets('/allowed/redirects-away')).toBe(1);
    expect(sentinel.connections).toBe(before.conns);
    expect(sentinel.requests.length).toBe(before.reqs);
  });

  it('(6) a refused open port and a refused closed port give the same message, apart from the port', async () => {
    const open = await runJob(qAllow, ALLOW_HOST, sentinel.url('/probe'));
    const closed = await runJob(qAllow, ALLOW_HOST, `http://127.0.0.1:${closedPort}/probe`);
    for (const r of [open, closed]) {
      expect(r.state).toBe('failed');
      expect(r.attemptsMade).toBe(1);
    }
    const shape = (s: string | undefined, port: number) => s!.replaceAll(String(port), '<port>');
    expect(shape(open.failedReason, sentinel.port)).toBe('destination refused by policy: 127.0.0.1:<port> (not in the image allow-list) (FLEETQ_IMAGE_ALLOW)');
    expect(shape(closed.failedReason, closedPort)).toBe(shape(open.failedReason, sentinel.port));
    expect(await failureLog(allowWorker, open.jobId)).toEqual(await failureLog(allowWorker, closed.jobId));
    expect(sentinel.requests.filter((q) => q.url === '/probe')).toEqual([]);
  });
});

describe('always refused, even when the allow list covers it', () => {
  it("(2) fleetq's own Redis (and its loopback aliases) → refused permanently, Redis gets no connection", async () => {
    const port = redis.server.port;
    const before = await redisConnectionsReceived();
    const urls = [`http://127.0.0.1:${port}/x`, `http://localhost:${port}/x`, `http://127.0.0.2:${port}/x`, `http://[::1]:${port}/x`];
    const results = [];
    for (const url of urls) results.push(await runJob(qOpen, OPEN_HOST, url));
    const after = await redisConnectionsReceived();
    expect(results.map((r) => [r.state, r.attemptsMade])).toEqual(urls.map(() => ['failed', 1]));
    expect(results.map((r) => r.failedReason)).toEqual([
      `destination refused by policy: 127.0.0.1:${port} (fleetq's own Redis)`,
      expect.stringMatching(new RegExp(`^destination refused by policy: localhost:${port} via (127\\.0\\.0\\.1|::1) \\(fleetq's own Redis\\)$`)),
      `destination refused by policy: 127.0.0.2:${port} (fleetq's own Redis)`,
      `destination refused by policy: [::1]:${port} (fleetq's own Redis)`,
    ]);
    expect(await failureLog(openWorker, results[0]!.jobId)).toEqual({ code: 'E_DESTINATION_REFUSED', permanent: true });
    expect(after).toBe(before);
  });

  it('(5a) the metadata address → refused permanently by the worker', async () => {
    const r = await runJob(qOpen, OPEN_HOST, 'http://169.254.169.254/latest/meta-data');
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toBe('destination refused by policy: 169.254.169.254:80 (link-local/metadata address)');
  });
});

describe('redirects', () => {
  it('(3) a redirect to file:///etc/passwd → permanent E_REDIRECT', async () => {
    const url = upstream.serve('/redir/file', Buffer.alloc(8), { faults: [{ kind: 'redirect', to: 'file:///etc/passwd' }] });
    const r = await runJob(qOpen, OPEN_HOST, url);
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toBe(`${url} redirected (HTTP 302) to file:///etc/passwd: only http: and https: redirects are followed`);
    expect(await failureLog(openWorker, r.jobId)).toEqual({ code: 'E_REDIRECT', permanent: true });
  });

  it('(4) a redirect loop → permanent E_REDIRECT', async () => {
    const a = upstream.url('/redir/loop-a');
    const b = upstream.url('/redir/loop-b');
    const loop = { faults: [{ kind: 'redirect' as const, to: b }, { kind: 'redirect' as const, to: b }, { kind: 'redirect' as const, to: b }] };
    upstream.serve('/redir/loop-a', Buffer.alloc(8), loop);
    upstream.serve('/redir/loop-b', Buffer.alloc(8), { faults: loop.faults.map(() => ({ kind: 'redirect' as const, to: '/redir/loop-a' })) });
    const r = await runJob(qOpen, OPEN_HOST, a);
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toBe(`redirect loop: ${b} redirected (HTTP 302) back to ${a}`);
    expect(await failureLog(openWorker, r.jobId)).toEqual({ code: 'E_REDIRECT', permanent: true });
  });

  it('(4b) more than FLEETQ_MAX_REDIRECTS (5) hops → permanent E_REDIRECT; 5 relative hops still work', async () => {
    const img = qcow2Image(n++);
    // /chain/k/0 → 1 → … → 5 (the image): five hops, relative Locations.
    for (let i = 0; i < 5; i++) upstream.serve(`/chain/ok/${i}`, Buffer.alloc(8), { faults: [{ kind: 'redirect', to: `${i + 1}` }] });
    upstream.serve('/chain/ok/5', img.body);
    const ok = await runJob(qOpen, OPEN_HOST, upstream.url('/chain/ok/0'), img.digest);
    expect(ok.state).toBe('completed');
    expect(ok.value).toMatchObject({ outcome: 'pulled', digest: img.digest });

    for (let i = 0; i < 6; i++) upstream.serve(`/chain/long/${i}`, Buffer.alloc(8), { faults: [{ kind: 'redirect', to: `${i + 1}` }] });
    upstream.serve('/chain/long/6', img.body);
    const r = await runJob(qOpen, OPEN_HOST, upstream.url('/chain/long/0'));
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/^too many redirects: .*\/chain\/long\/0 still redirects after 5 hops, the limit \(next: .*\/chain\/long\/6\) \(FLEETQ_MAX_REDIRECTS\)$/);
    expect(upstream.gets('/chain/long/6')).toBe(0);
  });
});

describe('a bad FLEETQ_IMAGE_ALLOW entry stops the worker at start', () => {
  it('exits 2 naming the variable and the entry (and does not hang on open connections)', async () => {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL') env[k] = v;
    Object.assign(env, { REDIS_URL: redis.url, FLEETQ_HOST: 'h-dest-bad', FLEETQ_ROOT: root, FLEETQ_IMAGE_ALLOW: '10.0.0.0/8,ftp://mirror.example' });
    const proc = spawn(process.execPath, [BIN, 'worker'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    try {
      const [code, signal] = (await once(proc, 'close')) as [number | null, NodeJS.Signals | null];
      expect({ code, signal }).toEqual({ code: 2, signal: null });
      expect(stderr).toContain('invalid image allow-list entry "ftp://mirror.example": scheme ftp: is not http: or https:');
      // fetch/ names the setting; the CLI names its variable.
      expect(stderr).toMatch(/^fleetq: invalid image allow-list entry .* \(FLEETQ_IMAGE_ALLOW\)$/m);
    } finally {
      clearTimeout(timer);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });
});

describe('in-process: the dispatcher decides before any socket exists', () => {
  const policy = () => parseDestinationPolicy('127.0.0.0/8,169.254.0.0/16,fe80::/10,fd00::/8', { redisUrl: redis.url });

  it('(5b) metadata destinations: no net.Socket#connect, no undici:client:connected, a connectError carrying the refusal', async () => {
    const dispatcher = createHttpClient({
      idleTimeoutMs: 2000,
      maxRedirects: 5,
      policy: policy(),
      // A name that resolves to the metadata address (DNS rebinding): refused on the address.
      lookup: async (name) => (name === 'metadata.test' ? [{ address: '169.254.169.254', family: 4 }] : []),
    });
    const events: Array<{ channel: string; hostname: string; port: string; error?: unknown }> = [];
    const subs = (['undici:client:beforeConnect', 'undici:client:connected', 'undici:client:connectError'] as const).map((channel) => {
      const fn = (m: unknown) => {
        const { connectParams, error } = m as { connectParams: { hostname: string; port: string }; error?: unknown };
        events.push({ channel, hostname: connectParams.hostname, port: connectParams.port, error });
      };
      diagnosticsChannel.subscribe(channel, fn);
      return () => diagnosticsChannel.unsubscribe(channel, fn);
    });
    const connect = vi.spyOn(net.Socket.prototype, 'connect');
    try {
      const urls = ['http://169.254.169.254/latest/meta-data', 'http://[fd00:ec2::254]/latest/meta-data', 'http://metadata.test/computeMetadata/v1/'];
      const errors = [];
      for (const url of urls) errors.push(await request(url, { dispatcher }).catch((e: unknown) => e));
      expect(errors.map((e) => (e as Error).message)).toEqual([
        'destination refused by policy: 169.254.169.254:80 (link-local/metadata address)',
        'destination refused by policy: [fd00:ec2::254]:80 (link-local/metadata address)',
        'destination refused by policy: metadata.test:80 via 169.254.169.254 (link-local/metadata address)',
      ]);
      for (const e of errors) expect(e).toBeInstanceOf(DestinationRefusedError);
      expect(connect).not.toHaveBeenCalled();
      expect(events.filter((e) => e.channel === 'undici:client:connected')).toEqual([]);
      expect(events.filter((e) => e.channel === 'undici:client:connectError').map((e) => e.error)).toEqual(errors);

      // Control: the same spies do see an allowed connection.
      const img = upstream.serve('/inproc/ok', Buffer.from('ok body'));
      const res = await request(img, { dispatcher });
      expect(await res.body.text()).toBe('ok body');
      expect(connect).toHaveBeenCalled();
      expect(events.filter((e) => e.channel === 'undici:client:connected').map((e) => `${e.hostname}:${e.port}`)).toEqual([`127.0.0.1:${upstream.port}`]);
    } finally {
      connect.mockRestore();
      for (const off of subs) off();
      await dispatcher.close();
    }
  });

  it('a refused redirect hop opens no socket to the target either', async () => {
    const dispatcher = createHttpClient({ idleTimeoutMs: 2000, maxRedirects: 5, policy: policy() });
    const url = upstream.serve('/inproc/to-redis', Buffer.alloc(8), { faults: [{ kind: 'redirect', to: `http://127.0.0.1:${redis.server.port}/` }] });
    const connect = vi.spyOn(net.Socket.prototype, 'connect');
    try {
      const err = await request(url, { dispatcher }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DestinationRefusedError);
      expect((err as Error).message).toBe(`destination refused by policy: 127.0.0.1:${redis.server.port} (fleetq's own Redis)`);
      const targets = connect.mock.calls.map((c) => JSON.stringify(c[0]));
      expect(targets.some((t) => t.includes(String(redis.server.port)))).toBe(false);
    } finally {
      connect.mockRestore();
      await dispatcher.close();
    }
  });

  it('credentials and cookies are not forwarded to another origin; same-origin and relative hops keep working', async () => {
    const dispatcher = createHttpClient({ idleTimeoutMs: 2000, maxRedirects: 5, policy: policy() });
    try {
      const before = sentinel.requests.length;
      const cross = upstream.serve('/inproc/cross', Buffer.alloc(8), { faults: [{ kind: 'redirect', to: sentinel.url('/landed') }] });
      const res = await request(cross, { dispatcher, headers: { authorization: 'Bearer s3cret', cookie: 'sid=1', 'x-keep': 'yes' } });
      expect(await res.body.text()).toBe('sentinel body');
      const landed = sentinel.requests.slice(before);
      expect(landed.map((r) => r.url)).toEqual(['/landed']);
      expect(landed[0]!.headers.authorization).toBeUndefined();
      expect(landed[0]!.headers.cookie).toBeUndefined();
      expect(landed[0]!.headers['x-keep']).toBe('yes');
      expect(landed[0]!.headers.host).toBe(`127.0.0.1:${sentinel.port}`);

      // A relative, same-origin hop keeps the credentials and resolves against the current URL.
      const rel = createServer((req, res2) => {
        if (req.url === '/start') res2.writeHead(301, { location: 'next?q=1' }).end();
        else res2.writeHead(200).end(JSON.stringify({ url: req.url, auth: req.headers.authorization ?? null }));
      });
      await new Promise<void>((r) => rel.listen(0, '127.0.0.1', r));
      const port = (rel.address() as AddressInfo).port;
      const res2 = await request(`http://127.0.0.1:${port}/start`, { dispatcher, headers: { authorization: 'Bearer s3cret' } });
      expect(await res2.body.json()).toEqual({ url: '/next?q=1', auth: 'Bearer s3cret' });
      rel.closeAllConnections();
      await new Promise((r) => rel.close(r));
    } finally {
      await dispatcher.close();
    }
  });

  it('maxRedirects 0: any redirect is a permanent RedirectError, not a retryable HTTP 302', async () => {
    const dispatcher = createHttpClient({ idleTimeoutMs: 2000, maxRedirects: 0, policy: policy() });
    try {
      const url = upstream.serve('/inproc/zero', Buffer.alloc(8), { faults: [{ kind: 'redirect', to: '/inproc/target' }] });
      const err = await request(url, { dispatcher }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RedirectError);
      expect(err).toMatchObject({ code: 'E_REDIRECT', permanent: true });
      expect((err as Error).message).toMatch(/too many redirects: .* still redirects after 0 hops, the limit \(next: /);
      expect(err).toMatchObject({ settings: ['maxRedirects'] });
    } finally {
      await dispatcher.close();
    }
  });
});
