/**
 * fleetq unchanged on a real Redis Cluster (3 masters + 3 replicas on
 * loopback): worker processes, the CLI and the board given only
 * FLEETQ_REDIS_CLUSTER_NODES. The ensure herd (one GET), a restore flow
 * (parent on restores-{h}, image child on images-{h}), `fleetq retry`, the
 * board's API, and then where every key of that run landed: each matches a
 * documented pattern (src/redis/key-patterns.ts) and sits in its tag's slot
 * on the master serving it; the three hosts' keys on three masters.
 */
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load.js';
import { pullReleasedChannel } from '../../src/lock/keys.js';
import { ReleaseNotifier } from '../../src/lock/release-notifier.js';
import { Digest } from '../../src/lib/digest.js';
import { connectRedis, waitReady } from '../../src/redis/connect.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { boardName, imageChildId, imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { matchKeyPattern } from '../../src/redis/key-patterns.js';
import { basic, type BoardProcess, sameOrigin, startBoardProcess } from '../helpers/board-process.js';
import { cocoonWorkerEnv, plantSnapshot, readVm, setHostCores } from '../helpers/cocoon.js';
import { clusterClient } from '../helpers/ha-clients.js';
import { qcow2Image, rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestCluster } from '../helpers/redis-cluster.js';
import { assertConsistent, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const ha = useTestCluster();
const CREDS = { FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 'cluster-pass' };
const AUTH = basic('oncall', 'cluster-pass');
let upstream: Upstream;
/** Three host ids whose queues the cluster serves from three different masters (picked at run time). */
let HOSTS: { herd: string; restore: string; ops: string };
const clients: QueueClient[] = [];
const workers: WorkerProcess[] = [];
const roots: string[] = [];
let board: BoardProcess | undefined;

const redisEnv = () => ({ FLEETQ_REDIS_CLUSTER_NODES: ha.cluster.seeds });
const connect = () => clusterClient(ha.cluster.seeds);
const TIMING = { FLEETQ_HEARTBEAT: '200ms', FLEETQ_HOST_DOWN_AFTER: '3s' };

/** The test's client of a queue (one per queue, closed at the end). */
async function queue(name: string): Promise<QueueClient> {
  const open = clients.find((c) => c.queue.name === name);
  if (open) return open;
  const q = await queueClient(connect, name);
  clients.push(q);
  return q;
}

async function worker(host: string, root: string, env: Record<string, string> = {}): Promise<WorkerProcess> {
  const w = await startWorkerProcess({ ...redisEnv(), ...TIMING, FLEETQ_HOST: host, FLEETQ_ROOT: root, ...env });
  workers.push(w);
  return w;
}

function root(): string {
  const r = tempRoot();
  roots.push(r);
  return r;
}

const cli = (...args: string[]) => runCli([...args, '--json'], { ...redisEnv(), ...TIMING });

beforeAll(async () => {
  upstream = await startUpstream();
  // Hosts on three different masters: CLUSTER KEYSLOT of the tag, CLUSTER SLOTS for the owner.
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < 3 && i < 200; i++) {
    const h = `c${i}`;
    const owner = await ha.cluster.masterOfSlot(await ha.cluster.keySlot(`{${h}}`));
    if (!byMaster.has(owner.port)) byMaster.set(owner.port, h);
  }
  const [herd, restore, ops] = [...byMaster.values()];
  if (!ops) throw new Error(`could not find hosts on three masters: ${[...byMaster]}`);
  HOSTS = { herd: herd!, restore: restore!, ops };
});

afterAll(async () => {
  await board?.stop();
  for (const q of clients) await q.close();
  for (const w of workers) await w.kill();
  await upstream?.stop();
  for (const r of roots) removeRoot(r);
});

describe('fleetq on a Redis Cluster', () => {
  it('the ensure herd: 50 jobs for one pinned digest over two worker processes → one GET, all complete', async () => {
    const r = root();
    const [a, b] = await Promise.all([worker(HOSTS.herd, r, { FLEETQ_CONCURRENCY: '25' }), worker(HOSTS.herd, r, { FLEETQ_CONCURRENCY: '25' })]);
    const q = await queue(imageQueueName(HOSTS.herd));
    const img = rawImage(4 * 1024 * 1024);
    const url = upstream.serve('/cluster/herd.img', img.body, { chunkSize: 64 * 1024, chunkDelayMs: 30 });
    const jobs = await q.queue.addBulk(Array.from({ length: 50 }, () => ({ name: 'ensure-image', data: { image: url, imageDigest: img.digest }, opts: { attempts: 1 } })));
    const results = await Promise.all(jobs.map((j) => q.settle(j.id!, 60_000)));

    expect(results.map((x) => x.state)).toEqual(Array(50).fill('completed'));
    expect(upstream.gets('/cluster/herd.img')).toBe(1);
    const outcomes = results.map((x) => x.value.outcome);
    expect(outcomes.filter((o) => o === 'pulled')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'present')).toHaveLength(49);
    // Both processes took part, and the followers in the other one waited on the leader's lock.
    const done = () => [a!, b!].map((w) => w.logs.filter((l) => l.msg === 'ensure-image done').length);
    await expect.poll(() => done().reduce((x, y) => x + y), { timeout: 10_000, interval: 50 }).toBe(50);
    expect(done().every((c) => c > 0), `jobs per worker: ${done()}`).toBe(true);
    expect([a!, b!].flatMap((w) => w.logs.filter((l) => l.msg === 'waiting for pull leader')).length).toBeGreaterThan(0);
    expect(storeState(r).temp).toEqual([]);
    assertConsistent(r);
  });

  it('a lock-release notification reaches a follower whichever node the leader publishes on (classic pub/sub is broadcast)', async () => {
    const cfg = loadConfig({ FLEETQ_REDIS_CLUSTER_NODES: ha.cluster.seeds, FLEETQ_PREFIX: 'fleetq' });
    // The worker's own subscriber client and notifier, as src/worker/connections.ts makes them.
    const subscriber = connectRedis(cfg, 'subscriber');
    try {
      await waitReady(subscriber, cfg);
      const notifier = new ReleaseNotifier(subscriber);
      const channel = pullReleasedChannel(cfg.prefix, HOSTS.herd, { kind: 'digest', digest: Digest.parse(`sha256:${'a'.repeat(64)}`, 'test') });
      const topo = await ha.cluster.topology();
      const nodes = ha.cluster.nodes.filter((n) => [...topo.masters, ...topo.replicas].some((t) => t.port === n.port));
      expect(nodes.length).toBe(6);
      for (const node of nodes) {
        const waiter = notifier.wait(channel);
        try {
          await waiter.ready;
          // Published through a plain connection to this one node: no redirection, no slot.
          await ha.cluster.admin(node).publish(channel, '1');
          const got = await Promise.race([waiter.released.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5_000))]);
          expect(got, `published on node :${node.port}`).toBe(true);
        } finally {
          waiter.cancel();
        }
      }
    } finally {
      subscriber.disconnect();
    }
  });

  it('a restore flow: the restore parks on its image child (same slot), the child pulls once, the clone boots', async () => {
    const r = root();
    setHostCores(r, 16);
    await worker(HOSTS.restore, r, { FLEETQ_BACKOFF: '100ms', ...cocoonWorkerEnv(r) });
    const restores = await queue(restoreQueueName(HOSTS.restore));
    const images = await queue(imageQueueName(HOSTS.restore));
    const img = qcow2Image(300);
    const url = upstream.serve('/cluster/golden', img.body);
    plantSnapshot(r, { name: 'golden', image: url, imageDigest: img.digest, cpu: 2 });

    const { jobId } = await enqueueRestore(restores.queue, { kind: 'clone', snapshot: 'golden', name: 'vm-c1' }, { host: HOSTS.restore, attempts: 3, backoffMs: 100 });
    const done = await restores.settle(jobId, 60_000);
    expect(done.state, done.failedReason).toBe('completed');
    expect(done.value).toMatchObject({ kind: 'clone', vm: 'vm-c1', digest: img.digest, outcome: 'done', imageJobId: imageChildId(jobId, 0) });
    const child = await images.queue.getJob(imageChildId(jobId, 0));
    expect(child!.returnvalue).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(child!.parentKey).toBe(`fleetq:${restoreQueueName(HOSTS.restore)}:${jobId}`);
    expect(upstream.gets('/cluster/golden')).toBe(1);
    expect(readVm(r, 'vm-c1')).toMatchObject({ state: 'running' });
  });

  it('fleetq retry puts a failed job back by filter; it completes; the hosts and dead letters are read across the cluster', async () => {
    const r = root();
    await worker(HOSTS.ops, r);
    const q = await queue(imageQueueName(HOSTS.ops));
    const img = qcow2Image(301);
    const url = upstream.serve('/cluster/incident-1/img', img.body, { faults: [{ kind: 'status', status: 500 }] });
    const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host: HOSTS.ops, attempts: 1, backoffMs: 10 });
    expect((await q.settle(jobId)).state).toBe('failed');

    // The registry sees all three hosts, whatever master their keys are on.
    const hosts = JSON.parse((await cli('hosts')).stdout) as Array<{ host: string; state: string }>;
    for (const h of Object.values(HOSTS)) expect(hosts.find((x) => x.host === h), `host ${h} in ${JSON.stringify(hosts)}`).toMatchObject({ state: 'up' });
    await expect.poll(async () => (JSON.parse((await cli('dlq', 'ls')).stdout) as Array<{ originalId: string }>).map((d) => d.originalId), { timeout: 15_000, interval: 250 }).toContain(jobId);

    const out = await cli('retry', '--reason', 'incident-1/', '--host', HOSTS.ops, '--yes');
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout).summary).toMatchObject({ matched: 1, retried: 1, errors: 0 });
    const again = await q.settle(jobId);
    expect(again.state).toBe('completed');
    expect(again.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream.gets('/cluster/incident-1/img')).toBe(2);
  });

  it("the board's API lists every host's queues, shows jobs and retries a failed one", async () => {
    if (!workers.some((w) => w.logs.some((l) => l.host === HOSTS.ops))) await worker(HOSTS.ops, root());
    const q = await queue(imageQueueName(HOSTS.ops));
    const img = qcow2Image(302);
    const url = upstream.serve('/cluster/board/img', img.body, { faults: [{ kind: 'status', status: 500 }] });
    const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host: HOSTS.ops, attempts: 1, backoffMs: 10 });
    expect((await q.settle(jobId)).state).toBe('failed');

    board = await startBoardProcess({ ...redisEnv(), ...CREDS });
    expect((await fetch(`${board.url}/healthz`)).status).toBe(200);
    const name = boardName('images', HOSTS.ops);
    const list = async () => (await (await fetch(`${board!.url}/api/queues?activeQueue=${encodeURIComponent(name)}&status=failed&page=1&jobsPerPage=10`, { headers: AUTH })).json()) as any;
    const body = await list();
    const names = body.queues.map((x: any) => x.name);
    for (const h of Object.values(HOSTS)) expect(names).toEqual(expect.arrayContaining([boardName('images', h), boardName('restores', h)]));
    expect(body.queues.find((x: any) => x.name === name).jobs.map((j: any) => j.id)).toContain(jobId);

    const retried = await fetch(`${board.url}/api/queues/${encodeURIComponent(name)}/${jobId}/retry`, { method: 'PUT', headers: await sameOrigin(board, AUTH) });
    expect(retried.status).toBe(204);
    expect((await q.settle(jobId)).state).toBe('completed');
    expect(upstream.gets('/cluster/board/img')).toBe(2);
  });

  it("every key matches a documented pattern and sits in its tag's slot, on the master serving it; hosts spread over the masters", async () => {
    const topo = await ha.cluster.topology();
    /** Every key of the run, with the master it was found on (SCAN on each master: a Cluster client's SCAN sees one node). */
    const found: Array<{ key: string; port: number }> = [];
    for (const m of topo.masters) {
      const admin: Redis = ha.cluster.admin(ha.cluster.nodes.find((n) => n.port === m.port)!);
      let cursor = '0';
      do {
        const [next, batch] = await admin.scan(cursor, 'COUNT', 1000);
        for (const key of batch) found.push({ key, port: m.port });
        cursor = next;
      } while (cursor !== '0');
    }
    expect(found.length).toBeGreaterThan(0);
    expect(found.map((f) => f.key).filter((k) => !matchKeyPattern('fleetq', k)), 'keys matching no documented pattern').toEqual([]);

    const ownerOfTag = new Map<string, number>();
    const owner = async (tag: string) => {
      let p = ownerOfTag.get(tag);
      if (p === undefined) {
        p = (await ha.cluster.masterOfSlot(await ha.cluster.keySlot(`{${tag}}`))).port;
        ownerOfTag.set(tag, p);
      }
      return p;
    };
    const rules = new Set<string>();
    for (const { key, port } of found) {
      const m = matchKeyPattern('fleetq', key)!;
      rules.add(m.pattern.slot);
      // The slot Redis computes is the tag's (host, "registry"), and the key is on the master that serves it.
      expect(await ha.cluster.keySlot(key), key).toBe(await ha.cluster.keySlot(`{${m.subject}}`));
      expect(port, key).toBe(await owner(m.subject));
    }
    expect(rules).toEqual(new Set(['host', 'registry']));

    // The three hosts' keys are on three different masters (the scale-out), and the restore host's flow
    // wrote both of its queues, in its one slot (checked above).
    const hostMasters = new Set(await Promise.all(Object.values(HOSTS).map(owner)));
    expect(hostMasters.size).toBe(3);
    for (const h of Object.values(HOSTS)) expect(found.some((f) => f.key.startsWith(`fleetq:${imageQueueName(h)}:`)), `keys of ${h}`).toBe(true);
    const restoreQueues = new Set(found.map((f) => f.key).filter((k) => k.includes(`-{${HOSTS.restore}}:`)).map((k) => k.split(':')[1]));
    expect(restoreQueues).toEqual(new Set([imageQueueName(HOSTS.restore), restoreQueueName(HOSTS.restore)]));
  });
});
