/**
 * Peers first, upstream at most K times (issue 13), with real worker
 * processes on loopback: each with its own root, host id, peer port and
 * metrics port, one redis-server, one upstream that counts its GETs. Fake
 * peers are loopback servers registered as holders in Redis the way a worker
 * registers itself.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { Semaphore } from 'redis-semaphore';
import { Agent } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fetchImage } from '../../src/fetch/fetch-image.js';
import { Digest } from '../../src/lib/digest.js';
import { backToSourceKey } from '../../src/lock/keys.js';
import { freePort } from '../../src/lib/free-port.js';
import { addHolder, holderKeys, type HolderEntry } from '../../src/peer/holders.js';
import { imageQueueName } from '../../src/queues/names.js';
import { announce } from '../../src/registry/host-registry.js';
import { storePaths } from '../../src/store/paths.js';
import { qcow2DataImage, rawImage, type TestImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { plantBlob, removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const TOKEN = 'fleet-token-0123456789abcdef';
const MiB = 1024 * 1024;
const redis = useTestRedis();
let upstream: Upstream;
let admin: Redis;

interface Host {
  name: string;
  root: string;
  peerPort: number;
  metricsPort: number;
  w: WorkerProcess;
  q: QueueClient;
}

const started: Host[] = [];
const servers: Server[] = [];
let prefixN = 0;

beforeAll(async () => {
  upstream = await startUpstream();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await upstream?.stop();
});
afterEach(async () => {
  await Promise.all(
    started.splice(0).map(async (h) => {
      await h.w.kill();
      await h.q.close();
      removeRoot(h.root);
    }),
  );
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A fresh prefix per test: its holders, locks and registry do not meet another test's. */
const newPrefix = () => `pf${++prefixN}`;

/** A worker with the fleet token; serving blobs (FLEETQ_PEER_LISTEN) unless `serve` is false. */
async function startHost(prefix: string, name: string, env: Record<string, string> = {}, serve = true): Promise<Host> {
  const root = tempRoot();
  const [peerPort, metricsPort] = [await freePort(), await freePort()];
  const w = await startWorkerProcess({
    REDIS_URL: redis.url,
    FLEETQ_HOST: name,
    FLEETQ_ROOT: root,
    FLEETQ_PREFIX: prefix,
    FLEETQ_QUEUES: 'images',
    ...(serve ? { FLEETQ_PEER_LISTEN: `127.0.0.1:${peerPort}` } : {}),
    FLEETQ_PEER_TOKEN: TOKEN,
    FLEETQ_METRICS_PORT: String(metricsPort),
    FLEETQ_ATTEMPTS: '1',
    ...env,
  });
  const q = await queueClient(redis.url, imageQueueName(name), prefix);
  const h = { name, root, peerPort, metricsPort, w, q };
  started.push(h);
  return h;
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobFile = (h: Host, img: TestImage) => join(storePaths(h.root).blobs, `${img.hex}.qcow2`);
const blobDigest = (h: Host, img: TestImage) => sha(readFileSync(blobFile(h, img)));

/** One sample of a worker's /metrics: the series with all of `labels` (summed over the rest). */
async function metric(h: Host, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${h.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function ensure(h: Host, image: string, digest?: string, timeoutMs = 90_000) {
  const job = await h.q.queue.add('ensure-image', digest ? { image, imageDigest: digest } : { image });
  return { id: job.id!, settled: h.q.settle(job.id!, timeoutMs) };
}

/** A loopback server standing in for a peer: serves `body` at /blobs/<digest>, counts requests, records their Authorization. */
async function fakePeer(digest: string, body: Buffer): Promise<{ url: string; requests: IncomingMessage['headers'][] }> {
  const requests: IncomingMessage['headers'][] = [];
  const server = createServer((req, res) => {
    requests.push(req.headers);
    if (req.url !== `/blobs/${digest}`) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

/** Register `host` as a live holder of the digest, as a worker would (heartbeat + holder entry). */
async function registerHolder(prefix: string, host: string, digest: string, entry: Omit<HolderEntry, 'instance' | 'at'>): Promise<void> {
  const now = Date.now();
  await announce(admin, prefix, { instance: `${host}-1`, host, version: 't', pid: 1, concurrency: 1, restoreConcurrency: 1, queues: [], startedAt: now }, now);
  await addHolder(admin, prefix, Digest.parse(digest), host, { ...entry, instance: `${host}-1`, at: now });
}

const holderEntries = async (prefix: string, img: TestImage) =>
  Object.fromEntries(Object.entries(await admin.hgetall(holderKeys(prefix).holders(Digest.parse(img.digest)))).map(([k, v]) => [k, JSON.parse(v) as HolderEntry]));

describe('a wave over four hosts', () => {
  it('one pinned 64 MiB digest ensured on 4 hosts at once: exactly 1 upstream GET, 4 blobs that hash to it, peers served 3', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(64 * MiB);
    const path = '/wave.qcow2';
    // The origin takes a second to answer: every host asks before anyone has a response (and could stream it).
    const url = upstream.serve(path, img.body, { chunkSize: 256 * 1024, headersDelayMs: 1000 });
    const hosts = await Promise.all(['w1', 'w2', 'w3', 'w4'].map((n) => startHost(prefix, n)));
    const jobs = await Promise.all(hosts.map((h) => ensure(h, url, img.digest)));
    const results = await Promise.all(jobs.map((j) => j.settled));

    expect(results.map((r) => [r.state, r.failedReason])).toEqual(hosts.map(() => ['completed', undefined]));
    expect(results.map((r) => r.value.digest)).toEqual(hosts.map(() => img.digest));
    expect(upstream.gets(path)).toBe(1);
    for (const h of hosts) expect(blobDigest(h, img), h.name).toBe(img.digest);

    const fromPeers = await Promise.all(hosts.map((h) => metric(h, 'fleetq_pull_bytes_total', { source: 'peer', digest: img.digest })));
    const fromUpstream = await Promise.all(hosts.map((h) => metric(h, 'fleetq_pull_bytes_total', { source: 'upstream', digest: img.digest })));
    expect(fromPeers.filter((n) => n > 0), `bytes from peers per host: ${fromPeers}`).toHaveLength(3);
    expect(fromUpstream.filter((n) => n > 0), `bytes from upstream per host: ${fromUpstream}`).toEqual([img.body.length]);
    // The others waited for a holder (the back-to-source permit was taken), and each receiver was a partial holder in turn.
    const waits = await Promise.all(hosts.map((h) => metric(h, 'fleetq_back_to_source_wait_seconds_count')));
    expect(waits.reduce((a, b) => a + b), `waits per host: ${waits}`).toBeGreaterThanOrEqual(1);
    const receivers = hosts.filter((_, i) => fromPeers[i]! > 0);
    for (const h of receivers) {
      const partial = h.w.logs.find((l) => l.msg === 'peer: serving the download in progress (partial holder)');
      expect(partial, h.name).toBeDefined();
      expect((partial!.chain as string[]).length, h.name).toBeGreaterThanOrEqual(1);
    }
    // Every host ends up a complete holder of the digest (each stored it as received).
    await waitFor('four complete holder entries', async () => {
      const e = await holderEntries(prefix, img);
      return Object.values(e).filter((x) => x.state === 'complete').length === 4 || undefined;
    });
  });

  it('FLEETQ_UPSTREAM_PER_DIGEST=2 on 4 hosts: at most 2 upstream GETs (at least 1)', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(16 * MiB);
    const path = '/k2.qcow2';
    // A slow origin (1.5 s before it answers, then ~1.5 s of body): every host asks before any has a response.
    const url = upstream.serve(path, img.body, { chunkSize: 256 * 1024, chunkDelayMs: 20, headersDelayMs: 1500 });
    const hosts = await Promise.all(['k1', 'k2', 'k3', 'k4'].map((n) => startHost(prefix, n, { FLEETQ_UPSTREAM_PER_DIGEST: '2' })));
    const results = await Promise.all((await Promise.all(hosts.map((h) => ensure(h, url, img.digest)))).map((j) => j.settled));
    expect(results.map((r) => r.state)).toEqual(hosts.map(() => 'completed'));
    expect(upstream.gets(path)).toBeGreaterThanOrEqual(1);
    expect(upstream.gets(path)).toBeLessThanOrEqual(2);
    for (const h of hosts) expect(blobDigest(h, img), h.name).toBe(img.digest);
    const waits = await Promise.all(hosts.map((h) => metric(h, 'fleetq_back_to_source_wait_seconds_count')));
    expect(waits.reduce((a, b) => a + b), `waits per host: ${waits}`).toBeGreaterThanOrEqual(1);
  });
});

describe('a wave fans out as a tree (FLEETQ_PEER_MAX_STREAMS)', () => {
  it.each([1, 2])('5 hosts, %i stream(s) each: 1 upstream GET, 5 verified blobs, no host ever streamed to more peers at once, busy answers are not peer errors', async (maxStreams) => {
    const prefix = newPrefix();
    const img = qcow2DataImage(16 * MiB);
    const path = `/tree-${maxStreams}.qcow2`;
    // Everyone asks before the origin answers; then ~2.5 s of body, so the receivers stream behind each other.
    const url = upstream.serve(path, img.body, { chunkSize: 256 * 1024, chunkDelayMs: 40, headersDelayMs: 1000 });
    const hosts = await Promise.all(['t1', 't2', 't3', 't4', 't5'].map((n) => startHost(prefix, n, { FLEETQ_PEER_MAX_STREAMS: String(maxStreams) })));
    const results = await Promise.all((await Promise.all(hosts.map((h) => ensure(h, url, img.digest)))).map((j) => j.settled));

    expect(results.map((r) => [r.state, r.failedReason])).toEqual(hosts.map(() => ['completed', undefined]));
    expect(upstream.gets(path)).toBe(1);
    for (const h of hosts) expect(blobDigest(h, img), h.name).toBe(img.digest);

    // Every GET a server accepted logged the streams it had open with it: never more than the limit.
    const streams = hosts.map((h) => h.w.logs.filter((l) => l.msg === 'peer: serving blob' && l.method === 'GET').map((l) => Number(l.streams)));
    for (const [i, s] of streams.entries()) for (const n of s) expect(n, `${hosts[i]!.name} streams ${s}`).toBeLessThanOrEqual(maxStreams);
    expect(streams.flat().length).toBeGreaterThanOrEqual(4);
    // The receivers got their bytes from more than one holder: a chain or a tree, not a star around the upstream host.
    const picked = hosts.flatMap((h) => h.w.logs.filter((l) => l.msg === 'pulling from peer').map((l) => String(l.peer)));
    expect(new Set(picked).size, `peers picked: ${picked}`).toBeGreaterThanOrEqual(2);
    const fromPeers = await Promise.all(hosts.map((h) => metric(h, 'fleetq_pull_bytes_total', { source: 'peer', digest: img.digest })));
    expect(fromPeers.filter((n) => n > 0), `bytes from peers per host: ${fromPeers}`).toHaveLength(4);
    // A 503 is counted as busy by the receiver it was sent to, and never as a peer error.
    const turnedAway = hosts.reduce((n, h) => n + h.w.logs.filter((l) => l.msg === 'peer: busy, blob request turned away').length, 0);
    const busy = await Promise.all(hosts.map((h) => metric(h, 'fleetq_peer_busy_total')));
    expect(busy.reduce((a, b) => a + b)).toBe(turnedAway);
    const errors = await Promise.all(hosts.map((h) => metric(h, 'fleetq_peer_errors_total')));
    expect(errors, 'peer errors per host').toEqual(hosts.map(() => 0));
    // Each holder entry carries the limit, so receivers can prefer holders with a free slot.
    await waitFor(`five complete holder entries with maxStreams ${maxStreams}`, async () => {
      const e = Object.values(await holderEntries(prefix, img));
      return (e.length === 5 && e.every((x) => x.state === 'complete' && x.maxStreams === maxStreams)) || undefined;
    });
  });
});

describe('waiting for a holder', () => {
  it('without any message (pub/sub lost it), a waiting host still finds the new holder within a lock TTL', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(2 * MiB);
    const path = '/silent.qcow2';
    const url = upstream.serve(path, img.body);
    // Someone else holds the digest's only back-to-source permit (the Semaphore of the lock client's keyPrefix).
    const lockClient = new Redis(redis.url, { keyPrefix: `${prefix}:` });
    const other = new Semaphore(lockClient, backToSourceKey(Digest.parse(img.digest)), 1, { lockTimeout: 60_000 });
    await other.acquire();
    try {
      const b = await startHost(prefix, 'sw', { FLEETQ_LOCK_TTL: '2s' });
      const jb = await ensure(b, url, img.digest);
      await b.w.waitForLog((l) => l.msg === 'waiting for a peer: the back-to-source permits are taken');
      // A holder appears with no PUBLISH at all.
      const holder = await fakePeer(img.digest, img.body);
      const now = Date.now();
      await announce(admin, prefix, { instance: 'silent-1', host: 'silent', version: 't', pid: 1, concurrency: 1, restoreConcurrency: 1, queues: [], startedAt: now }, now);
      await admin.hset(holderKeys(prefix).holders(Digest.parse(img.digest)), 'silent', JSON.stringify({ state: 'complete', peerUrl: holder.url, instance: 'silent-1', size: img.body.length, at: now }));
      const r = await jb.settled;
      expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
      const picked = await b.w.waitForLog((l) => l.msg === 'pulling from peer');
      expect(picked).toMatchObject({ peer: 'silent' });
      // Found by the periodic look (TTL 2 s), not by a message.
      expect(Date.parse(String(picked.time)) - now).toBeLessThan(2_000 + 1_500);
      expect(holder.requests).toHaveLength(1);
      expect(upstream.gets(path)).toBe(0);
      expect(await metric(b, 'fleetq_back_to_source_wait_seconds_count')).toBe(1);
    } finally {
      await other.release();
      lockClient.disconnect();
    }
  });
});

describe('streaming behind a peer that is still downloading', () => {
  it('a receiver that starts while the leader is mid-download streams from it and finishes shortly after it', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(24 * MiB);
    const path = '/partial.qcow2';
    // ~4 s upstream: a WAN link.
    const url = upstream.serve(path, img.body, { chunkSize: 256 * 1024, chunkDelayMs: 40 });
    const [a, b] = await Promise.all([startHost(prefix, 'pa'), startHost(prefix, 'pb')]);
    const ja = await ensure(a, url, img.digest);
    // The leader announces itself as a partial holder once the upstream response has a length.
    await waitFor('pa as partial holder', async () => (await holderEntries(prefix, img)).pa?.state === 'partial' || undefined, { timeoutMs: 20_000 });
    const jb = await ensure(b, url, img.digest);
    const [ra, rb] = await Promise.all([ja.settled, jb.settled]);
    expect([ra.state, rb.state]).toEqual(['completed', 'completed']);
    expect(upstream.gets(path)).toBe(1);
    expect(blobDigest(b, img)).toBe(img.digest);

    const at = (l: Record<string, unknown>) => Date.parse(String(l.time));
    const aPulled = await a.w.waitForLog((l) => l.msg === 'image pulled');
    const bPulled = await b.w.waitForLog((l) => l.msg === 'image pulled');
    const bFromPeer = await b.w.waitForLog((l) => l.msg === 'pulling from peer');
    // B began on A's download in progress, before A committed, and A served it from the in-progress source.
    expect(bFromPeer).toMatchObject({ peer: 'pa', peerState: 'partial', offset: 0 });
    expect(at(bFromPeer)).toBeLessThan(at(aPulled));
    expect(a.w.logs.some((l) => l.msg === 'peer: serving blob' && l.from === 'in-progress' && l.digest === img.digest)).toBe(true);
    expect(bPulled).toMatchObject({ fromPeers: img.body.length, fromUpstream: 0 });
    // One transfer time for the wave, not two: B ends well within half of A's pull after A.
    const aPull = at(aPulled) - at(await a.w.waitForLog((l) => l.msg === 'image needs download'));
    expect(at(bPulled) - at(aPulled), `A pulled in ${aPull} ms`).toBeLessThan(aPull / 2);
  });
});

describe('untrusted peers', () => {
  it('a peer serving wrong bytes (right length) is detected at the digest check, reported by name, skipped; the pull completes from upstream', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(4 * MiB);
    const path = '/wrong.qcow2';
    const url = upstream.serve(path, img.body);
    const liar = await fakePeer(img.digest, randomBytes(img.body.length));
    await registerHolder(prefix, 'liar', img.digest, { state: 'complete', peerUrl: liar.url, size: img.body.length });
    const b = await startHost(prefix, 'wb');
    const r = await (await ensure(b, url, img.digest)).settled;
    expect([r.state, r.failedReason]).toEqual(['completed', undefined]);
    expect(r.value.digest).toBe(img.digest);
    expect(blobDigest(b, img)).toBe(img.digest);
    // The liar was asked once, with the fleet token; then upstream once.
    expect(liar.requests.map((h) => h.authorization)).toEqual([`Bearer ${TOKEN}`]);
    expect(upstream.gets(path)).toBe(1);
    const report = await b.w.waitForLog((l) => l.msg === `peer liar skipped for ${img.digest}: wrong-bytes`);
    expect(report).toMatchObject({ peer: 'liar', digest: img.digest, reason: 'wrong-bytes' });
    expect(await metric(b, 'fleetq_peer_errors_total', { peer: 'liar', reason: 'wrong-bytes' })).toBe(1);
    expect(await metric(b, 'fleetq_pull_bytes_total', { source: 'peer' })).toBe(img.body.length);
    expect(await metric(b, 'fleetq_pull_bytes_total', { source: 'upstream' })).toBe(img.body.length);
  });

  it('a peer killed (kill -9) mid-transfer: the receiver resumes with Range elsewhere (upstream, 206), the hash state goes on, the blob verifies', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(24 * MiB);
    const path = '/resume.qcow2';
    const url = upstream.serve(path, img.body, { ranges: true });
    // A serves slowly (2 MiB/s): B is mid-transfer for ~12 s.
    const a = await startHost(prefix, 'ra', { FLEETQ_PEER_MAX_RATE: '2M' });
    expect((await (await ensure(a, url, img.digest)).settled).state).toBe('completed');
    await waitFor('ra as complete holder', async () => (await holderEntries(prefix, img)).ra?.state === 'complete' || undefined);
    const b = await startHost(prefix, 'rb');
    const jb = await ensure(b, url, img.digest);
    await b.w.waitForLog((l) => l.msg === 'pulling from peer' && l.peer === 'ra');
    // The job's progress shows bytes received from ra: kill ra mid-transfer.
    await waitFor('bytes from ra in the job progress', async () => {
      const p = (await Job.fromId(b.q.queue, jb.id))?.progress as { bytes?: number } | undefined;
      return (p?.bytes ?? 0) > 0 || undefined;
    });
    await a.w.kill();
    const rb = await jb.settled;
    expect([rb.state, rb.failedReason]).toEqual(['completed', undefined]);
    expect(blobDigest(b, img)).toBe(img.digest);
    const died = await b.w.waitForLog((l) => l.msg === `peer ra skipped for ${img.digest}: died`);
    expect(died).toMatchObject({ peer: 'ra', reason: 'died' });
    // Upstream: A's first GET, then B's resume from where it stood.
    const ranges = upstream.ranges.get(path)!;
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBeUndefined();
    const offset = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? '')?.[1]);
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(img.body.length);
    const pulled = await b.w.waitForLog((l) => l.msg === 'image pulled');
    expect(pulled).toMatchObject({ fromPeers: offset, fromUpstream: img.body.length - offset });
    expect(await metric(b, 'fleetq_peer_errors_total', { peer: 'ra', reason: 'died' })).toBe(1);
  });

  it('an unpinned URL never goes to a peer (the holder gets no request); the same image pinned does', async () => {
    const prefix = newPrefix();
    const img = qcow2DataImage(2 * MiB);
    const path = '/tag.qcow2';
    const url = upstream.serve(path, img.body);
    const holder = await fakePeer(img.digest, img.body);
    await registerHolder(prefix, 'holder', img.digest, { state: 'complete', peerUrl: holder.url, size: img.body.length });
    // `un` has the fleet token (peer fetching on) but serves nothing, so it never becomes a holder itself.
    const [u, p] = await Promise.all([startHost(prefix, 'un', {}, false), startHost(prefix, 'pi')]);
    const ru = await (await ensure(u, url)).settled;
    expect(ru.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(holder.requests).toHaveLength(0);
    expect(upstream.gets(path)).toBe(1);
    // Control: the same digest pinned on another host is fetched from that holder, not upstream.
    const rp = await (await ensure(p, url, img.digest)).settled;
    expect(rp.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(holder.requests).toHaveLength(1);
    expect(upstream.gets(path)).toBe(1);
  });
});

describe('holder announcements', () => {
  const peerGet = (h: Host, digest: string) => fetch(`http://127.0.0.1:${h.peerPort}/blobs/${digest}`, { headers: { authorization: `Bearer ${TOKEN}` } });

  it('a present pinned blob is verified once per process (not per cache hit), then announced and served; one that does not hash to its name is neither; a blob gone is withdrawn when asked for', async () => {
    const prefix = newPrefix();
    const good = qcow2DataImage(3 * MiB);
    const bad = qcow2DataImage(MiB);
    const h = await startHost(prefix, 'ha');
    plantBlob(h.root, good.hex, good.body);
    // The right name, other bytes (a corrupted file).
    plantBlob(h.root, bad.hex, Buffer.concat([bad.body.subarray(0, 4096), randomBytes(bad.body.length - 4096)]));
    const goodUrl = upstream.serve('/present-good.qcow2', good.body);
    const badUrl = upstream.serve('/present-bad.qcow2', bad.body);
    const results = await Promise.all([
      ...(await Promise.all([1, 2, 3].map(() => ensure(h, goodUrl, good.digest)))).map((j) => j.settled),
      (await ensure(h, badUrl, bad.digest)).settled,
    ]);
    expect(results.map((r) => r.value?.outcome)).toEqual(['present', 'present', 'present', 'present']);
    const more = await Promise.all((await Promise.all([1, 2].map(() => ensure(h, goodUrl, good.digest)))).map((j) => j.settled));
    expect(more.map((r) => r.value?.outcome)).toEqual(['present', 'present']);
    expect(upstream.gets('/present-good.qcow2') + upstream.gets('/present-bad.qcow2')).toBe(0);

    await waitFor('ha as complete holder of the good blob', async () => (await holderEntries(prefix, good)).ha?.state === 'complete' || undefined);
    await h.w.waitForLog((l) => l.msg === 'peer: present blob not servable (converted at commit, changed, or gone)' && l.digest === bad.digest);
    // Five cache hits, one hash.
    expect(h.w.logs.filter((l) => l.msg === 'peer: present blob verified, announced as holder' && l.digest === good.digest)).toHaveLength(1);
    expect((await holderEntries(prefix, bad)).ha).toBeUndefined();
    const served = await peerGet(h, good.digest);
    expect(served.status).toBe(200);
    expect(sha(Buffer.from(await served.arrayBuffer()))).toBe(good.digest);
    expect((await peerGet(h, bad.digest)).status).toBe(404);

    // cocoon gc removed the blob: the next request finds it gone and the entry is withdrawn.
    unlinkSync(blobFile(h, good));
    expect((await peerGet(h, good.digest)).status).toBe(404);
    await waitFor('the holder entry withdrawn', async () => (await holderEntries(prefix, good)).ha === undefined || undefined);
  });

  it('a raw body, converted at commit, is never announced as complete nor served (its blob does not hash to the digest)', async () => {
    const prefix = newPrefix();
    const img = rawImage(2 * MiB);
    const url = upstream.serve('/raw-converted.img', img.body);
    const h = await startHost(prefix, 'hr');
    const r = await (await ensure(h, url, img.digest)).settled;
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(blobDigest(h, img)).not.toBe(img.digest); // converted
    expect((await holderEntries(prefix, img)).hr).toBeUndefined();
    expect((await peerGet(h, img.digest)).status).toBe(404);
  });
});

describe('resuming from a server that ignores Range', () => {
  it('fetchImage with rangeStart: a 200 has its prefix skipped; partialOnly refuses it; a 206 is checked', async () => {
    const img = { body: randomBytes(3 * MiB + 17) };
    const plain = upstream.serve('/no-range.img', img.body);
    const ranged = upstream.serve('/ranged.img', img.body, { ranges: true });
    const dispatcher = new Agent();
    const read = async (url: string, rangeStart: number, partialOnly = false) => {
      const res = await fetchImage({ url, dispatcher, totalTimeoutMs: 10_000, minRate: 0, rateWindowMs: 1000, rangeStart, partialOnly });
      const chunks: Buffer[] = [];
      for await (const c of res.chunks()) chunks.push(Buffer.from(c));
      return { res, body: Buffer.concat(chunks) };
    };
    try {
      const skipped = await read(plain, 1_000_000);
      expect(skipped.res).toMatchObject({ status: 200, start: 1_000_000, totalLength: img.body.length, declaredLength: img.body.length - 1_000_000 });
      expect(skipped.body.equals(img.body.subarray(1_000_000))).toBe(true);
      await expect(read(plain, 5, true)).rejects.toMatchObject({ code: 'E_RANGE_RESPONSE' });
      const partial = await read(ranged, 2_000_001);
      expect(partial.res).toMatchObject({ status: 206, totalLength: img.body.length, declaredLength: img.body.length - 2_000_001 });
      expect(partial.body.equals(img.body.subarray(2_000_001))).toBe(true);
    } finally {
      await dispatcher.close();
    }
  });
});
