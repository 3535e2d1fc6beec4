/**
 * The Redis key layout (issue 14), on a real redis-server: a full run (ensure:
 * pull with a retry, cache hit, unpinned pull, herd; a restore flow; a dead
 * letter; `fleetq retry`; the CLI's reads; the board's API and /metrics; the
 * worker's stop) under MONITOR, then
 *   - every key in Redis (SCAN) and every key any command touched (MONITOR)
 *     is an instance of a documented pattern (redis/key-patterns.ts, the
 *     table in docs/ARCHITECTURE.md), every channel too, and every pattern
 *     this version writes was seen;
 *   - every multi-key command, every MULTI…EXEC and every Lua script (with
 *     the keys its commands touched, declared or not) stays in one Cluster
 *     slot (CRC16, as CLUSTER KEYSLOT), and a host's keys are in its queues'
 *     slot.
 * Then `fleetq migrate` carries the 0.1 layout over.
 * (The same run against a real Cluster and Sentinel: the ha tests.)
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageQueueName } from '../../src/queues/names.js';
import { KEY_PATTERNS, keySlot, matchKeyPattern } from '../../src/redis/key-patterns.js';
import { hostKeys, legacyRegistryKeys, registryKeys } from '../../src/registry/keys.js';
import { type CommandUnit, CommandLog } from '../helpers/command-log.js';
import { type FullRun, fullRun } from '../helpers/full-run.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli } from '../helpers/worker-process.js';
import { scanAllKeys } from '../helpers/redis-keys.js';

const redis = useTestRedis();
const PREFIX = 'fq-layout';
const HOST = 'kl-1';
const env = () => ({ REDIS_URL: redis.url, FLEETQ_PREFIX: PREFIX });

let upstream: Upstream;
let root: string;
let admin: Redis;
let run: FullRun | undefined;
let units: CommandUnit[] = [];

const allKeys = () => scanAllKeys(admin);

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  admin = new Redis(redis.url);
  const log = await CommandLog.start(redis.url);
  try {
    run = await fullRun({ env: env(), host: HOST, root, upstream });
    await run.stop(); // the worker's last heartbeat and withdrawal are part of the run
    run = undefined;
  } finally {
    log.stop();
  }
  units = await log.units();
}, 240_000);

afterAll(async () => {
  await run?.stop().catch(() => {});
  admin?.disconnect();
  await upstream?.stop();
  if (root) removeRoot(root);
});

describe('every key is documented', () => {
  it('SCAN: every key in Redis matches a documented pattern of this version, for this host or the registry', async () => {
    const keys = await allKeys();
    expect(keys.length).toBeGreaterThan(30);
    const stray = keys.filter((k) => !matchKeyPattern(PREFIX, k));
    expect(stray).toEqual([]);
    for (const k of keys) {
      const m = matchKeyPattern(PREFIX, k)!;
      expect(m.pattern.planned, k).toBeFalsy();
      if (m.pattern.slot === 'digest') expect(m.subject, k).toMatch(/^[0-9a-f]{64}$/);
      else expect(m.subject, k).toBe(m.pattern.slot === 'registry' ? 'registry' : HOST);
      // The documented type (BullMQ's own keys have many).
      if (m.pattern.kind !== 'BullMQ') expect(await admin.type(k), k).toBe(m.pattern.kind);
    }
  });

  it('MONITOR: every key any command touched (also those deleted since: locks) and every channel matches a documented pattern', () => {
    const keys = new Set(units.flatMap((u) => u.keys));
    const channels = new Set(units.flatMap((u) => u.channels));
    expect(keys.size).toBeGreaterThan(50);
    expect([...keys].filter((k) => !matchKeyPattern(PREFIX, k))).toEqual([]);
    expect(channels.size).toBeGreaterThan(0);
    expect([...channels].filter((c) => !matchKeyPattern(PREFIX, c, { channel: true }))).toEqual([]);
  });

  it('the run wrote every pattern this version has (the table has no stale row)', async () => {
    const seen = new Set<string>();
    for (const k of [...units.flatMap((u) => u.keys), ...(await allKeys())]) seen.add(matchKeyPattern(PREFIX, k)!.pattern.pattern);
    for (const c of units.flatMap((u) => u.channels)) seen.add(matchKeyPattern(PREFIX, c, { channel: true })!.pattern.pattern);
    expect([...seen].sort()).toEqual(KEY_PATTERNS.filter((p) => !p.planned).map((p) => p.pattern).sort());
  });
});

describe('one slot per operation', () => {
  it('every multi-key command, MULTI…EXEC and Lua script of the run touched keys of one Cluster slot', () => {
    const multiKey = units.filter((u) => new Set(u.keys).size >= 2);
    const crossSlot = multiKey.filter((u) => new Set(u.keys.map(keySlot)).size > 1).map((u) => `${u.kind}: ${u.text.slice(0, 300)} → ${[...new Set(u.keys)].map((k) => `${k}@${keySlot(k)}`).join(', ')}`);
    expect(crossSlot).toEqual([]);
    // Not vacuous: the run had scripts (BullMQ's, the dead-letter record, queue age), transactions
    // (announce, metrics push, dead-letter removal) and multi-key commands (MGET of snapshots, DEL…).
    const kinds = (k: CommandUnit['kind']) => multiKey.filter((u) => u.kind === k).length;
    expect(kinds('script')).toBeGreaterThan(50);
    expect(kinds('multi')).toBeGreaterThan(5);
    // The flow: a script that moved the restore's image job to completed touched the restore's keys too.
    expect(multiKey.some((u) => u.kind === 'script' && u.keys.some((k) => k.startsWith(`${PREFIX}:images-{${HOST}}:`)) && u.keys.some((k) => k.startsWith(`${PREFIX}:restores-{${HOST}}:`)))).toBe(true);
    // The dead-letter record: its store and the job's queue in one script.
    expect(multiKey.some((u) => u.kind === 'script' && u.keys.includes(hostKeys(PREFIX, HOST).dlqEntries) && u.keys.includes(`${PREFIX}:${imageQueueName(HOST)}:failed`))).toBe(true);
    // An announcement: the registry's zset and the host's hash in one MULTI.
    expect(multiKey.some((u) => u.kind === 'multi' && u.keys.includes(registryKeys(PREFIX).hosts) && u.keys.includes(registryKeys(PREFIX).host(HOST)))).toBe(true);
  });

  it("everything of the host is in its queues' slot; the registry in one slot of its own", () => {
    const hostSlot = keySlot(`${PREFIX}:${imageQueueName(HOST)}:wait`);
    const keys = new Set(units.flatMap((u) => u.keys));
    let host = 0;
    for (const k of keys) {
      const m = matchKeyPattern(PREFIX, k)!;
      if (m.pattern.slot === 'host') {
        host++;
        expect(keySlot(k), k).toBe(hostSlot);
      } else if (m.pattern.slot === 'registry') expect(keySlot(k), k).toBe(keySlot('{registry}'));
    }
    expect(host).toBeGreaterThan(40);
  });
});

describe('fleetq migrate: the 0.1 key layout → the Cluster layout', () => {
  const OLD = 'old-h';
  const old = legacyRegistryKeys(PREFIX);
  const now = Date.now();
  const announcement = { instance: '7-0a0b0c0d', host: OLD, version: '0.1.0', pid: 7, machine: 'm', concurrency: 4, restoreConcurrency: 2, queues: [imageQueueName(OLD)], startedAt: now - 60_000, lastSeen: now, health: 'ok' };
  const letter = (id: string, queue: string, failedAt: number) => ({ id: `${queue}/${id}`, host: OLD, queue, queueKind: 'images', originalId: id, name: 'ensure-image', data: { image: 'https://img.example/x.qcow2' }, reason: 'HTTP 404', attemptsMade: 1, failedAt });
  const migrate = async (...args: string[]) => {
    const r = await runCli(['migrate', ...args, '--json'], env());
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout).keys;
  };

  beforeAll(async () => {
    // What a fleetq 0.1 worker left: a registered host, two dead letters (one under the pre-tag queue name),
    // an entry that does not parse, a sweep watermark, a metrics snapshot.
    await admin.zadd(old.hosts, now, OLD);
    await admin.hset(old.host(OLD), announcement.instance, JSON.stringify(announcement));
    const a = letter('j1', imageQueueName(OLD), now - 2000);
    const b = letter('j2', `images-${OLD}`, now - 1000);
    await admin.hset(old.dlqEntries, a.id, JSON.stringify(a), b.id, JSON.stringify(b), 'images-{old-h}/bad', '{not json');
    await admin.zadd(old.dlqIndex, a.failedAt, a.id, b.failedAt, b.id, now, 'images-{old-h}/bad');
    await admin.hset(old.dlqSwept, imageQueueName(OLD), String(now - 5000));
    await admin.set(`${PREFIX}:metrics:${OLD}:7-0a0b0c0d`, '[]', 'PX', 3_600_000);
  });

  it('--dry-run counts and changes nothing', async () => {
    const before = await allKeys();
    expect(await migrate('--dry-run')).toMatchObject({ dryRun: true, hosts: 1, workers: 1, deadLetters: 2, watermarks: 1, metrics: 1, unreadable: ['images-{old-h}/bad'] });
    // Nothing new, and every old key still there (BullMQ's short-lived keys may expire meanwhile).
    const after = await allKeys();
    expect(after.filter((k) => !before.includes(k))).toEqual([]);
    expect(after).toEqual(expect.arrayContaining(before.filter((k) => !matchKeyPattern(PREFIX, k))));
    expect(before.filter((k) => !matchKeyPattern(PREFIX, k))).toHaveLength(6);
  });

  it('moves the registry, dead letters and watermarks, deletes old snapshots; a second run moves nothing', async () => {
    expect(await migrate()).toMatchObject({ dryRun: false, hosts: 1, workers: 1, deadLetters: 2, watermarks: 1, metrics: 1, unreadable: ['images-{old-h}/bad'] });
    const reg = registryKeys(PREFIX);
    const hk = hostKeys(PREFIX, OLD);
    expect(Number(await admin.zscore(reg.hosts, OLD))).toBe(now);
    expect(JSON.parse((await admin.hget(reg.host(OLD), announcement.instance))!)).toEqual(announcement);
    expect(await admin.hget(hk.dlqSwept, imageQueueName(OLD))).toBe(String(now - 5000));
    // The dead letters are where `fleetq dlq` reads them, oldest first.
    const r = await runCli(['dlq', 'ls', '--host', OLD, '--json'], env());
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).map((d: { originalId: string }) => d.originalId)).toEqual(['j1', 'j2']);
    // Old keys are gone, but for the entry that does not parse.
    for (const k of [old.hosts, old.host(OLD), old.dlqSwept, `${PREFIX}:metrics:${OLD}:7-0a0b0c0d`]) expect(await admin.exists(k), k).toBe(0);
    expect(await admin.hkeys(old.dlqEntries)).toEqual(['images-{old-h}/bad']);
    // Everything else in Redis is of the documented layout now.
    expect((await allKeys()).filter((k) => !matchKeyPattern(PREFIX, k))).toEqual([old.dlqEntries, old.dlqIndex].sort());

    expect(await migrate()).toMatchObject({ hosts: 0, workers: 0, deadLetters: 0, watermarks: 0, metrics: 0, unreadable: ['images-{old-h}/bad'] });
    expect(JSON.parse((await runCli(['dlq', 'ls', '--host', OLD, '--json'], env())).stdout)).toHaveLength(2);
  });
});
