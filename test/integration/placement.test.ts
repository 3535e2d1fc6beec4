/**
 * Placement (`fleetq enqueue restore --host auto`, `enqueueRestoreAuto`) and
 * `fleetq hosts --digest`, against a real redis-server: real registry
 * announcements, snapshot catalogs as workers publish them, holder entries
 * (peer/holders.ts), and real restore queues with waiting jobs. The CLI runs
 * as a process. Every test has its own key prefix: its own fleet.
 *
 * The end-to-end part (real worker processes driving fake-cocoon, which
 * publish their snapshots and run the placed restore) is at the bottom.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cocoonCalls, cocoonGlobalArgs, cocoonVerb, cocoonWorkerEnv, plantSnapshot, readVm, runFakeCocoon, setHostCores } from '../helpers/cocoon.js';
import { qcow2Image } from '../helpers/images.js';
import { plantBlob, removeRoot, tempRoot } from '../helpers/store.js';
import { waitFor } from '../helpers/wait.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';
import { InvalidInputError } from '../../src/lib/errors.js';
import { Digest } from '../../src/lib/digest.js';
import { addHolder, type HolderEntry, holderKeys } from '../../src/peer/holders.js';
import { NoPlacementError } from '../../src/placement/place-restore.js';
import { catalogFrom, lookupSnapshot, publishCatalog, readCatalogMeta } from '../../src/placement/snapshot-catalog.js';
import { enqueueRestore, enqueueRestoreAuto } from '../../src/queues/enqueue-restore.js';
import { imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { announce, removeHost } from '../../src/registry/host-registry.js';
import { hostKeys, registryKeys } from '../../src/registry/keys.js';
import type { CocoonSnapshot } from '../../src/restore/cocoon-records.js';
import { useTestRedis } from '../helpers/redis.js';
import { runCli } from '../helpers/worker-process.js';

const redisSrv = useTestRedis();
let redis: Redis;
const MiB = 1024 * 1024;
const D1 = Digest.parse(`sha256:${'a1'.repeat(32)}`);
const D2 = Digest.parse(`sha256:${'b2'.repeat(32)}`);
const queues: Queue[] = [];
const workers: WorkerProcess[] = [];
const roots: string[] = [];

beforeAll(() => {
  redis = new Redis(redisSrv.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  for (const r of roots) removeRoot(r);
  for (const q of queues) await q.close();
  await redis?.quit();
});

const TIMING = { FLEETQ_HEARTBEAT: '200ms', FLEETQ_HOST_DOWN_AFTER: '3s' };

function queueClientFor(prefix: string, host: string): Queue {
  const q = new Queue(restoreQueueName(host), { connection: redis, prefix });
  queues.push(q);
  return q;
}

/** A worker process on its own root (cocoon's too), driving fake-cocoon; `prepare` plants what is there before it starts. */
async function worker(prefix: string, host: string, env: Record<string, string> = {}, prepare: (root: string) => void = () => {}) {
  const root = tempRoot();
  roots.push(root);
  setHostCores(root, 16);
  prepare(root);
  const w = await startWorkerProcess({ REDIS_URL: redisSrv.url, FLEETQ_PREFIX: prefix, FLEETQ_HOST: host, FLEETQ_ROOT: root, ...cocoonWorkerEnv(root), ...TIMING, ...env });
  workers.push(w);
  return { root, w };
}

let prefixes = 0;
/** A fleet of its own: a fresh key prefix, and helpers to build its state. */
function fleet() {
  const prefix = `pl${++prefixes}`;
  const cli = (...args: string[]) => runCli(args, { REDIS_URL: redisSrv.url, FLEETQ_PREFIX: prefix });
  const queueOf = (host: string) => {
    const q = new Queue(restoreQueueName(host), { connection: redis, prefix });
    queues.push(q);
    return q;
  };
  return {
    prefix,
    cli,
    queueOf,
    /** A registered host whose one worker consumes both queues; `silentMs` ago it last beat (0: now). */
    async host(host: string, o: { silentMs?: number; queues?: string[]; health?: 'ok' | 'disk-full' | 'store-unwritable' } = {}) {
      const at = Date.now() - (o.silentMs ?? 0);
      await announce(
        redis,
        prefix,
        { instance: `${host}-i`, host, version: 't', pid: 1, concurrency: 1, restoreConcurrency: 1, queues: o.queues ?? [imageQueueName(host), restoreQueueName(host)], startedAt: at, health: o.health },
        at,
      );
    },
    /** What the host's worker publishes from `cocoon snapshot ls`. */
    async snapshots(host: string, snaps: Array<{ name: string; digest?: Digest }>): Promise<string[]> {
      const records: CocoonSnapshot[] = snaps.map((s, i) => ({ id: `${'A'.repeat(24)}${i}${host.length}`, name: s.name, ...(s.digest ? { image_digest: s.digest.value } : {}) }));
      await publishCatalog(redis, prefix, host, catalogFrom(records), { pid: 1, ttlMs: 60_000 });
      return records.map((r) => r.id);
    },
    async holds(host: string, digest: Digest, o: Partial<HolderEntry> = {}) {
      await addHolder(redis, prefix, digest, host, { state: 'complete', peerUrl: `http://${host}.test:7480`, instance: `${host}-i`, size: 256 * MiB, at: Date.now(), ...o });
    },
    /** `n` restore jobs waiting in the host's restores queue (no worker runs them). */
    async waiting(host: string, n: number) {
      for (let i = 0; i < n; i++) await enqueueRestore(queueOf(host), { kind: 'clone', snapshot: 'filler', name: `fill-${host}-${i}` }, { host, attempts: 1, backoffMs: 10 });
    },
    /** Jobs in the host's restores queue (any pending state). */
    async pending(host: string) {
      const c = await queueOf(host).getJobCounts('waiting', 'prioritized', 'delayed', 'active');
      return Object.values(c).reduce((a, b) => a + b, 0);
    },
  };
}

const autoArgs = (...extra: string[]) => ['enqueue', 'restore', '--host', 'auto', '--kind', 'clone', '--snapshot', 's1', ...extra];

describe('enqueue restore --host auto', () => {
  it('picks the host with the snapshot AND the image over one with the snapshot only, even with a longer queue; the job data and the output say why', async () => {
    const f = fleet();
    for (const h of ['a', 'b', 'c']) await f.host(h);
    await f.snapshots('a', [{ name: 's1', digest: D1 }]);
    await f.snapshots('b', [{ name: 's1', digest: D1 }]);
    await f.snapshots('c', [{ name: 'other', digest: D1 }]);
    await f.holds('a', D1, { size: 4096 * MiB });
    await f.waiting('a', 2);

    const r = await f.cli(...autoArgs('--name', 'vm-loc', '--json'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(''); // --json: nothing else
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ state: 'queued', vm: 'vm-loc', host: 'a', placement: { host: 'a', score: 100, restoreQueue: 2, holding: 'complete', digest: D1.value, imageBytes: 4096 * MiB } });
    expect(out.placement.reason).toBe(`has snapshot s1; holds sha256:${'a1'.repeat(6)}… (4.0 GiB), locality 100/100; restore queue 2; best locality of 2 eligible hosts`);
    expect(out.placement.candidates).toEqual([
      { host: 'a', eligible: true, score: 100, restoreQueue: 2, holding: 'complete', digest: D1.value },
      { host: 'b', eligible: true, score: 0, restoreQueue: 0, digest: D1.value },
      { host: 'c', eligible: false, rejected: 'does not have snapshot s1 (1 snapshot published)' },
    ]);
    // The job is on a's restores queue, its data carries the decision.
    const job = await f.queueOf('a').getJob(out.jobId);
    expect(job!.data).toMatchObject({ kind: 'clone', snapshot: 's1', name: 'vm-loc', placement: { host: 'a', reason: out.placement.reason, score: 100, restoreQueue: 2, digest: D1.value } });
    expect(job!.data.placement.candidates).toBeUndefined(); // the full list stays in the CLI output
    expect(await f.pending('b')).toBe(0);

    // Text mode: the job id on stdout (scripts capture it), the choice and its reason on stderr.
    const t = await f.cli(...autoArgs());
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(t.stderr).toMatch(/^placed on a: has snapshot s1; holds sha256:a1a1a1a1a1a1… \(4\.0 GiB\), locality 100\/100; restore queue 3; best locality of 2 eligible hosts\n$/);
    expect(await f.queueOf('a').getJob(t.stdout.trim())).toBeDefined();
  });

  it('no host has the snapshot → exit 2, nothing enqueued, and every host considered is named with the reason', async () => {
    const f = fleet();
    await f.host('a');
    await f.host('b', { silentMs: 120_000 });
    await f.host('c');
    await f.snapshots('a', [{ name: 'x' }, { name: 'y' }]);
    await f.snapshots('b', [{ name: 's1' }]);
    const r = await f.cli(...autoArgs());
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^fleetq: --host auto: no live host has snapshot s1 and can take the restore \(considered: a: does not have snapshot s1 \(2 snapshots published\); b: down \(last heartbeat 2m\d*s? ago\); c: published no snapshot list \(no worker with the restores queue has listed its snapshots yet\)\); nothing was enqueued\n$/,
    );
    for (const h of ['a', 'b', 'c']) expect(await f.pending(h)).toBe(0);
    // An empty registry says so.
    const empty = await fleet().cli(...autoArgs());
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/\(considered: none — no host is registered\)/);
  });

  it('--hosts restricts the candidates; unknown names are rejected as not registered; --hosts needs --host auto and valid ids', async () => {
    const f = fleet();
    for (const h of ['a', 'b', 'c']) await f.host(h);
    for (const h of ['a', 'b']) await f.snapshots(h, [{ name: 's1', digest: D1 }]);
    await f.snapshots('c', []);
    await f.holds('a', D1, { size: 4096 * MiB });

    const only = JSON.parse((await f.cli(...autoArgs('--hosts', 'b,c', '--json'))).stdout);
    expect(only.host).toBe('b');
    expect(only.placement.candidates.map((c: { host: string }) => c.host)).toEqual(['b', 'c']);
    expect(await f.pending('a')).toBe(0);

    const none = await f.cli(...autoArgs('--hosts', 'c,zz'));
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/considered: c: does not have snapshot s1 \(0 snapshots published\); zz: not registered \(no worker has announced this host id\)\)/);

    const notAuto = await f.cli('enqueue', 'restore', '--host', 'a', '--hosts', 'a,b', '--kind', 'clone', '--snapshot', 's1');
    expect(notAuto.code).toBe(2);
    expect(notAuto.stderr).toBe('fleetq: --hosts: only with --host auto (it restricts the candidates)\n');
    const bad = await f.cli(...autoArgs('--hosts', 'a,b:c'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^fleetq: --hosts: host id "b:c" must be 1-63 characters/);
    const ensure = await f.cli('enqueue', 'ensure-image', '--host', 'auto', '--image', 'https://img.example/x.qcow2');
    expect(ensure.code).toBe(2);
    expect(ensure.stderr).toMatch(/^fleetq: --host: "auto" is for enqueue restore only/);
    // Only the first call enqueued anything.
    expect([await f.pending('a'), await f.pending('b'), await f.pending('c')]).toEqual([0, 1, 0]);
  });

  it('a down host is never chosen, however good its locality; a host without a restores worker neither', async () => {
    const f = fleet();
    await f.host('down', { silentMs: 45_000 });
    await f.host('imgs', { queues: [imageQueueName('imgs')] });
    await f.host('up');
    for (const h of ['down', 'imgs', 'up']) await f.snapshots(h, [{ name: 's1', digest: D1 }]);
    await f.holds('down', D1, { size: 4096 * MiB });
    await f.holds('imgs', D1, { size: 4096 * MiB });
    await f.waiting('up', 4);
    const out = JSON.parse((await f.cli(...autoArgs('--json'))).stdout);
    expect(out.host).toBe('up');
    expect(out.placement).toMatchObject({ score: 0, restoreQueue: 4 });
    expect(out.placement.reason).toMatch(/; restore queue 4; the only eligible host$/);
    expect(out.placement.candidates).toEqual([
      { host: 'up', eligible: true, score: 0, restoreQueue: 4, digest: D1.value },
      { host: 'down', eligible: false, rejected: expect.stringMatching(/^down \(last heartbeat 4\ds ago\)$/) },
      { host: 'imgs', eligible: false, rejected: 'no live worker consumes its restores queue (FLEETQ_QUEUES)' },
    ]);
    // With the only live candidate excluded: no placement, though a down host has it.
    const r = await f.cli(...autoArgs('--hosts', 'down'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/considered: down: down \(last heartbeat 4\ds ago\)\)/);
  });

  it('ties go to the shortest restore queue, then the host id (the library call, which records it the same way)', async () => {
    const f = fleet();
    for (const h of ['e', 'f', 'g']) await f.host(h);
    for (const h of ['e', 'f', 'g']) await f.snapshots(h, [{ name: 's1', digest: D1 }]);
    await f.waiting('e', 3);
    await f.waiting('f', 1);
    await f.waiting('g', 2);
    const opts = { prefix: f.prefix, downAfterMs: 30_000, attempts: 1, backoffMs: 10 };

    const first = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 's1', name: 'vm-t1' }, opts);
    expect(first).toMatchObject({ host: 'f', vm: 'vm-t1', placement: { host: 'f', score: 0, restoreQueue: 1 } });
    expect(first.placement.reason).toBe(`has snapshot s1; does not hold sha256:${'a1'.repeat(6)}… (no eligible host does); restore queue 1 (shortest)`);
    expect((await f.queueOf('f').getJob(first.jobId))!.data.placement).toMatchObject({ host: 'f', restoreQueue: 1 });
    // f now has 2, as g: tied on everything but the host id.
    const second = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 's1', name: 'vm-t2' }, opts);
    expect(second.host).toBe('f');
    expect(second.placement.reason).toMatch(/restore queue 2 \(tied; first by host id\)$/);
    expect(second.decision.verdicts.map((v) => [v.host, v.restoreQueue])).toEqual([
      ['f', 2],
      ['g', 2],
      ['e', 3],
    ]);
    const third = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 's1', name: 'vm-t3' }, opts);
    expect(third.host).toBe('g');
  });

  it('the library call: a bad payload fails before any read; no placement is a NoPlacementError carrying the decision', async () => {
    const f = fleet();
    await f.host('a');
    await f.snapshots('a', [{ name: 's1', digest: D1 }]);
    const opts = { prefix: f.prefix, downAfterMs: 30_000, attempts: 1, backoffMs: 10 };
    await expect(enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 's1', name: '-x' }, opts)).rejects.toThrow(InvalidInputError);
    const err = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 's2', name: 'vm-n' }, opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoPlacementError);
    expect((err as NoPlacementError).code).toBe('E_NO_PLACEMENT');
    expect((err as NoPlacementError).decision.verdicts).toEqual([{ host: 'a', eligible: false, score: 0, rejected: 'does not have snapshot s2 (1 snapshot published)' }]);
    // A pinned digest the host's snapshot contradicts: the restore would fail there, so the host is not eligible.
    const pinned = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 's1', name: 'vm-p', imageDigest: D2.value }, opts).catch((e: unknown) => e);
    expect((pinned as NoPlacementError).message).toMatch(/a: its snapshot s1 boots sha256:a1a1a1a1a1a1…, not the job's sha256:b2b2b2b2b2b2…/);
    // A snapshot named by its cocoon ID is found too.
    const [id] = await f.snapshots('a', [{ name: 's1', digest: D1 }]);
    const byId = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: id!, name: 'vm-id' }, opts);
    expect(byId.host).toBe('a');
    expect(byId.placement.reason).toMatch(new RegExp(`^has snapshot ${id}; `));
    expect(await f.pending('a')).toBe(1);
  });
});

describe('fleetq hosts --digest', () => {
  it('lists the live holders (state, peer, size, load); entries that are ignored are shown marked stale, with why', async () => {
    const f = fleet();
    await f.host('h1');
    await f.host('h2');
    await f.host('gone', { silentMs: 600_000 });
    await f.holds('h1', D1, { size: 300 * MiB });
    await f.holds('h2', D1, { state: 'partial', size: 300 * MiB });
    await f.holds('gone', D1);
    await f.holds('h2', D2, { state: 'partial', instance: 'dead-instance' });
    await redis.hset(holderKeys(f.prefix).load, 'h1', '2');

    const j = await f.cli('hosts', '--digest', D1.value, '--json');
    expect(j.code, j.stderr).toBe(0);
    const out = JSON.parse(j.stdout);
    expect(out.digest).toBe(D1.value);
    expect(out.holders).toEqual([
      { host: 'h1', state: 'complete', peerUrl: 'http://h1.test:7480', size: 300 * MiB, load: 2, at: expect.any(Number) },
      { host: 'h2', state: 'partial', peerUrl: 'http://h2.test:7480', size: 300 * MiB, load: 0, at: expect.any(Number) },
    ]);
    expect(out.stale).toEqual([{ host: 'gone', state: 'complete', peerUrl: 'http://gone.test:7480', size: 256 * MiB, at: expect.any(Number), reason: 'host down (last heartbeat 10m ago)' }]);

    const t = await f.cli('hosts', '--digest', D1.value);
    expect(t.code).toBe(0);
    const lines = t.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^HOST\s+STATE\s+PEER\s+SIZE\s+LOAD\s+SINCE\s+LIVE$/);
    expect(lines[1]).toMatch(/^h1\s+complete\s+http:\/\/h1\.test:7480\s+300\.0 MiB\s+2\s+\d+s ago\s+yes$/);
    expect(lines[2]).toMatch(/^h2\s+partial\s+http:\/\/h2\.test:7480\s+300\.0 MiB\s+0\s+/);
    expect(lines[3]).toMatch(/^gone\s+complete\s+.*no: host down \(last heartbeat 10m ago\)$/);

    const partialDead = JSON.parse((await f.cli('hosts', '--digest', D2.value, '--json')).stdout);
    expect(partialDead).toEqual({ digest: D2.value, holders: [], stale: [expect.objectContaining({ host: 'h2', state: 'partial', reason: 'the worker process of this download is gone' })] });
    const nobody = await f.cli('hosts', '--digest', `sha256:${'0'.repeat(64)}`);
    expect(nobody.stdout).toBe(`no host holds sha256:${'0'.repeat(64)}\n`);
  });

  it('a bad digest is a usage error naming --digest', async () => {
    const f = fleet();
    for (const bad of ['sha256:ABC', 'abc', `sha256:${'A'.repeat(64)}`]) {
      const r = await f.cli('hosts', '--digest', bad);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`fleetq: --digest: must be "sha256:" followed by 64 lowercase hex characters (got ${JSON.stringify(bad)})\n`);
    }
  });

  it('fleetq hosts shows what each host published; removing a host drops its catalog', async () => {
    const f = fleet();
    await f.host('p');
    await f.host('q');
    await f.snapshots('p', [{ name: 's1' }, { name: 's2' }]);
    const list = JSON.parse((await f.cli('hosts', '--json')).stdout);
    expect(list.find((h: { host: string }) => h.host === 'p').snapshots).toMatchObject({ published: 2, count: 2, listedAt: expect.any(Number) });
    expect(list.find((h: { host: string }) => h.host === 'q').snapshots).toBeNull();
    expect((await f.cli('hosts')).stdout).toMatch(/^p\s+up\s+ok\s+1\s+\S+\s+\S+\s+2\s+/m);
    expect(await removeHost(redis, f.prefix, 'p', { metrics: false })).toBe(true);
    expect(await readCatalogMeta(redis, f.prefix, 'p')).toBeUndefined();
    expect(await redis.exists(hostKeys(f.prefix, 'p').snapshots)).toBe(0);
  });
});

describe('workers publish their cocoon snapshots', () => {
  it('at start and every FLEETQ_SNAPSHOT_REFRESH, through cocoon snapshot ls with the global flags; an images-only worker publishes nothing; a failing cocoon is logged once and recorded', async () => {
    const prefix = 'plw';
    const img = qcow2Image(3);
    const a = await worker(prefix, 'pub-a', { FLEETQ_SNAPSHOT_REFRESH: '1s' }, (root) => plantSnapshot(root, { name: 'golden', image: 'https://img.example/golden.qcow2', imageDigest: img.digest }));
    const found = await waitFor('pub-a to publish golden', async () => (await lookupSnapshot(redis, prefix, 'pub-a', 'golden'))?.entry, { timeoutMs: 20_000 });
    expect(found.digest?.value).toBe(img.digest);
    const ls = cocoonCalls(a.root).filter((c) => cocoonVerb(c.argv) === 'snapshot ls');
    expect(ls.length).toBeGreaterThanOrEqual(1);
    expect(ls[0]!.argv).toEqual(['snapshot', 'ls', '--format', 'json', '--root-dir', a.root, '--run-dir', `${a.root}/run`, '--log-dir', `${a.root}/log`]);

    // A snapshot saved later shows up within a refresh.
    plantSnapshot(a.root, { name: 'later', imageDigest: null, blobHex: null });
    await waitFor('pub-a to publish later', async () => (await lookupSnapshot(redis, prefix, 'pub-a', 'later'))?.entry, { timeoutMs: 20_000 });
    expect(await readCatalogMeta(redis, prefix, 'pub-a')).toMatchObject({ count: 2, published: 2, truncated: 0, pid: a.w.proc.pid });

    // No restores queue: no cocoon call, nothing published, while pub-a kept refreshing.
    const b = await worker(prefix, 'pub-b', { FLEETQ_SNAPSHOT_REFRESH: '1s', FLEETQ_QUEUES: 'images' });
    // A missing cocoon: recorded in the meta, logged once however often it fails.
    const c = await worker(prefix, 'pub-c', { FLEETQ_SNAPSHOT_REFRESH: '300ms', FLEETQ_COCOON_BIN: '/nonexistent/cocoon' });
    const first = await waitFor('pub-c to record its error', async () => (await readCatalogMeta(redis, prefix, 'pub-c'))?.errorAt, { timeoutMs: 20_000 });
    await waitFor('pub-c to fail again', async () => ((await readCatalogMeta(redis, prefix, 'pub-c'))?.errorAt ?? 0) > first, { timeoutMs: 20_000 });
    expect(await readCatalogMeta(redis, prefix, 'pub-c')).toMatchObject({ published: 0, error: expect.stringMatching(/^cocoon binary not found: \/nonexistent\/cocoon/) });
    expect(c.w.logs.filter((l) => /cannot list cocoon snapshots/.test(String(l.msg)))).toHaveLength(1);
    expect(c.w.proc.exitCode).toBeNull(); // not fatal

    const lsOfA = cocoonCalls(a.root).length;
    await waitFor('pub-a to refresh once more', () => cocoonCalls(a.root).length > lsOfA, { timeoutMs: 20_000 });
    expect(cocoonCalls(b.root)).toEqual([]);
    expect(await redis.exists(hostKeys(prefix, 'pub-b').snapshots)).toBe(0);

    // And placement says so: pub-c is up and consumes restores, but cannot list its snapshots.
    const r = await runCli(autoArgs('--json'), { REDIS_URL: redisSrv.url, FLEETQ_PREFIX: prefix, ...TIMING });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      '(considered: pub-a: does not have snapshot s1 (2 snapshots published); pub-b: no live worker consumes its restores queue (FLEETQ_QUEUES); pub-c: cannot list its snapshots: `cocoon snapshot ls` failed: cocoon binary not found: /nonexistent/cocoon (install cocoon or point the worker at it)); nothing was enqueued',
    );
  });

  it('a restore that finds its snapshot gone makes the worker list again at once (not a refresh interval later)', async () => {
    const prefix = 'plg';
    const img = qcow2Image(4);
    // Default FLEETQ_SNAPSHOT_REFRESH (1m): only the failure can bring the list up to date within this test.
    const h = await worker(prefix, 'gone-1', {}, (root) => {
      plantSnapshot(root, { name: 'doomed', imageDigest: img.digest });
      plantSnapshot(root, { name: 'kept', imageDigest: img.digest });
    });
    await waitFor('doomed to be published', async () => (await lookupSnapshot(redis, prefix, 'gone-1', 'doomed'))?.entry, { timeoutMs: 20_000 });
    const rm = await runFakeCocoon(['snapshot', 'rm', 'doomed', ...cocoonGlobalArgs(h.root)]);
    expect(rm.code, rm.stderr).toBe(0);
    const restores = queueClientFor(prefix, 'gone-1');
    const placed = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 'doomed', name: 'vm-doomed' }, { prefix, downAfterMs: 3_000, attempts: 1, backoffMs: 10 });
    expect(placed.host).toBe('gone-1'); // the published list still has it
    const job = await waitFor('the restore to fail', async () => {
      const j = await restores.getJob(placed.jobId);
      return (await j?.isFailed()) ? j : undefined;
    }, { timeoutMs: 30_000 });
    expect(job.failedReason).toMatch(/snapshot not found \[E_COCOON_SNAPSHOT_NOT_FOUND/);
    await waitFor('the list to drop doomed', async () => (await lookupSnapshot(redis, prefix, 'gone-1', 'doomed'))?.entry === undefined, { timeoutMs: 15_000 });
    expect((await lookupSnapshot(redis, prefix, 'gone-1', 'kept'))?.entry).toBeDefined();
    const again = await enqueueRestoreAuto(redis, { kind: 'clone', snapshot: 'doomed', name: 'vm-doomed-2' }, { prefix, downAfterMs: 3_000, attempts: 1, backoffMs: 10 }).catch((e: unknown) => e);
    expect((again as Error).message).toContain('gone-1: does not have snapshot doomed (1 snapshot published)');
  });

  it('end to end: --host auto places the restore on the worker that published the snapshot, and it completes there', async () => {
    const prefix = 'ple';
    const img = qcow2Image(5);
    // Default FLEETQ_SNAPSHOT_REFRESH (1m): what each worker lists at start is what placement sees.
    const one = await worker(prefix, 'e2e-1', {}, (root) => plantSnapshot(root, { name: 'other', imageDigest: img.digest }));
    const two = await worker(prefix, 'e2e-2', {}, (root) => {
      plantBlob(root, img.hex, img.body);
      plantSnapshot(root, { name: 'golden', image: 'https://img.example/golden.qcow2', imageDigest: img.digest });
    });
    await waitFor('e2e-2 to publish golden', async () => (await lookupSnapshot(redis, prefix, 'e2e-2', 'golden'))?.entry, { timeoutMs: 20_000 });
    await waitFor('e2e-1 to publish its list', async () => (await lookupSnapshot(redis, prefix, 'e2e-1', 'other'))?.entry, { timeoutMs: 20_000 });

    const r = await runCli(['enqueue', 'restore', '--host', 'auto', '--kind', 'clone', '--snapshot', 'golden', '--name', 'vm-placed', '--wait', '--timeout', '60s', '--json'], {
      REDIS_URL: redisSrv.url,
      FLEETQ_PREFIX: prefix,
      ...TIMING,
    });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ state: 'completed', host: 'e2e-2', vm: 'vm-placed', outcome: 'done', digest: img.digest, placement: { host: 'e2e-2', digest: img.digest } });
    expect(out.placement.reason).toMatch(/^has snapshot golden; does not hold sha256:[0-9a-f]{12}… \(no eligible host does\); restore queue 0; the only eligible host$/);
    expect(out.placement.candidates).toEqual([
      { host: 'e2e-2', eligible: true, score: 0, restoreQueue: 0, digest: img.digest },
      { host: 'e2e-1', eligible: false, rejected: 'does not have snapshot golden (1 snapshot published)' },
    ]);
    expect(readVm(two.root, 'vm-placed')).toMatchObject({ state: 'running' });
    expect(readVm(one.root, 'vm-placed')).toBeUndefined();
  });
});
