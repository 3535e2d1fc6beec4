/**
 * Operating the fleet with the CLI against real Redis and real worker
 * processes: host registry, jobs ls/show, retry by filter, dead letters,
 * reroute, promote, clean, prewarm, idempotent enqueue, and bad input.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { imageChildId, imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { hostKeys } from '../../src/registry/keys.js';
import { cocoonWorkerEnv, plantSnapshot, readVm, setCocoonFault, setHostCores } from '../helpers/cocoon.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
const TIMING = { FLEETQ_HEARTBEAT: '200ms', FLEETQ_HOST_DOWN_AFTER: '1500ms' };
let upstream: Upstream;
let size = 300;
const freshImage = () => qcow2Image(size++);

interface Host {
  id: string;
  root: string;
  worker?: WorkerProcess;
  images: QueueClient;
  restores: QueueClient;
}
const hosts: Record<string, Host> = {};

async function startHost(id: string): Promise<Host> {
  const root = hosts[id]?.root ?? tempRoot();
  setHostCores(root, 16);
  const worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, ...cocoonWorkerEnv(root), ...TIMING });
  const h = hosts[id] ?? { id, root, images: await queueClient(redis.url, imageQueueName(id)), restores: await queueClient(redis.url, restoreQueueName(id)) };
  h.worker = worker;
  hosts[id] = h;
  return h;
}

const cli = (...args: string[]) => runCli(args, { REDIS_URL: redis.url, ...TIMING });
const cliJson = async (...args: string[]) => {
  const r = await cli(...args, '--json');
  if (r.code !== 0) throw new Error(`fleetq ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

/** Everything an operator command could change: job counts per queue and the dead-letter store. */
async function snapshot(): Promise<unknown> {
  const out: Record<string, unknown> = {};
  for (const h of Object.values(hosts)) {
    out[h.images.queue.name] = await h.images.queue.getJobCounts('wait', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed', 'completed');
    out[h.restores.queue.name] = await h.restores.queue.getJobCounts('wait', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed', 'completed');
  }
  const r = new Redis(redis.url);
  for (const h of Object.values(hosts)) out[`dlq ${h.id}`] = await r.hgetall(hostKeys('fleetq', h.id).dlqEntries);
  r.disconnect();
  return out;
}

beforeAll(async () => {
  upstream = await startUpstream();
  await startHost('ops-a');
  await startHost('ops-b');
});

afterAll(async () => {
  for (const h of Object.values(hosts)) {
    await h.worker?.kill();
    await h.images.close();
    await h.restores.close();
    removeRoot(h.root);
  }
  await upstream?.stop();
});

describe('hosts', () => {
  it('lists registered hosts as up, with queue depths and last seen', async () => {
    const list = await cliJson('hosts');
    const a = list.find((h: any) => h.host === 'ops-a');
    expect(a).toMatchObject({ state: 'up', queues: { images: { waiting: 0, active: 0, failed: 0, delayed: 0 }, restores: expect.any(Object) } });
    expect(a.workers[0]).toMatchObject({ pid: hosts['ops-a']!.worker!.proc.pid, concurrency: 4, restoreConcurrency: 2, version: expect.any(String) });
    expect(Date.now() - a.lastSeen).toBeLessThan(1500);
    const human = await cli('hosts');
    expect(human.stdout).toMatch(/^HOST\s+STATE\s+STORE\s+WORKERS/m);
    expect(human.stdout).toMatch(/ops-b\s+up\s+ok\s+1/);
  });
});

describe('retry tooling after an incident', () => {
  let incidents = 0;

  /**
   * An incident of the calling test's own, so that every test here passes alone
   * and in any order: `images` ensure-image jobs on ops-a that exhaust their
   * attempts on HTTP 500, and (with `restore`) a clone on ops-b that fails
   * permanently in cocoon's network step. Every failed reason contains `marker`
   * (a path segment), so filters can select this incident and nothing else.
   * Returns once the failures are dead-lettered.
   */
  async function incident(o: { images?: number; restore?: boolean }) {
    const marker = `incident-${++incidents}/`;
    const imageIds: string[] = [];
    for (let i = 0; i < (o.images ?? 0); i++) {
      const img = freshImage();
      const path = `/${marker}${i}`;
      upstream.serve(path, img.body, { faults: [{ kind: 'status', status: 500 }, { kind: 'status', status: 500 }] });
      imageIds.push((await enqueueEnsureImage(hosts['ops-a']!.images.queue, { image: upstream.url(path), imageDigest: img.digest }, { host: 'ops-a', attempts: 2, backoffMs: 20 })).jobId);
    }
    let restoreId: string | undefined;
    if (o.restore) {
      const b = hosts['ops-b']!;
      const img = freshImage();
      const url = upstream.serve(`/${marker}restore`, img.body);
      const name = marker.replace('/', '');
      plantSnapshot(b.root, { name: `golden-${name}`, image: url, imageDigest: img.digest });
      setCocoonFault(b.root, { only: 'clone', at: 'network', message: `no conflist found in /etc/cni/${marker}net.d` });
      try {
        restoreId = (await enqueueRestore(b.restores.queue, { kind: 'clone', snapshot: `golden-${name}`, name: `vm-${name}` }, { host: 'ops-b', attempts: 2, backoffMs: 20 })).jobId;
        expect((await b.restores.settle(restoreId)).state).toBe('failed');
      } finally {
        setCocoonFault(b.root, undefined);
      }
    }
    for (const id of imageIds) expect((await hosts['ops-a']!.images.settle(id)).state).toBe('failed');
    const dead = [...imageIds, ...(restoreId ? [restoreId] : [])];
    // Dead letters are recorded just after the failure: wait for them, so that nothing changes under a test.
    await waitFor(`dead letters for ${dead.join(', ')}`, async () => {
      const ids = (await cliJson('dlq', 'ls')).map((d: { originalId: string }) => d.originalId);
      return dead.every((id) => ids.includes(id));
    }, { timeoutMs: 20_000, intervalMs: 250 });
    return { marker, imageIds, restoreId: restoreId! };
  }

  it('jobs ls finds them by state, reason and queue; jobs show explains one', async () => {
    const { marker, imageIds, restoreId } = await incident({ images: 2, restore: true });
    const byReason = await cliJson('jobs', 'ls', '--state', 'failed', '--reason', `${marker}.*HTTP 500`);
    expect(byReason.map((j: any) => j.id).sort()).toEqual([...imageIds].sort());
    expect(byReason[0]).toMatchObject({ host: 'ops-a', queue: 'images', name: 'ensure-image', attempts: '2/2' });
    const restores = await cliJson('jobs', 'ls', '--queue', 'restores', '--host', 'ops-b');
    expect(restores.map((j: any) => j.id)).toContain(restoreId);
    for (const j of restores) expect(j).toMatchObject({ host: 'ops-b', queue: 'restores', name: 'restore' });
    expect(await cliJson('jobs', 'ls', '--reason', marker, '--limit', '1')).toHaveLength(1);
    expect(await cliJson('jobs', 'ls', '--reason', marker, '--since', '1ms')).toHaveLength(0);

    const show = await cliJson('jobs', 'show', restoreId);
    expect(show).toMatchObject({ id: restoreId, host: 'ops-b', state: 'failed', name: 'restore', attemptsMade: 1 });
    expect(show.failedReason).toMatch(/E_COCOON_NETWORK/);
    expect(show.logs.join('\n')).toContain(`[cocoon stderr] Error: init network: no conflist found in /etc/cni/${marker}net.d`);
  });

  it('jobs whose retries are exhausted are dead-lettered with host, queue, original id, payload and reason', async () => {
    const { marker, imageIds, restoreId } = await incident({ images: 1, restore: true });
    const dlq = await cliJson('dlq', 'ls');
    const one = dlq.find((d: any) => d.originalId === imageIds[0]);
    expect(one).toMatchObject({ host: 'ops-a', queue: imageQueueName('ops-a'), queueKind: 'images', name: 'ensure-image', attemptsMade: 2 });
    expect(one.reason).toMatch(/HTTP 500/);
    expect(one.data.image).toBe(upstream.url(`/${marker}0`));
    const restore = dlq.find((d: any) => d.originalId === restoreId);
    expect(restore).toMatchObject({ host: 'ops-b', queue: restoreQueueName('ops-b'), queueKind: 'restores', name: 'restore', attemptsMade: 1 });
    expect(restore.reason).toMatch(/E_COCOON_NETWORK/);
  });

  it('--dry-run prints what would be retried and changes nothing', async () => {
    const { marker } = await incident({ images: 2 });
    const before = await snapshot();
    const r = await cliJson('retry', '--reason', marker, '--dry-run');
    expect(r.summary).toEqual({ dryRun: true, matched: 2, retried: 2, skipped: 0, errors: 0 });
    const human = await cli('retry', '--reason', marker, '--dry-run');
    expect(human.stdout).toMatch(/dry run: matched 2, would retry 2, skipped 0, errors 0/);
    expect(await snapshot()).toEqual(before);
  });

  it('retry by filter puts them back; they complete once upstream recovers; a re-run retries nothing', async () => {
    const { marker, imageIds } = await incident({ images: 2 });
    const r = await cliJson('retry', '--reason', marker, '--host', 'ops-a', '--yes');
    expect(r.summary).toMatchObject({ matched: 2, retried: 2, errors: 0 });
    for (const id of imageIds) expect((await hosts['ops-a']!.images.settle(id)).state).toBe('completed');
    const again = await cliJson('retry', '--reason', marker, '--host', 'ops-a');
    expect(again.summary).toMatchObject({ matched: 0, retried: 0 });
    const dlqIds = (await cliJson('dlq', 'ls')).map((d: any) => d.originalId);
    for (const id of imageIds) expect(dlqIds).not.toContain(id); // no longer dead
  });

  it('dlq requeue (dry run changes nothing) puts a dead restore back; it completes once cocoon is fixed', async () => {
    const { marker, restoreId } = await incident({ restore: true });
    const before = await snapshot();
    const dry = await cliJson('dlq', 'requeue', '--host', 'ops-b', '--reason', marker, '--dry-run');
    expect(dry.summary).toMatchObject({ dryRun: true, matched: 1 });
    expect(await snapshot()).toEqual(before);

    const r = await cliJson('dlq', 'requeue', '--host', 'ops-b', '--reason', marker, '--yes');
    expect(r.entries).toEqual([{ id: restoreId, host: 'ops-b', queue: 'restores', result: 'retried' }]);
    const done = await hosts['ops-b']!.restores.settle(restoreId);
    expect(done.state).toBe('completed');
    expect(readVm(hosts['ops-b']!.root, `vm-${marker.replace('/', '')}`)).toMatchObject({ state: 'running' });
    expect(await cliJson('dlq', 'ls', '--host', 'ops-b', '--reason', marker)).toEqual([]);
  });

  it('a restore whose image job failed is retried in place with a fresh image job; the old image job is not retried on its own', async () => {
    const img = freshImage();
    const path = '/incident/late-image';
    plantSnapshot(hosts['ops-b']!.root, { name: 'golden-late', image: upstream.url(path), imageDigest: img.digest });
    const r = await enqueueRestore(hosts['ops-b']!.restores.queue, { kind: 'clone', snapshot: 'golden-late', name: 'vm-late' }, { host: 'ops-b', attempts: 1, backoffMs: 20 });
    expect((await hosts['ops-b']!.restores.settle(r.jobId)).failedReason).toMatch(/HTTP 404/);
    const oldChild = imageChildId(r.jobId, 0);
    expect((await hosts['ops-b']!.images.queue.getJob(oldChild))!.failedReason).toMatch(/HTTP 404/);
    upstream.serve(path, img.body); // the image is published at last

    const out = await cliJson('retry', '--host', 'ops-b', '--reason', 'late-image answered HTTP 404', '--yes');
    const byId = Object.fromEntries(out.jobs.map((j: any) => [j.id, j]));
    expect(byId[r.jobId]).toMatchObject({ action: 'retried', removedImageJobs: [oldChild] });
    expect(byId[oldChild]?.action ?? 'skipped').toBe('skipped');
    const done = await hosts['ops-b']!.restores.settle(r.jobId);
    expect(done.failedReason).toBeUndefined();
    expect(done.value).toMatchObject({ vm: 'vm-late', outcome: 'done', digest: img.digest, imageJobId: oldChild });
    expect((await hosts['ops-b']!.images.queue.getJob(oldChild))!.returnvalue).toMatchObject({ outcome: 'pulled' });
  });

  it('dlq purge removes entries older than a duration', async () => {
    const img = freshImage();
    const { jobId } = await enqueueEnsureImage(hosts['ops-a']!.images.queue, { image: upstream.url('/gone-for-good'), imageDigest: img.digest }, { host: 'ops-a', attempts: 1, backoffMs: 20 });
    await hosts['ops-a']!.images.settle(jobId);
    await waitFor(`a dead letter for ${jobId}`, async () => (await cliJson('dlq', 'ls')).some((d: any) => d.originalId === jobId), { timeoutMs: 5000, intervalMs: 50 });
    expect(await cliJson('dlq', 'purge', '--older-than', '7d')).toEqual({ removed: 0 });
    const purged = await cliJson('dlq', 'purge', '--older-than', '1ms', '--yes');
    expect(purged.removed).toBeGreaterThanOrEqual(1);
    expect(await cliJson('dlq', 'ls')).toEqual([]);
  });
});

describe('reroute a stopped host\'s work', () => {
  it('refuses a down target, then moves restores and pulls to a live host, which completes them', async () => {
    const c = await startHost('ops-c');
    expect(await c.worker!.stop()).toBe(0);
    const img = freshImage();
    const url = upstream.serve('/reroute/win11', img.body);
    plantSnapshot(hosts['ops-b']!.root, { name: 'golden-rr', image: url, imageDigest: img.digest });
    const restore = await enqueueRestore(c.restores.queue, { kind: 'clone', snapshot: 'golden-rr', name: 'vm-rerouted' }, { host: 'ops-c', attempts: 2, backoffMs: 20 });
    const pull = await enqueueEnsureImage(c.images.queue, { image: url, imageDigest: img.digest, force: true }, { host: 'ops-c', attempts: 2, backoffMs: 20 });
    // Wait until ops-c's heartbeat is stale.
    await waitFor('ops-c to be reported down', async () => (await cliJson('hosts')).find((h: any) => h.host === 'ops-c').state === 'down', { timeoutMs: 20_000, intervalMs: 100 });

    const refused = await cli('reroute', '--from-host', 'ops-b', '--to-host', 'ops-c');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^fleetq: --to-host: ops-c is down/);

    const before = await snapshot();
    const dry = await cliJson('reroute', '--from-host', 'ops-c', '--to-host', 'ops-b', '--dry-run');
    expect(dry.summary).toMatchObject({ dryRun: true, moved: 2 });
    expect(await snapshot()).toEqual(before);

    const r = await cliJson('reroute', '--from-host', 'ops-c', '--to-host', 'ops-b', '--yes');
    expect(r.summary).toMatchObject({ moved: 2 });
    expect(r.jobs.filter((j: any) => j.action === 'skip')).toEqual([]);
    expect(await c.images.queue.getJobCounts('wait', 'prioritized', 'waiting-children', 'delayed')).toEqual({ wait: 0, prioritized: 0, 'waiting-children': 0, delayed: 0 });
    expect(await c.restores.queue.getJobCounts('wait', 'waiting-children')).toEqual({ wait: 0, 'waiting-children': 0 });

    const b = hosts['ops-b']!;
    expect((await b.restores.settle(restore.jobId)).value).toMatchObject({ vm: 'vm-rerouted', outcome: 'done', digest: img.digest });
    expect((await b.images.settle(pull.jobId)).state).toBe('completed');
    expect(readVm(b.root, 'vm-rerouted')).toMatchObject({ state: 'running' });
    // Re-running is safe: nothing left to move.
    expect((await cliJson('reroute', '--from-host', 'ops-c', '--to-host', 'ops-b')).summary.moved).toBe(0);
  });
});

describe('scheduler tools', () => {
  it('enqueue --job-id is idempotent', async () => {
    const img = freshImage();
    const url = upstream.serve('/idem/win11', img.body);
    const args = ['enqueue', 'ensure-image', '--host', 'ops-a', '--image', url, '--digest', img.digest, '--job-id', 'sched-42', '--json'];
    const first = await cliJson(...args.slice(0, -1));
    const second = await cliJson(...args.slice(0, -1));
    expect(first.jobId).toBe('sched-42');
    expect(second.jobId).toBe('sched-42');
    expect((await hosts['ops-a']!.images.settle('sched-42')).state).toBe('completed');
  });

  it('--delay then promote: the delayed job runs now', async () => {
    const img = freshImage();
    const url = upstream.serve('/delayed/win11', img.body);
    const { jobId } = await cliJson('enqueue', 'ensure-image', '--host', 'ops-a', '--image', url, '--digest', img.digest, '--delay', '1h');
    expect(await (await hosts['ops-a']!.images.queue.getJob(jobId))!.getState()).toBe('delayed');
    const promoted = await cliJson('promote', '--host', 'ops-a', '--queue', 'images');
    expect(promoted).toEqual([{ queue: imageQueueName('ops-a'), promoted: 1 }]);
    expect((await hosts['ops-a']!.images.settle(jobId)).state).toBe('completed');
  });

  it('clean removes completed jobs older than the grace period', async () => {
    const img = freshImage();
    const { jobId } = await enqueueEnsureImage(hosts['ops-a']!.images.queue, { image: upstream.serve('/clean/win11', img.body), imageDigest: img.digest }, { host: 'ops-a', attempts: 1, backoffMs: 20 });
    expect((await hosts['ops-a']!.images.settle(jobId)).state).toBe('completed');
    const before = await hosts['ops-a']!.images.queue.getCompletedCount();
    expect(before).toBeGreaterThan(0);
    expect(await cliJson('clean', '--state', 'completed', '--older-than', '1h', '--host', 'ops-a', '--queue', 'images')).toEqual([{ queue: imageQueueName('ops-a'), removed: 0 }]);
    const r = await cliJson('clean', '--state', 'completed', '--older-than', '0s', '--host', 'ops-a', '--queue', 'images', '--yes');
    expect(r[0].removed).toBe(before);
    expect(await hosts['ops-a']!.images.queue.getCompletedCount()).toBe(0);
  });

  it('prewarm pulls an image onto every live host at low priority, or schedules it', async () => {
    const img = freshImage();
    const url = upstream.serve('/prewarm/win11', img.body);
    const r = await cliJson('prewarm', '--image', url, '--digest', img.digest, '--hosts', 'ops-a,ops-b');
    expect(r.map((x: any) => x.host)).toEqual(['ops-a', 'ops-b']);
    for (const x of r) {
      const job = await hosts[x.host]!.images.queue.getJob(x.jobId);
      expect(job!.opts.priority).toBe(1000);
      expect((await hosts[x.host]!.images.settle(x.jobId)).value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    }
    expect(upstream.gets('/prewarm/win11')).toBe(2); // one per host

    const sched = await cliJson('prewarm', '--image', url, '--digest', img.digest, '--hosts', 'ops-a', '--every', '1h');
    const schedulers = await hosts['ops-a']!.images.queue.getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toContain(sched[0].schedulerId);
    await cliJson('prewarm', '--image', url, '--digest', img.digest, '--hosts', 'ops-a', '--cancel');
    expect(await hosts['ops-a']!.images.queue.getJobSchedulers()).toEqual([]);
  });
});

describe('bad input: one clear line, exit 2, nothing touched', () => {
  it.each([
    [['jobs', 'ls', '--host', 'no-such-host'], /^fleetq: unknown host "no-such-host" \(known: .*ops-a/],
    [['retry', '--reason', '(unclosed'], /^fleetq: --reason: not a valid regular expression/],
    [['retry', '--since', 'yesterday'], /^fleetq: --since: "yesterday" is not a duration/],
    [['jobs', 'ls', '--state', 'exploded'], /^fleetq: --state: unknown state "exploded"/],
    [['dlq', 'purge', '--older-than', 'a while'], /^fleetq: --older-than: /],
    [['reroute', '--from-host', 'ops-a', '--to-host', 'ops-a'], /^fleetq: --to-host: must differ/],
    [['prewarm', '--image', 'file:///etc/passwd', '--hosts', 'all'], /^fleetq: --image: /],
    [['retry', '--host', 'ghost', '--dry-run'], /^fleetq: unknown host "ghost"/],
  ])('%j', async (args, message) => {
    const before = await snapshot();
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await snapshot()).toEqual(before);
  });
});
