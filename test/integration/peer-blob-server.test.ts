/**
 * The peer blob server (src/peer/) against a real store directory on
 * loopback: token, strict paths (no traversal, no listing, nothing outside
 * blobs/), Range, HEAD, the shared rate limit; and a real worker process
 * that serves a blob it pulled and advertises its address in the registry.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { type ClientRequest, request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Digest } from '../../src/lib/digest.js';
import { freePort } from '../../src/lib/free-port.js';
import { type BlobSource, committedBlobs } from '../../src/peer/blob-source.js';
import { type BlobServer, BUSY_RETRY_AFTER_S, RATE_BURST, startBlobServer } from '../../src/peer/blob-server.js';
import { InProgressDownloads } from '../../src/peer/in-progress.js';
import { startPeerServer } from '../../src/peer/start-peer.js';
import { imageQueueName } from '../../src/queues/names.js';
import { registryKeys } from '../../src/registry/keys.js';
import { storePaths } from '../../src/store/paths.js';
import { digestOf, qcow2Image, rawImage, type TestImage } from '../helpers/images.js';
import { queueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { plantBlob, removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';
import { startWorkerProcess } from '../helpers/worker-process.js';

const TOKEN = 'peer-token-0123456789abcdef';
const log = pino({ level: 'silent' });

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A raw request: the path goes on the wire exactly as given (no URL normalisation). */
function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', token: string | null = TOKEN): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('peer blob server', () => {
  let root: string;
  let img: TestImage;
  let server: BlobServer;
  const opened: string[] = [];

  beforeAll(async () => {
    root = tempRoot();
    img = rawImage(300_000);
    plantBlob(root, img.hex, img.body);
    const paths = storePaths(root);
    mkdirSync(paths.db, { recursive: true });
    writeFileSync(paths.index, '{"images":{"secret":{}}}');
    const inner = committedBlobs(paths);
    // Every lookup the server makes in the store (to show invalid paths never reach it).
    const source: BlobSource = { open: (d) => (opened.push(d.value), inner.open(d)) };
    server = await startBlobServer({ host: '127.0.0.1', port: 0, token: TOKEN, maxRate: 1024 ** 3, maxStreams: 8, source, log });
  });
  afterAll(async () => {
    await server?.close();
    removeRoot(root);
  });

  it('401 with WWW-Authenticate without a token, with a wrong one, or another scheme; no store lookup', async () => {
    const before = opened.length;
    for (const r of [
      await get(server.port, `/blobs/${img.digest}`, {}, 'GET', null),
      await get(server.port, `/blobs/${img.digest}`, {}, 'GET', 'peer-token-0123456789abcdeX'),
      await get(server.port, `/blobs/${img.digest}`, {}, 'GET', ''),
      await get(server.port, `/blobs/${img.digest}`, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, 'GET', null),
    ]) {
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toMatch(/^Bearer /);
      expect(r.body.length).toBe(0);
    }
    expect(opened.length).toBe(before);
  });

  it('200 with the whole blob: Content-Length, Accept-Ranges, and the sha256 of the body is the digest', async () => {
    const r = await get(server.port, `/blobs/${img.digest}`);
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(img.body.length));
    expect(r.headers['accept-ranges']).toBe('bytes');
    expect(sha(r.body)).toBe(img.digest);
  });

  it('HEAD: the headers of a GET, no body', async () => {
    const r = await get(server.port, `/blobs/${img.digest}`, {}, 'HEAD');
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(img.body.length));
    expect(r.body.length).toBe(0);
  });

  it('Range: exact slices (a-b, a-, suffix -n, end past the size) with Content-Range; 416 when unsatisfiable', async () => {
    const n = img.body.length;
    const cases: Array<[string, number, number]> = [
      ['bytes=0-0', 0, 0],
      ['bytes=100-65635', 100, 65635],
      ['bytes=299990-', 299990, n - 1],
      ['bytes=-1000', n - 1000, n - 1],
      ['bytes=-999999', 0, n - 1],
      ['bytes=12345-99999999', 12345, n - 1],
    ];
    for (const [range, start, end] of cases) {
      const r = await get(server.port, `/blobs/${img.digest}`, { range });
      expect(r.status, range).toBe(206);
      expect(r.headers['content-range'], range).toBe(`bytes ${start}-${end}/${n}`);
      expect(r.headers['content-length'], range).toBe(String(end - start + 1));
      expect(r.body.equals(img.body.subarray(start, end + 1)), range).toBe(true);
    }
    for (const range of [`bytes=${n}-`, `bytes=${n + 5}-${n + 10}`, 'bytes=-0']) {
      const r = await get(server.port, `/blobs/${img.digest}`, { range });
      expect(r.status, range).toBe(416);
      expect(r.headers['content-range'], range).toBe(`bytes */${n}`);
    }
    // Not a single bytes range: ignored, the whole blob.
    const multi = await get(server.port, `/blobs/${img.digest}`, { range: 'bytes=0-1,5-6' });
    expect(multi.status).toBe(200);
    expect(sha(multi.body)).toBe(img.digest);
  });

  it('serves nothing but /blobs/sha256:<hex>: traversal, encodings, file names, the index and listings are 404 without a store lookup', async () => {
    const before = opened.length;
    const paths = [
      '/blobs/sha256:../..',
      '/blobs/sha256:../../db/images.json',
      '/blobs/..%2f..%2fdb%2fimages.json',
      '/blobs/%2e%2e/%2e%2e/db/images.json',
      `/blobs/sha256:${img.hex}/../../db/images.json`,
      `/blobs/${img.hex}.qcow2`,
      `/blobs/${img.hex}`,
      `/blobs/sha256:${img.hex.toUpperCase()}`,
      `/blobs/sha256:${img.hex}?x=1`,
      `/blobs/sha256:${img.hex}/`,
      `/blobs//sha256:${img.hex}`,
      `//blobs/sha256:${img.hex}`,
      '/db/images.json',
      '/cloudimg/db/images.json',
      '/blobs/',
      '/blobs',
      '/',
      '/index.html',
    ];
    for (const p of paths) {
      const r = await get(server.port, p);
      expect(r.status, p).toBe(404);
      expect(r.body.length, p).toBe(0);
    }
    expect(opened.length).toBe(before);
  });

  it('a digest that is not a committed blob is 404: absent, or only a .tmp-*/pull-* file in the store, or a symlink', async () => {
    const paths = storePaths(root);
    const tmp = rawImage(1000);
    mkdirSync(paths.temp, { recursive: true });
    writeFileSync(join(paths.temp, `.tmp-${tmp.hex}.qcow2`), tmp.body);
    writeFileSync(join(paths.temp, `pull-${tmp.hex}.img`), tmp.body);
    writeFileSync(join(paths.blobs, `.tmp-${tmp.hex}.qcow2`), tmp.body);
    expect((await get(server.port, `/blobs/${tmp.digest}`)).status).toBe(404);
    const absent = rawImage(1001);
    expect((await get(server.port, `/blobs/${absent.digest}`)).status).toBe(404);
    const { symlinkSync } = await import('node:fs');
    const linked = rawImage(1002);
    writeFileSync(join(root, 'outside.img'), linked.body);
    symlinkSync(join(root, 'outside.img'), join(paths.blobs, `${linked.hex}.qcow2`));
    expect((await get(server.port, `/blobs/${linked.digest}`)).status).toBe(404);
    expect(opened).toContain(linked.digest); // looked up (a valid digest), refused by the store
  });

  it('other methods are refused (405) and serve nothing', async () => {
    const r = await get(server.port, `/blobs/${img.digest}`, {}, 'POST');
    expect(r.status).toBe(405);
    expect(r.body.length).toBe(0);
  });
});

describe('peer blob server rate limit', () => {
  it('all responses together stay under FLEETQ_PEER_MAX_RATE: elapsed >= (bytes - burst) / rate', async () => {
    const root = tempRoot();
    const rate = 1024 * 1024;
    const a = rawImage(1024 * 1024);
    const b = rawImage(768 * 1024);
    plantBlob(root, a.hex, a.body);
    plantBlob(root, b.hex, b.body);
    const server = await startBlobServer({ host: '127.0.0.1', port: 0, token: TOKEN, maxRate: rate, maxStreams: 3, source: committedBlobs(storePaths(root)), log });
    try {
      const t0 = performance.now();
      const [ra, rb, rc] = await Promise.all([get(server.port, `/blobs/${a.digest}`), get(server.port, `/blobs/${b.digest}`), get(server.port, `/blobs/${a.digest}`, { range: 'bytes=-262144' })]);
      const elapsed = performance.now() - t0;
      expect(sha(ra.body)).toBe(a.digest);
      expect(sha(rb.body)).toBe(b.digest);
      expect(rc.body.equals(a.body.subarray(a.body.length - 262144))).toBe(true);
      const bytes = ra.body.length + rb.body.length + rc.body.length;
      expect(server.bytesServed()).toBe(bytes);
      expect(elapsed).toBeGreaterThanOrEqual(((bytes - RATE_BURST) / rate) * 1000);
    } finally {
      await server.close();
      removeRoot(root);
    }
  });
});

describe('peer blob server stream limit (FLEETQ_PEER_MAX_STREAMS)', () => {
  it('beyond maxStreams a GET is answered 503 busy with Retry-After and a reason (no store lookup); HEAD still answers; the slot comes back when the receiver goes away, and the turned-away digest is reported freed', async () => {
    const root = tempRoot();
    const img = rawImage(512 * 1024);
    const file = join(root, 'in-progress.bin');
    writeFileSync(file, img.body);
    const downloads = new InProgressDownloads();
    const dl = downloads.start(Digest.parse(img.digest), img.body.length, await open(file, 'r'))!;
    // Half of it "written": a GET gets that half and is then held open, waiting for more (it keeps its slot).
    dl.advance(img.body.length / 2);
    const inner = downloads.source();
    let lookups = 0;
    const source: BlobSource = { open: (d) => (lookups++, inner.open(d)) };
    const loads: number[] = [];
    const freed: string[] = [];
    const server = await startBlobServer({ host: '127.0.0.1', port: 0, token: TOKEN, maxRate: 1024 ** 3, maxStreams: 1, source, log, onLoad: (n) => loads.push(n), onFreed: (d) => freed.push(d.value) });
    try {
      // The first GET: headers and the written half arrive, the response stays open.
      const first = await new Promise<{ req: ClientRequest; got: () => number }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: server.port, path: `/blobs/${img.digest}`, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
          expect(res.statusCode).toBe(200);
          let n = 0;
          res.on('data', (c: Buffer) => {
            n += c.length;
            if (n === img.body.length / 2) resolve({ req, got: () => n });
          });
          res.on('error', () => {});
        });
        req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
        req.end();
      });
      expect(server.streams()).toBe(1);
      expect(lookups).toBe(1);

      const busy = await get(server.port, `/blobs/${img.digest}`);
      expect(busy.status).toBe(503);
      expect(busy.headers['retry-after']).toBe(String(BUSY_RETRY_AFTER_S));
      expect(busy.body.toString()).toMatch(/^busy: .*at most 1 blob response at once \(FLEETQ_PEER_MAX_STREAMS\)/);
      expect(lookups).toBe(1); // turned away before any file is touched
      // HEAD sends no body: it takes no slot and is answered while the slot is taken.
      const head = await get(server.port, `/blobs/${img.digest}`, {}, 'HEAD');
      expect([head.status, head.headers['content-length']]).toEqual([200, String(img.body.length)]);
      expect(server.busyAnswers()).toBe(1);
      expect(freed).toEqual([]);

      // The receiver goes away mid-body: the slot is given back, and the digest someone was turned away for is reported.
      first.req.destroy();
      await waitFor('the slot given back', () => server.streams() === 0);
      expect(freed).toEqual([img.digest]);
      expect(first.got()).toBe(img.body.length / 2);

      // Free again: the next GET streams (every byte written by now).
      dl.advance(img.body.length);
      const again = await get(server.port, `/blobs/${img.digest}`);
      dl.complete();
      expect(again.status).toBe(200);
      expect(sha(again.body)).toBe(img.digest);
      expect(server.streams()).toBe(0);
      expect(server.peakStreams()).toBe(1);
      expect(server.busyAnswers()).toBe(1);
      // Reported load: 1 (first), 0 (gone), 1, 0 (again): never above the limit, back to 0.
      expect(loads).toEqual([1, 0, 1, 0]);
    } finally {
      await server.close();
      removeRoot(root);
    }
  });
});

describe('peer blob server over TLS', () => {
  it('serves HTTPS with the configured certificate and key (startPeerServer), still behind the token', async () => {
    const root = tempRoot();
    const cert = join(root, 'cert.pem');
    const key = join(root, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const img = rawImage(70_000);
    plantBlob(root, img.hex, img.body);
    const peer = await startPeerServer(
      { peerListen: { host: '127.0.0.1', port: 0 }, peerAdvertise: undefined, peerToken: TOKEN, peerTokenFile: undefined, peerMaxRate: 1024 ** 3, peerMaxStreams: 2, peerTlsCert: cert, peerTlsKey: key },
      storePaths(root),
      log,
    );
    try {
      expect(peer.advertisedUrl).toBe(`https://127.0.0.1:${peer.server.port}`);
      const ca = readFileSync(cert);
      const fetchTls = (auth: boolean) =>
        new Promise<Reply>((resolve, reject) => {
          const req = httpsRequest(`${peer.advertisedUrl}/blobs/${img.digest}`, { ca, headers: auth ? { authorization: `Bearer ${TOKEN}` } : {} }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
          });
          req.on('error', reject);
          req.end();
        });
      const ok = await fetchTls(true);
      expect(ok.status).toBe(200);
      expect(sha(ok.body)).toBe(img.digest);
      expect((await fetchTls(false)).status).toBe(401);
      // Plain HTTP to the TLS port gets no blob.
      await expect(get(peer.server.port, `/blobs/${img.digest}`)).rejects.toThrow();
    } finally {
      await peer.close();
      removeRoot(root);
    }
  });
});

describe('worker with FLEETQ_PEER_LISTEN', () => {
  const redis = useTestRedis();

  it('serves a blob it pulled, to the token only, and advertises its address in the host registry', async () => {
    const upstream = await startUpstream();
    const root = tempRoot();
    const host = 'h-peer';
    const port = await freePort();
    // A qcow2 v3 body is committed as it is (a raw one is converted: its blob is not the body, see docs/ARCHITECTURE.md).
    const img = qcow2Image(64);
    const url = upstream.serve('/peer.qcow2', img.body);
    const q = await queueClient(redis.url, imageQueueName(host));
    const w = await startWorkerProcess({
      REDIS_URL: redis.url,
      FLEETQ_HOST: host,
      FLEETQ_ROOT: root,
      FLEETQ_PEER_LISTEN: `127.0.0.1:${port}`,
      FLEETQ_PEER_ADVERTISE: `peer-h.example.test:${port}`,
      FLEETQ_PEER_TOKEN: TOKEN,
    });
    try {
      await w.waitForLog((l) => l.msg === 'worker started');
      expect((await get(port, `/blobs/${img.digest}`)).status).toBe(404);
      const job = await q.queue.add('ensure-image', { image: url, imageDigest: img.digest });
      expect((await q.settle(job.id!, 30_000)).value).toMatchObject({ outcome: 'pulled', digest: img.digest });
      const r = await get(port, `/blobs/${img.digest}`);
      expect(r.status).toBe(200);
      expect(digestOf(r.body)).toBe(img.digest);
      expect((await get(port, `/blobs/${img.digest}`, {}, 'GET', null)).status).toBe(401);

      const admin = new Redis(redis.url);
      const records = Object.values(await admin.hgetall(registryKeys('fleetq').host(host))).map((v) => JSON.parse(v));
      admin.disconnect();
      expect(records.map((x) => x.peerUrl)).toEqual([`http://peer-h.example.test:${port}`]);
      // The token never reaches the logs.
      expect(JSON.stringify(w.logs)).not.toContain(TOKEN);
      expect(w.stderr).not.toContain(TOKEN);
      expect(await w.stop()).toBe(0);
      // Closed on shutdown.
      await expect(get(port, `/blobs/${img.digest}`)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await w.kill();
      await q.close();
      await upstream.stop();
      removeRoot(root);
    }
  });
});

