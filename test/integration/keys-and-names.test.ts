/**
 * Keys and names (issue 11): with a non-default prefix, every key fleetq
 * writes lives under `<prefix>:` (the pull lock included) and every pub/sub
 * channel too, checked with SCAN and with MONITOR over a pull, a cache hit, a
 * restore (a flow across the host's two queues), a retry, a dead letter and
 * the board's API; queue names are `images-{<host>}` / `restores-{<host>}`;
 * the board groups by host under one name mapping; registry, dead letters
 * and event streams are bounded; `fleetq hosts rm`.
 */
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FlowProducer, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pullLockRedisKey } from '../../src/lock/keys.js';
import { Digest } from '../../src/lib/digest.js';
import { scanDeadLetters } from '../../src/ops/dead-letters.js';
import { recordDeadLetter, TRIM_ON_RECORD } from '../../src/worker/dead-letter-record.js';
import { DeadLetterRecorder } from '../../src/worker/dead-letter-recorder.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import {
  BOARD_DELIMITER,
  boardName,
  boardNaming,
  imageChildId,
  imageQueueName,
  legacyQueueName,
  parseQueueName,
  queueName,
  queueOfBoardName,
  restoreQueueName,
} from '../../src/queues/names.js';
import { EVENTS_MAX_LEN, queueOptions } from '../../src/queues/queue-options.js';
import { announce, listHosts } from '../../src/registry/host-registry.js';
import { pushMetricsSnapshot } from '../../src/registry/metrics-snapshots.js';
import { hostKeys, registryKeys } from '../../src/registry/keys.js';
import { basic, type BoardProcess, startBoardProcess } from '../helpers/board-process.js';
import { cocoonWorkerEnv, plantSnapshot, setHostCores } from '../helpers/cocoon.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';
import { startMonitor } from '../helpers/monitor.js';
import { scanAllKeys } from '../helpers/redis-keys.js';

const redis = useTestRedis();
const PREFIX = 'fq-test';
const HOST = 'kn-1';
const CREDS = { FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 'keys-and-names' };
const AUTH = basic('oncall', 'keys-and-names');
const DAY = 86_400_000;

let upstream: Upstream;
let root: string;
let worker: WorkerProcess;
let images: QueueClient;
let restores: QueueClient;
let board: BoardProcess | undefined;
let admin: Redis;
let monitor: Awaited<ReturnType<Redis['monitor']>>;
/** Every command Redis ran (clients and Lua scripts), from MONITOR. */
const commands: string[][] = [];

const env = () => ({ REDIS_URL: redis.url, FLEETQ_PREFIX: PREFIX });
const cli = (...args: string[]) => runCli(args, env());

beforeAll(async () => {
  upstream = await startUpstream();
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  monitor = await startMonitor(redis.url);
  monitor.on('monitor', (_time: string, args: string[]) => commands.push(args));
  root = tempRoot();
  setHostCores(root, 16);
  worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_PREFIX: PREFIX, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_BACKOFF: '100ms', FLEETQ_HEARTBEAT: '200ms', ...cocoonWorkerEnv(root) });
  images = await queueClient(redis.url, imageQueueName(HOST), PREFIX);
  restores = await queueClient(redis.url, restoreQueueName(HOST), PREFIX);
});

afterAll(async () => {
  await board?.stop();
  await images?.close();
  await restores?.close();
  await worker?.stop();
  monitor?.disconnect();
  admin?.disconnect();
  await upstream?.stop();
  if (root) removeRoot(root);
});

/** CRC16/XMODEM mod 16384 of the hash tag: Redis Cluster's slot for a key. */
function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1;
  const tagged = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(tagged)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe('queue names', () => {
  it('are images-{<host>} and restores-{<host>}; old names and board names map back and forth', () => {
    expect(imageQueueName('h1')).toBe('images-{h1}');
    expect(restoreQueueName('web-1.eu_2')).toBe('restores-{web-1.eu_2}');
    expect(parseQueueName('images-{h1}')).toEqual({ kind: 'images', host: 'h1', legacy: false });
    expect(parseQueueName('restores-h.1')).toEqual({ kind: 'restores', host: 'h.1', legacy: true });
    expect(parseQueueName('images-{h1')).toBeUndefined();
    expect(parseQueueName('dead-{h1}')).toBeUndefined();
    expect(legacyQueueName('images', 'h1')).toBe('images-h1');

    // One mapping: board name ↔ queue; ":" is in no host id and no BullMQ queue name.
    expect(BOARD_DELIMITER).toBe(':');
    expect(boardName('images', 'web-1.eu_2')).toBe('web-1.eu_2:images-{web-1.eu_2}');
    for (const host of ['h1', 'web-1.eu_2', 'a', 'A-b.c_d-9']) {
      for (const kind of ['images', 'restores'] as const) {
        expect(queueOfBoardName(boardName(kind, host))).toEqual({ kind, host, queue: queueName(kind, host) });
      }
    }
    expect(queueOfBoardName('images-{h1}')).toBeUndefined();
    expect(queueOfBoardName('h2:images-{h1}')).toBeUndefined();
    expect(queueOfBoardName('h1:images-h1')).toBeUndefined();
  });

  it('a host\'s two queues share one Cluster slot (flows), different hosts need not', () => {
    const slot = (kind: 'images' | 'restores', host: string, suffix: string) => keySlot(`fleetq:${queueName(kind, host)}:${suffix}`);
    for (const host of ['h1', 'web-1', 'kn-1']) {
      const s = slot('images', host, 'wait');
      for (const suffix of ['wait', 'meta', 'events', 'marker', 'some-job-id', 'some-job-id:dependencies']) {
        expect(slot('images', host, suffix)).toBe(s);
        expect(slot('restores', host, suffix)).toBe(s);
      }
    }
    expect(new Set(['h1', 'h2', 'h3', 'h4'].map((h) => slot('images', h, 'wait'))).size).toBeGreaterThan(1);
    // The old names did not: that is why they had to change.
    expect(keySlot(`fleetq:${legacyQueueName('images', 'h9')}:wait`)).not.toBe(keySlot(`fleetq:${legacyQueueName('restores', 'h9')}:wait`));
  });

  it('BullMQ takes braces in a queue name (and still refuses ":"), and Bull Board names it with the one mapping', async () => {
    const name = queueName('images', 'brace-check');
    const q = new Queue(name, { connection: admin, ...queueOptions(PREFIX) });
    const wconn = new Redis(redis.url, { maxRetriesPerRequest: null });
    const w = new Worker(name, async (job) => `done ${job.data.n}`, { connection: wconn, prefix: PREFIX });
    try {
      const done = new Promise((resolve) => w.on('completed', (_job, value) => resolve(value)));
      await q.add('probe', { n: 1 });
      expect(await done).toBe('done 1');
      expect(await admin.exists(`${PREFIX}:images-{brace-check}:completed`)).toBe(1);
      expect(() => new Queue('images:h1', { connection: admin, prefix: PREFIX })).toThrow(/:/);
      const naming = boardNaming('images', 'brace-check');
      expect(new BullMQAdapter(q, naming.adapterOptions).getName()).toBe(naming.name);
    } finally {
      await w.close();
      wconn.disconnect();
      await q.obliterate({ force: true });
      await q.close();
    }
  });
});

describe(`every key and channel under "${PREFIX}:"`, () => {
  let dlqJob: string;

  it('a pull, a cache hit, a retry, a restore with its image job, a dead letter', async () => {
    const img = qcow2Image(610);
    const url = upstream.serve('/kn/base.qcow2', img.body, { faults: [{ kind: 'status', status: 500 }] });
    // Pulled after one retry (the first GET answers 500).
    const pulled = await enqueueEnsureImage(images.queue, { image: url, imageDigest: img.digest }, { host: HOST, attempts: 3, backoffMs: 100 });
    const r1 = await images.settle(pulled.jobId);
    expect(r1).toMatchObject({ state: 'completed', attemptsMade: 2, value: { outcome: 'pulled', digest: img.digest } });
    // A cache hit.
    const hit = await enqueueEnsureImage(images.queue, { image: url, imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 100 });
    expect((await images.settle(hit.jobId)).value).toMatchObject({ outcome: 'present' });

    // A restore whose base is missing: the worker adds an image job to images-{kn-1} as the restore's child.
    const base = qcow2Image(611);
    const baseUrl = upstream.serve('/kn/golden.qcow2', base.body);
    plantSnapshot(root, { name: 'kn-golden', image: baseUrl, imageDigest: base.digest, cpu: 2 });
    const restore = await enqueueRestore(restores.queue, { kind: 'clone', snapshot: 'kn-golden', name: 'kn-vm-1' }, { host: HOST, attempts: 2, backoffMs: 100 });
    const rr = await restores.settle(restore.jobId);
    expect(rr).toMatchObject({ state: 'completed', value: { vm: 'kn-vm-1', digest: base.digest, imageJobId: imageChildId(restore.jobId, 0) } });
    expect((await images.queue.getJob(imageChildId(restore.jobId, 0)))!.parentKey).toBe(`${PREFIX}:${restoreQueueName(HOST)}:${restore.jobId}`);

    // A dead letter: a URL that 404s, one attempt.
    dlqJob = (await enqueueEnsureImage(images.queue, { image: upstream.url('/kn/missing.qcow2'), imageDigest: qcow2Image(612).digest }, { host: HOST, attempts: 1, backoffMs: 100 })).jobId;
    expect((await images.settle(dlqJob)).state).toBe('failed');
    await expect.poll(async () => (await admin.hkeys(hostKeys(PREFIX, HOST).dlqEntries)).join(','), { timeout: 10_000 }).toContain(dlqJob);
  });

  it('the board\'s API groups the host\'s queues under their board names (prefix "<host>:", delimiter ":")', async () => {
    board = await startBoardProcess({ ...env(), ...CREDS });
    const json = (await (await fetch(`${board.url}/api/queues?activeQueue=${encodeURIComponent(boardName('images', HOST))}&status=failed&page=1&jobsPerPage=10`, { headers: AUTH })).json()) as any;
    const byName = new Map<string, any>(json.queues.map((q: any) => [q.name, q]));
    for (const kind of ['images', 'restores'] as const) {
      const q = byName.get(boardName(kind, HOST));
      expect(q, [...byName.keys()].join(', ')).toBeDefined();
      expect(q.delimiter).toBe(':');
      expect(queueOfBoardName(q.name)).toEqual({ kind, host: HOST, queue: queueName(kind, HOST) });
    }
    expect(byName.get(boardName('images', HOST)).jobs.map((j: any) => j.id)).toContain(dlqJob);
    const job = (await (await fetch(`${board.url}/api/queues/${encodeURIComponent(boardName('images', HOST))}/${dlqJob}`, { headers: AUTH })).json()) as any;
    expect(job.job.id).toBe(dlqJob);
    // Queues the board opened bound their events stream.
    expect(await admin.hget(`${PREFIX}:${imageQueueName(HOST)}:meta`, 'opts.maxLenEvents')).toBe(String(EVENTS_MAX_LEN));
  });

  it('SCAN: every key starts with the prefix; the pull lock was fq-test:mutex:pull-lock:…', async () => {
    const keys = await scanAllKeys(admin);
    expect(keys.length).toBeGreaterThan(20);
    expect(keys.filter((k) => !k.startsWith(`${PREFIX}:`))).toEqual([]);
    expect(keys).toEqual(expect.arrayContaining([registryKeys(PREFIX).hosts, hostKeys(PREFIX, HOST).dlqIndex, `${PREFIX}:${imageQueueName(HOST)}:events`, `${PREFIX}:${restoreQueueName(HOST)}:completed`]));

    // The lock is released by now; MONITOR saw redis-semaphore take and release it under the prefix.
    const lockKey = pullLockRedisKey(PREFIX, HOST, { kind: 'digest', digest: Digest.parse(qcow2Image(610).digest) });
    expect(lockKey).toMatch(new RegExp(`^${PREFIX}:mutex:pull-lock:\\{${HOST}\\}:digest:[0-9a-f]{64}$`));
    expect(commands.some((c) => c.includes(lockKey) && /^(set|eval|evalsha)$/i.test(c[0]!))).toBe(true);
    expect(commands.some((c) => c.some((a) => a.startsWith('mutex:')))).toBe(false);
  });

  it('MONITOR: no command touched a key outside the prefix, and every channel is under it', () => {
    const KEYLESS = new Set(['ping', 'info', 'client', 'select', 'script', 'subscribe', 'psubscribe', 'unsubscribe', 'punsubscribe', 'publish', 'multi', 'exec', 'discard', 'scan', 'hello', 'auth', 'command', 'config', 'time', 'monitor', 'quit', 'dbsize', 'echo', 'memory', 'role', 'pubsub', 'cluster', 'readonly', 'wait', 'function', 'slowlog', 'latency', 'acl', 'debug', 'flushall', 'flushdb', 'lastsave', 'reset']);
    const outside: string[] = [];
    const channels: string[] = [];
    for (const [cmd, ...args] of commands) {
      const c = cmd!.toLowerCase();
      if (c === 'publish') channels.push(args[0]!);
      if (c === 'subscribe' || c === 'unsubscribe') channels.push(...args);
      if (c === 'psubscribe' || c === 'punsubscribe') channels.push(...args);
      if (KEYLESS.has(c)) continue;
      let keys: string[];
      if (c === 'eval' || c === 'evalsha' || c === 'fcall') keys = args.slice(2, 2 + Number(args[1]));
      else if (c === 'xread' || c === 'xreadgroup') {
        const s = args.findIndex((a) => a.toLowerCase() === 'streams');
        const rest = args.slice(s + 1);
        keys = rest.slice(0, rest.length / 2);
      } else if (['del', 'exists', 'mget', 'unlink', 'touch', 'watch'].includes(c)) keys = args;
      else if (c === 'bzpopmin' || c === 'bzpopmax') keys = args.slice(0, -1);
      else keys = args.slice(0, 1);
      for (const k of keys) if (!k.startsWith(`${PREFIX}:`)) outside.push([cmd, ...args].join(' ').slice(0, 200));
    }
    expect(commands.length).toBeGreaterThan(100);
    expect(outside).toEqual([]);
    expect(channels.length).toBeGreaterThan(0);
    expect(channels.filter((ch) => !ch.startsWith(`${PREFIX}:`))).toEqual([]);
    expect(channels.some((ch) => ch.startsWith(`${PREFIX}:pull-released:${HOST}:`))).toBe(true);
  });

  it('PUBSUB CHANNELS: what is subscribed right now is under the prefix too', async () => {
    // A follower waits on the release channel while the leader holds the lock: two jobs pin one digest
    // through two URLs (two flights in the worker, one Redis lock), and the leader's download is slow.
    const img = qcow2Image(613);
    const slow = { chunkSize: 64 * 1024, chunkDelayMs: 40 };
    const [a, b] = [upstream.serve('/kn/slow-a.qcow2', img.body, slow), upstream.serve('/kn/slow-b.qcow2', img.body, slow)];
    const jobs = await Promise.all([a, b].map((image) => enqueueEnsureImage(images.queue, { image, imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 100 })));
    await expect.poll(async () => (await admin.pubsub('CHANNELS', '*')) as string[], { timeout: 10_000, interval: 20 }).toEqual(
      expect.arrayContaining([expect.stringMatching(new RegExp(`^${PREFIX}:pull-released:${HOST}:digest:`))]),
    );
    for (const ch of (await admin.pubsub('CHANNELS', '*')) as string[]) expect(ch.startsWith(`${PREFIX}:`), ch).toBe(true);
    const outcomes = await Promise.all(jobs.map(async (j) => (await images.settle(j.jobId)).value.outcome));
    expect(outcomes.sort()).toEqual(['present', 'pulled']);
  });
});

describe('bounded: event streams, dead letters, the host registry', () => {
  it('each queue\'s events stream is trimmed to about its maxLen', async () => {
    const q = new Queue(queueName('images', 'events-bound'), { connection: admin, ...queueOptions(PREFIX, 50) });
    try {
      // Each Queue writes its bound into the queue's meta hash when it starts; BullMQ's scripts trim to it.
      await expect.poll(() => admin.hget(`${PREFIX}:images-{events-bound}:meta`, 'opts.maxLenEvents')).toBe('50');
      await q.addBulk(Array.from({ length: 600 }, (_, i) => ({ name: 'x', data: { i } })));
      expect(await admin.xlen(`${PREFIX}:images-{events-bound}:events`)).toBeLessThan(300);
    } finally {
      await q.obliterate({ force: true });
      await q.close();
    }
  });

  it('dead letters older than the retention are dropped on record (bounded) and by the sweep', async () => {
    const now = Date.now();
    const entry = (id: string, failedAt: number) => ({ host: 'kn-old', queue: imageQueueName('kn-old'), queueKind: 'images' as const, originalId: id, name: 'ensure-image', data: {}, reason: 'x', attemptsMade: 1, failedAt });
    const ids = async () => {
      const out: string[] = [];
      for await (const d of scanDeadLetters(admin, PREFIX)) if (d.host === 'kn-old') out.push(d.originalId);
      return out;
    };
    // 150 entries from 40 days ago (no retention applied while planting: 1000 days).
    for (let i = 0; i < 150; i++) await recordDeadLetter(admin, PREFIX, entry(`old-${i}`, now - 40 * DAY), undefined, { maxAgeMs: 1000 * DAY });
    expect(await ids()).toHaveLength(150);
    // A new recording with the default retention (30 days) drops at most TRIM_ON_RECORD of them.
    await recordDeadLetter(admin, PREFIX, entry('new-1', now));
    expect(await ids()).toHaveLength(150 - TRIM_ON_RECORD + 1);
    // The sweep drops the rest; entries inside the retention stay.
    const recorder = new DeadLetterRecorder({ redis: admin, prefix: PREFIX, host: 'kn-old', queues: [], log: silentLog(), maxAgeMs: 30 * DAY });
    await recorder.sweepNow();
    await recorder.close();
    expect(await ids()).toEqual(['new-1']);
    // This worker's dead letter (recorded in the test above) is still there.
    expect(await admin.zcard(hostKeys(PREFIX, HOST).dlqIndex)).toBeGreaterThanOrEqual(1);
  });

  it('a host silent for FLEETQ_HOST_RETENTION is dropped from the registry when hosts are listed; one that came back stays', async () => {
    const old = Date.now() - 8 * DAY;
    const ghost = (host: string, at: number, instance = `${host}-1`) => announce(admin, PREFIX, { instance, host, version: 't', pid: 1, concurrency: 1, restoreConcurrency: 1, queues: [], startedAt: at }, at);
    await ghost('kn-ghost', old);
    await ghost('kn-back', old, 'kn-back-crashed');
    await ghost('kn-back', Date.now());
    await admin.hset(hostKeys(PREFIX, 'kn-ghost').dlqSwept, imageQueueName('kn-ghost'), String(old));
    const listed = (await listHosts(admin, PREFIX, 30_000, Date.now(), { retentionMs: 7 * DAY })).map((h) => h.host);
    expect(listed).not.toContain('kn-ghost');
    expect(listed).toContain('kn-back');
    expect(await admin.zscore(registryKeys(PREFIX).hosts, 'kn-ghost')).toBeNull();
    expect(await admin.exists(registryKeys(PREFIX).host('kn-ghost'))).toBe(0);
    expect(await admin.exists(hostKeys(PREFIX, 'kn-ghost').dlqSwept)).toBe(0);
    // The dead worker entry of the host that came back is dropped too; its live one stays.
    expect(await admin.hkeys(registryKeys(PREFIX).host('kn-back'))).toEqual(['kn-back-1']);
    await admin.zrem(registryKeys(PREFIX).hosts, 'kn-back');

    // The CLI (and the board) list hosts the same way (default FLEETQ_HOST_RETENTION: 7d).
    await ghost('kn-ghost-2', old);
    const r = await cli('hosts', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).map((h: any) => h.host)).toEqual([HOST]);
    expect(await admin.zscore(registryKeys(PREFIX).hosts, 'kn-ghost-2')).toBeNull();
  });
});

describe('fleetq migrate: jobs from the old names (images-<host>) to the new ones (images-{<host>})', () => {
  const OLD_IMAGES = legacyQueueName('images', HOST);
  const OLD_RESTORES = legacyQueueName('restores', HOST);
  const opts = { attempts: 3, backoff: { type: 'fixed', delay: 100 }, removeOnComplete: { age: 3600, count: 100 }, removeOnFail: { age: 3600, count: 100 } };
  let oldImages: Queue;
  let oldRestores: Queue;
  let orphan: Queue;
  const imgs = { wait: qcow2Image(620), prio: qcow2Image(621), delay: qcow2Image(622), failed: qcow2Image(623), retry: qcow2Image(624), base: qcow2Image(625) };
  const url = (k: keyof typeof imgs, o = {}) => upstream.serve(`/mig/${k}.qcow2`, imgs[k].body, o);
  const counts = (q: Queue) => q.getJobCounts('wait', 'prioritized', 'delayed', 'failed', 'waiting-children', 'active', 'completed');
  let delayDue = 0;

  beforeAll(async () => {
    // The old names, written by plain BullMQ as fleetq 0.1 did (same prefix).
    oldImages = new Queue(OLD_IMAGES, { connection: admin, prefix: PREFIX });
    oldRestores = new Queue(OLD_RESTORES, { connection: admin, prefix: PREFIX });
    orphan = new Queue(legacyQueueName('images', 'kn-gone'), { connection: admin, prefix: PREFIX });
    // A job that failed for good, and one waiting (delayed) for its retry, made by an old worker that then stopped.
    await oldImages.add('ensure-image', { image: url('failed'), imageDigest: imgs.failed.digest }, { ...opts, attempts: 1, jobId: 'mig-failed' });
    await oldImages.add('ensure-image', { image: url('retry'), imageDigest: imgs.retry.digest }, { ...opts, backoff: { type: 'fixed', delay: 1500 }, jobId: 'mig-retry' });
    const wconn = new Redis(redis.url, { maxRetriesPerRequest: null });
    const old = new Worker(OLD_IMAGES, async () => {
      throw new Error('the old worker failed');
    }, { connection: wconn, prefix: PREFIX });
    for (const started = Date.now(); ; await new Promise((r) => setTimeout(r, 50))) {
      const states = [await oldImages.getJobState('mig-failed'), await oldImages.getJobState('mig-retry')];
      if (states[0] === 'failed' && states[1] === 'delayed') break;
      if (Date.now() - started > 10_000) throw new Error(`old jobs did not fail: ${states.join(', ')}`);
    }
    await old.close();
    wconn.disconnect();
    // Waiting (slow to download, with its dedup id), prioritized, delayed.
    await oldImages.add('ensure-image', { image: url('wait', { chunkSize: 32 * 1024, chunkDelayMs: 40 }), imageDigest: imgs.wait.digest }, { ...opts, jobId: 'mig-wait', deduplication: { id: 'mig-dedup' } });
    await oldImages.add('ensure-image', { image: url('prio'), imageDigest: imgs.prio.digest }, { ...opts, jobId: 'mig-prio', priority: 3 });
    const delayed = await oldImages.add('ensure-image', { image: url('delay'), imageDigest: imgs.delay.digest }, { ...opts, jobId: 'mig-delay', delay: 4000 });
    delayDue = delayed.timestamp + 4000;
    // A restore waiting for its image job (a flow across the two old queues).
    plantSnapshot(root, { name: 'mig-golden', image: url('base'), imageDigest: imgs.base.digest, cpu: 2 });
    const flows = new FlowProducer({ connection: admin, prefix: PREFIX });
    await flows.add({
      name: 'restore',
      queueName: OLD_RESTORES,
      data: { kind: 'clone', snapshot: 'mig-golden', name: 'mig-vm' },
      opts: { ...opts, jobId: 'mig-r' },
      children: [{ name: 'ensure-image', queueName: OLD_IMAGES, data: { image: url('base'), imageDigest: imgs.base.digest }, opts: { ...opts, jobId: 'mig-r.image.0', continueParentOnFailure: true } }],
    });
    await flows.close();
    // An old queue of a host that is no longer registered: found by scanning.
    await orphan.add('ensure-image', { image: 'https://images.example/gone.qcow2' }, { ...opts, jobId: 'mig-orphan' });
  });

  afterAll(async () => {
    await oldImages?.close();
    await oldRestores?.close();
    await orphan?.close();
  });

  it('--dry-run says what would move and changes nothing', async () => {
    const before = [await counts(oldImages), await counts(oldRestores)];
    expect(before[0]).toMatchObject({ wait: 2, prioritized: 1, delayed: 2, failed: 1 });
    expect(before[1]).toMatchObject({ 'waiting-children': 1 });
    const r = await cli('migrate', '--dry-run', '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ dryRun: true, moved: 8, skipped: 0 });
    const byFrom = Object.fromEntries(report.queues.map((q: any) => [q.from, q]));
    expect(byFrom[OLD_IMAGES]).toMatchObject({ to: imageQueueName(HOST), moved: { waiting: 2, prioritized: 1, delayed: 2, failed: 1 } });
    expect(byFrom[OLD_RESTORES]).toMatchObject({ to: restoreQueueName(HOST), moved: { 'waiting-children': 1 } });
    expect(byFrom[legacyQueueName('images', 'kn-gone')]).toMatchObject({ to: imageQueueName('kn-gone'), moved: { waiting: 1 } });
    expect([await counts(oldImages), await counts(oldRestores)]).toEqual(before);
    for (const id of ['mig-wait', 'mig-failed', 'mig-r.image.0']) expect(await images.queue.getJob(id)).toBeUndefined();
    const human = await cli('migrate', '--dry-run');
    expect(human.stdout).toContain(`${OLD_IMAGES} → ${imageQueueName(HOST)}: would move 6 (`);
    expect(human.stdout).toMatch(/^dry run: would move 8 jobs from 3 old queues$/m);
  });

  it('moves them whole (ids, data, options, attempts made, due times, dedup, the flow), and the worker completes them', async () => {
    const r = await cli('migrate', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ dryRun: false, moved: 8, skipped: 0 });
    expect(await counts(oldImages)).toMatchObject({ wait: 0, prioritized: 0, delayed: 0, failed: 0, active: 0 });
    expect(await counts(oldRestores)).toMatchObject({ 'waiting-children': 0, wait: 0 });

    // The dedup id came along: the same ensure-image added now collapses into the moved job.
    const dup = await images.queue.add('ensure-image', { image: upstream.url('/mig/wait.qcow2'), imageDigest: imgs.wait.digest }, { deduplication: { id: 'mig-dedup' } });
    expect(dup.id).toBe('mig-wait');

    // Each completes in the new queues.
    for (const [id, img] of [['mig-wait', imgs.wait], ['mig-prio', imgs.prio], ['mig-delay', imgs.delay], ['mig-retry', imgs.retry]] as const) {
      const done = await images.settle(id, 20_000);
      expect(done, id).toMatchObject({ state: 'completed', value: { digest: img.digest } });
    }
    const prio = (await images.queue.getJob('mig-prio'))!;
    expect(prio.opts).toMatchObject({ priority: 3, attempts: 3, backoff: { type: 'fixed', delay: 100 } });
    expect(prio.name).toBe('ensure-image');
    expect(prio.data).toEqual({ image: upstream.url('/mig/prio.qcow2'), imageDigest: imgs.prio.digest });
    // The delayed job kept its due time; the retry kept the attempt the old worker had used.
    expect((await images.queue.getJob('mig-delay'))!.processedOn!).toBeGreaterThanOrEqual(delayDue);
    expect((await images.queue.getJob('mig-retry'))!.attemptsMade).toBe(2);

    // The restore waited for its image job and ran when it completed, in the new queues.
    const child = (await images.queue.getJob('mig-r.image.0'))!;
    expect(child.parentKey).toBe(`${PREFIX}:${restoreQueueName(HOST)}:mig-r`);
    expect(await restores.settle('mig-r', 20_000)).toMatchObject({ state: 'completed', value: { vm: 'mig-vm', digest: imgs.base.digest, imageJobId: 'mig-r.image.0' } });

    // The failed job is failed in the new queue, reason kept; a retry there completes it.
    const failed = (await images.queue.getJob('mig-failed'))!;
    expect(await failed.getState()).toBe('failed');
    expect(failed.failedReason).toBe('the old worker failed');
    await failed.retry();
    expect(await images.settle('mig-failed', 20_000)).toMatchObject({ state: 'completed', value: { digest: imgs.failed.digest } });

    // The orphan's queue is under its new name (no worker there).
    const gone = new Queue(imageQueueName('kn-gone'), { connection: admin, prefix: PREFIX });
    try {
      expect(await gone.getJobState('mig-orphan')).toBe('waiting');
    } finally {
      await gone.close();
    }
  });

  it('running it again moves nothing', async () => {
    const r = await cli('migrate', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ moved: 0, skipped: 0 });
    const human = await cli('migrate');
    expect(human.stdout).toMatch(/^moved 0 jobs from 3 old queues$/m);
  });
});

describe('fleetq hosts rm', () => {
  it('unknown host: exit 4; a host that is up: refused (exit 2) unless --force', async () => {
    const unknown = await cli('hosts', 'rm', 'kn-nosuch', '--yes');
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/^fleetq: unknown host "kn-nosuch" \(registered: kn-1/);
    const up = await cli('hosts', 'rm', HOST, '--yes');
    expect(up.code).toBe(2);
    expect(up.stderr).toMatch(/^fleetq: --force: host "kn-1" is up \(1 live worker/);
    expect(await admin.zscore(registryKeys(PREFIX).hosts, HOST)).not.toBeNull();
  });

  it('a down host: --dry-run changes nothing, no --yes off a terminal is refused, --yes removes it (and the board drops its queues)', async () => {
    const seen = Date.now() - 3_600_000;
    await announce(admin, PREFIX, { instance: 'down-1', host: 'kn-down', version: 't', pid: 1, concurrency: 1, restoreConcurrency: 1, queues: [], startedAt: seen }, seen);
    await pushMetricsSnapshot(admin, PREFIX, 'kn-down', '1-0a0b0c0d', '[]', 3_600_000);
    await admin.hset(hostKeys(PREFIX, 'kn-down').dlqSwept, restoreQueueName('kn-down'), String(seen));
    await expect
      .poll(async () => ((await (await fetch(`${board!.url}/api/queues`, { headers: AUTH })).json()) as any).queues.map((q: any) => q.name), { timeout: 10_000, interval: 200 })
      .toContain(boardName('images', 'kn-down'));

    const dry = await cli('hosts', 'rm', 'kn-down', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^dry run: would remove host kn-down \(down, last seen 1h ago\)/);
    const noYes = await cli('hosts', 'rm', 'kn-down');
    expect(noYes.code).toBe(2);
    expect(noYes.stderr).toMatch(/--yes: required/);
    expect(await admin.zscore(registryKeys(PREFIX).hosts, 'kn-down')).not.toBeNull();

    const rm = await cli('hosts', 'rm', 'kn-down', '--yes', '--json');
    expect(rm.code, rm.stderr).toBe(0);
    expect(JSON.parse(rm.stdout)).toMatchObject({ host: 'kn-down', state: 'down', removed: true, dryRun: false });
    expect(await admin.zscore(registryKeys(PREFIX).hosts, 'kn-down')).toBeNull();
    expect(await admin.exists(registryKeys(PREFIX).host('kn-down'), hostKeys(PREFIX, 'kn-down').metrics('1-0a0b0c0d'), hostKeys(PREFIX, 'kn-down').metricsIndex)).toBe(0);
    expect(await admin.exists(hostKeys(PREFIX, 'kn-down').dlqSwept)).toBe(0);
    await expect
      .poll(async () => ((await (await fetch(`${board!.url}/api/queues`, { headers: AUTH })).json()) as any).queues.map((q: any) => q.name), { timeout: 10_000, interval: 200 })
      .not.toContain(boardName('images', 'kn-down'));
  });

  it('--force removes a live host; its worker re-registers with its next heartbeat', async () => {
    const r = await cli('hosts', 'rm', HOST, '--force', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^removed host kn-1 from the registry \(it was up/);
    await expect.poll(async () => (await listHosts(admin, PREFIX, 30_000)).map((h) => `${h.host} ${h.state}`), { timeout: 5_000, interval: 50 }).toEqual([`${HOST} up`]);
  });
});

function silentLog() {
  const noop = () => {};
  const log = { debug: noop, info: noop, warn: noop, error: noop, child: () => log };
  return log as never;
}
