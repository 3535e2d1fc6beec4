/**
 * Restores end to end: real redis-server, real worker processes, a real HTTP
 * upstream, real qcow2 images and overlays (qemu-img), and test/fixtures/fake-cocoon,
 * which follows cocoon's CLI contract (root only from --root-dir, records and
 * JSON shapes, error texts, restore killing the VM).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { imageChildId, imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import type { RestoreInput } from '../../src/jobs/contracts/restore.js';
import {
  cocoonCalls,
  cocoonGlobalArgs,
  cocoonVerbs,
  cocoonWorkerEnv,
  plantSnapshot,
  plantVm,
  readVm,
  restoreCalls,
  restoreVerbs,
  runFakeCocoon,
  setCocoonFault,
  setHostCores,
  vmOverlay,
} from '../helpers/cocoon.js';
import { qcow2Image, qemuInfo, type TestImage } from '../helpers/images.js';
import { queueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, plantBlob, plantIndexEntry, readIndexFile, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';
import { waitFor } from '../helpers/wait.js';

const redis = useTestRedis();
let upstream: Upstream;
const cleanups: Array<() => Promise<void> | void> = [];
let size = 200;
const freshImage = () => qcow2Image(size++);

beforeAll(async () => {
  upstream = await startUpstream();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await upstream?.stop();
});

const blobOf = (root: string, img: TestImage) => join(root, 'cloudimg/blobs', `${img.hex}.qcow2`);
const clones = (root: string) => cocoonVerbs(root).filter((v) => v === 'vm clone').length;
const restoresRun = (root: string) => cocoonVerbs(root).filter((v) => v === 'vm restore').length;

/** A host: its own root (cocoon's too), worker process(es) and queue clients. */
async function host(id: string, env: Record<string, string> = {}, processes = 1, root = tempRoot()) {
  setHostCores(root, 16);
  const base = { REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, FLEETQ_BACKOFF: '100ms', ...cocoonWorkerEnv(root), ...env };
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < processes; i++) workers.push(await startWorkerProcess(base));
  const restores = await queueClient(redis.url, restoreQueueName(id));
  const images = await queueClient(redis.url, imageQueueName(id));
  cleanups.push(async () => {
    await restores.close();
    await images.close();
    for (const w of workers) await w.kill();
    removeRoot(root);
  });
  const restore = (input: RestoreInput, attempts = 3) => enqueueRestore(restores.queue, input, { host: id, attempts, backoffMs: 100 });
  return { id, root, base, workers, restores, images, restore };
}

/** The #37 set-up: the URL index points at an old digest whose blob exists; the URL now serves `current`; the snapshot pins `current`. */
function plant37(root: string, path: string): { url: string; old: TestImage; current: TestImage } {
  const old = freshImage();
  const current = freshImage();
  const url = upstream.serve(path, current.body);
  plantBlob(root, old.hex, old.body);
  plantIndexEntry(root, url, old.digest, old.body.length);
  plantSnapshot(root, { name: 'win11-golden', image: url, imageDigest: current.digest, cpu: 2 });
  return { url, old, current };
}

describe('cocoon#37 through a restore: the snapshot decides the digest', () => {
  it('a clone job with NO digest: snapshot pins D2, URL serves D2, index says D1 → one GET, overlay backed by D2', async () => {
    const h = await host('r-37');
    const { url, current } = plant37(h.root, '/r37/win11');
    const { jobId, vm } = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-042', cpu: 4, memory: '8G' });
    const r = await h.restores.settle(jobId);

    expect(r.state).toBe('completed');
    expect(vm).toBe('vm-042');
    expect(r.value).toMatchObject({ kind: 'clone', vm: 'vm-042', digest: current.digest, digestSource: 'snapshot', outcome: 'done', imageJobId: imageChildId(jobId, 0) });
    expect(upstream.gets('/r37/win11')).toBe(1);
    const rec = readVm(h.root, 'vm-042')!;
    expect(rec.state).toBe('running');
    expect(qemuInfo(vmOverlay(h.root, rec.id))['backing-filename']).toBe(blobOf(h.root, current));
    // The image job was pinned to the snapshot's digest, whatever the producer sent (nothing).
    const child = await h.images.queue.getJob(imageChildId(jobId, 0));
    expect(child!.data).toEqual({ image: url, imageDigest: current.digest });
    expect(child!.returnvalue).toMatchObject({ outcome: 'pulled', digest: current.digest });
    // Every cocoon call pointed cocoon at fleetq's store; FLEETQ_ROOT is not even in its environment.
    const calls = restoreCalls(h.root);
    // First run: base missing → image job, park. Resumed: look again (idempotent), then clone.
    expect(calls.map((c) => c.argv.slice(0, 2).join(' '))).toEqual(['snapshot inspect', 'vm inspect', 'snapshot inspect', 'vm inspect', 'vm clone']);
    for (const c of calls) {
      expect(c.argv.slice(c.argv.indexOf('--root-dir'), c.argv.indexOf('--root-dir') + 2)).toEqual(['--root-dir', h.root]);
      expect(c.env.FLEETQ_ROOT).toBeUndefined();
    }
    expect(calls[1]!.argv).not.toContain('-o'); // vm inspect takes no -o
    expect(calls[4]!.argv.slice(0, 11)).toEqual(['vm', 'clone', 'win11-golden', '--name', 'vm-042', '--cpu', '4', '--memory', '8G', '-o', 'json']);
    assertConsistent(h.root);
  });

  it('the same with a matching job digest; a second clone finds the base on disk and adds no image job', async () => {
    const h = await host('r-37-pinned');
    const { current } = plant37(h.root, '/r37-pinned/win11');
    const first = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-a', imageDigest: current.digest });
    expect((await h.restores.settle(first.jobId)).value).toMatchObject({ digest: current.digest, outcome: 'done' });
    const second = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-b' });
    const r2 = await h.restores.settle(second.jobId);
    expect(r2.value).toMatchObject({ digest: current.digest, outcome: 'done' });
    expect(r2.value.imageJobId).toBeUndefined();
    expect(await h.images.queue.getJob(imageChildId(second.jobId, 0))).toBeUndefined();
    expect(upstream.gets('/r37-pinned/win11')).toBe(1);
  });

  it('with the forced pull switched off (pre-#39) the image job answers from the stale URL cache, and the restore still refuses to boot it', async () => {
    const h = await host('r-37-legacy', { FLEETQ_UNSAFE_LEGACY_URL_CACHE: '1' });
    const { old, current } = plant37(h.root, '/r37-legacy/win11');
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-043' }, 1);
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('failed');
    expect(r.failedReason).toContain(old.digest);
    expect(r.failedReason).toContain(current.digest);
    expect(r.failedReason).toMatch(/cocoon was not started/);
    expect(upstream.gets('/r37-legacy/win11')).toBe(0);
    expect(clones(h.root)).toBe(0);
  });

  it('a job digest that contradicts the snapshot → permanent, naming both, before any pull or clone', async () => {
    const h = await host('r-contradict');
    const { current } = plant37(h.root, '/contradict/win11');
    const other = freshImage();
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-x', imageDigest: other.digest }, 3);
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toContain(current.digest);
    expect(r.failedReason).toContain(other.digest);
    expect(restoreVerbs(h.root)).toEqual(['snapshot inspect']);
    expect(upstream.gets('/contradict/win11')).toBe(0);
  });

  it('a snapshot that records no digest and a job without one: falls back to the URL and says so in the job log', async () => {
    const h = await host('r-nodigest');
    const img = freshImage();
    const url = upstream.serve('/nodigest/win11', img.body);
    plantSnapshot(h.root, { name: 'old-snap', image: url, imageDigest: null, blobHex: null, backing: blobOf(h.root, img) });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'old-snap', name: 'vm-old' });
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ digest: img.digest, digestSource: 'url' });
    const logs = (await h.restores.queue.getJobLogs(jobId)).logs.join('\n');
    expect(logs).toMatch(/records no image digest and the job pins none: falling back to the URL/);
  });
});

describe('the base image cannot be had', () => {
  it('upstream 404 → the restore fails with its image job\'s reason; cocoon never clones', async () => {
    const h = await host('r-404');
    const img = freshImage();
    plantSnapshot(h.root, { name: 'golden', image: upstream.url('/nothing-here'), imageDigest: img.digest });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-404' });
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('failed');
    expect(r.failedReason).toMatch(/HTTP 404/);
    expect(r.failedReason).toContain(imageChildId(jobId, 0));
    expect(clones(h.root)).toBe(0);
  });

  it('retried like the board\'s Retry button (the parent alone) once the image is served: a fresh image job, then the clone', async () => {
    const h = await host('r-board-retry');
    const img = freshImage();
    const path = '/board-retry/win11';
    plantSnapshot(h.root, { name: 'golden', image: upstream.url(path), imageDigest: img.digest });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-late' }, 1);
    expect((await h.restores.settle(jobId)).failedReason).toMatch(/HTTP 404/);

    upstream.serve(path, img.body);
    const job = (await Job.fromId(h.restores.queue, jobId))!;
    await job.retry('failed'); // what Bull Board's retry handler calls
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ outcome: 'done', imageJobId: imageChildId(jobId, 1) });
    expect((await h.images.queue.getJob(imageChildId(jobId, 0)))!.failedReason).toMatch(/HTTP 404/);
    expect(clones(h.root)).toBe(1);
  });
});

describe('fan-out', () => {
  it('20 clones for one digest on one host across two worker processes → one GET, 20 overlays on the same blob', async () => {
    const h = await host('r-fanout', { FLEETQ_CONCURRENCY: '10', FLEETQ_RESTORE_CONCURRENCY: '5' }, 2);
    const img = qcow2Image(1024);
    const url = upstream.serve('/fanout/win11', img.body, { chunkDelayMs: 20, chunkSize: 16 * 1024 });
    plantSnapshot(h.root, { name: 'golden', image: url, imageDigest: img.digest });
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => h.restore({ kind: 'clone', snapshot: 'golden', name: `fan-${i}` })));
    const results = await Promise.all(jobs.map((j) => h.restores.settle(j.jobId, 90_000)));

    expect(results.map((r) => r.state)).toEqual(Array(20).fill('completed'));
    expect(upstream.gets('/fanout/win11')).toBe(1);
    const backings = new Set(Array.from({ length: 20 }, (_, i) => qemuInfo(vmOverlay(h.root, readVm(h.root, `fan-${i}`)!.id))['backing-filename']));
    expect(backings).toEqual(new Set([blobOf(h.root, img)]));
    const children = (await Promise.all(jobs.map((j) => h.images.queue.getJob(imageChildId(j.jobId, 0))))).filter((c) => c !== undefined);
    const outcomes = children.map((c) => c.returnvalue.outcome);
    expect(outcomes.filter((o: string) => o === 'pulled')).toHaveLength(1);
    expect(outcomes.filter((o: string) => o === 'present')).toHaveLength(children.length - 1);
  });
});

describe('restore (roll a running VM back to its snapshot) is destructive', () => {
  it('a stopped VM → permanent failure, cocoon\'s restore never invoked, the VM untouched', async () => {
    const h = await host('r-stopped');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    const { id } = plantVm(h.root, { name: 'vm-down', state: 'stopped', image: 'https://e/w', imageDigest: img.digest });
    plantSnapshot(h.root, { name: 'snap-down', image: 'https://e/w', imageDigest: img.digest, owner: 'vm-down' });
    const { jobId } = await h.restore({ kind: 'restore', vm: 'vm-down', snapshot: 'snap-down' }, 3);
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/VM vm-down .* is "stopped", not running.*cocoon vm start vm-down/);
    expect(restoresRun(h.root)).toBe(0);
    expect(readVm(h.root, 'vm-down')).toMatchObject({ id, state: 'stopped' });
  });

  it('base blob gone before a restore → ensured through the image queue, then restored; the VM runs', async () => {
    const h = await host('r-reensure');
    const img = freshImage();
    const url = upstream.serve('/reensure/win11', img.body);
    plantVm(h.root, { name: 'vm-live', state: 'running', image: url, imageDigest: img.digest, backing: blobOf(h.root, img) });
    plantSnapshot(h.root, { name: 'snap-live', image: url, imageDigest: img.digest, owner: 'vm-live' });
    const { jobId } = await h.restore({ kind: 'restore', vm: 'vm-live', snapshot: 'snap-live' });
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('completed');
    expect(r.value).toMatchObject({ kind: 'restore', vm: 'vm-live', outcome: 'done', digest: img.digest, imageJobId: imageChildId(jobId, 0) });
    expect((await h.images.queue.getJob(imageChildId(jobId, 0)))!.returnvalue.outcome).toBe('pulled');
    expect(upstream.gets('/reensure/win11')).toBe(1);
    const vm = readVm(h.root, 'vm-live')!;
    expect(vm.state).toBe('running');
    expect(qemuInfo(vmOverlay(h.root, vm.id))['backing-filename']).toBe(blobOf(h.root, img));
    expect(restoreVerbs(h.root)).toEqual(['snapshot inspect', 'vm inspect', 'snapshot inspect', 'vm inspect', 'vm restore']);
  });

  it('cocoon fails after killing the VM → permanent, naming the state it was left in and "cocoon vm start"', async () => {
    const h = await host('r-left-down');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantVm(h.root, { name: 'vm-frail', state: 'running', image: 'https://e/w', imageDigest: img.digest, backing: blobOf(h.root, img) });
    plantSnapshot(h.root, { name: 'snap-frail', image: 'https://e/w', imageDigest: img.digest, owner: 'vm-frail' });
    setCocoonFault(h.root, { only: 'restore', at: 'launch', message: 'fork/exec /usr/bin/cloud-hypervisor: no such file or directory' });
    try {
      const { jobId } = await h.restore({ kind: 'restore', vm: 'vm-frail', snapshot: 'snap-frail' }, 3);
      const r = await h.restores.settle(jobId);
      expect(r.state).toBe('failed');
      expect(r.attemptsMade).toBe(1);
      expect(r.failedReason).toMatch(/restore: launch CH: fork\/exec.*vm-frail .* is now "error": start it with "cocoon vm start vm-frail"/);
      expect(restoresRun(h.root)).toBe(1);
      expect(readVm(h.root, 'vm-frail')!.state).toBe('error');
    } finally {
      setCocoonFault(h.root, undefined);
    }
  });

  it('a snapshot overlay backed by a file outside this store → permanent, naming both paths; cocoon never clones', async () => {
    const h = await host('r-foreign-backing');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    const foreign = `/srv/other-root/cloudimg/blobs/${img.hex}.qcow2`;
    plantSnapshot(h.root, { name: 'imported', image: 'https://e/w', imageDigest: img.digest, backing: foreign });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'imported', name: 'vm-f' }, 3);
    const r = await h.restores.settle(jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toContain(foreign);
    expect(r.failedReason).toContain(join(h.root, 'cloudimg/blobs'));
    expect(clones(h.root)).toBe(0);
  });
});

describe('idempotent clones with the real CLI\'s records', () => {
  it('a worker killed after cocoon committed the clone → the redelivered job finds its own clone: already-done, one clone', async () => {
    const h = await host('r-redeliver', { FLEETQ_JOB_LOCK: '1s', FLEETQ_STALLED_INTERVAL: '500ms' }, 0);
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest });
    setCocoonFault(h.root, { only: 'clone', killParentAfter: true });
    const w1 = await startWorkerProcess(h.base);
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-once' }, 5);
    await w1.exited; // cocoon killed it right after committing the VM
    setCocoonFault(h.root, undefined);
    expect(readVm(h.root, 'vm-once')!.state).toBe('running');
    const w2 = await startWorkerProcess(h.base);
    try {
      const r = await h.restores.settle(jobId, 30_000);
      expect(r.state).toBe('completed');
      expect(r.value).toMatchObject({ vm: 'vm-once', outcome: 'already-done' });
      expect(clones(h.root)).toBe(1);
    } finally {
      expect(await w2.stop()).toBe(0);
    }
  });

  it('a clone retried by the operator (`fleetq retry --id`, then the board\'s Retry) is the same job: it clones once, then finds its own VM', async () => {
    const h = await host('r-again');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest });
    // First run: the host's network is broken (permanent), so the job fails before cocoon reserves the VM.
    setCocoonFault(h.root, { only: 'clone', at: 'network', message: 'no conflist found' });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-idem' }, 3);
    try {
      const failed = await h.restores.settle(jobId);
      expect(failed.state).toBe('failed');
      expect(failed.failedReason).toMatch(/E_COCOON_NETWORK/);
    } finally {
      setCocoonFault(h.root, undefined);
    }
    expect(readVm(h.root, 'vm-idem')).toBeUndefined();
    expect(clones(h.root)).toBe(1); // that `cocoon vm clone` stopped at "init network"
    const started = ((await Job.fromId(h.restores.queue, jobId))!.progress as { startedAt: number }).startedAt;

    // The operator fixes the network and retries that job: same id, fresh attempt budget, one clone.
    const cli = await runCli(['retry', '--host', h.id, '--queue', 'restores', '--id', jobId, '--yes', '--json'], { REDIS_URL: redis.url });
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout).jobs).toEqual([expect.objectContaining({ id: jobId, action: 'retried' })]);
    const done = await h.restores.settle(jobId);
    expect(done).toMatchObject({ state: 'completed', attemptsMade: 1 });
    expect(done.value).toMatchObject({ kind: 'clone', vm: 'vm-idem', outcome: 'done', digest: img.digest });
    const vm = readVm(h.root, 'vm-idem')!;
    expect(vm.state).toBe('running');
    expect(clones(h.root)).toBe(2);
    // "When this job first started" survives the retry: it is what tells this job's clone from somebody else's.
    expect(((await Job.fromId(h.restores.queue, jobId))!.progress as { startedAt: number }).startedAt).toBe(started);

    // Retried once more (the board's Retry on a completed job): the VM is this job's own → already-done, no second clone.
    await (await Job.fromId(h.restores.queue, jobId))!.retry('completed');
    const again = await h.restores.settle(jobId);
    expect(again.state).toBe('completed');
    expect(again.value).toMatchObject({ vm: 'vm-idem', outcome: 'already-done', digest: img.digest });
    expect(again.value.cocoon).toMatchObject({ id: vm.id });
    expect(clones(h.root)).toBe(2);
    expect(readVm(h.root, 'vm-idem')).toMatchObject({ id: vm.id, state: 'running' });
    const logs = (await h.restores.queue.getJobLogs(jobId)).logs.join('\n');
    expect(logs).toContain(`VM vm-idem (${vm.id}) was cloned by an earlier attempt of this job and is running: nothing to do`);
  });

  it('a VM of that name in state "error" → failure with the remedy, no clone', async () => {
    const h = await host('r-leftover');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest });
    plantVm(h.root, { name: 'vm-broken', state: 'error', image: 'https://e/w', imageDigest: img.digest });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-broken' }, 3);
    const r = await h.restores.settle(jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/state "error".*cocoon vm rm --force vm-broken/);
    expect(clones(h.root)).toBe(0);
  });

  it('a young "creating" record of that name (a clone maybe still running) → retried later, never cloned over', async () => {
    const h = await host('r-creating');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest });
    plantVm(h.root, { name: 'vm-busy', state: 'creating', image: 'https://e/w', imageDigest: img.digest });
    const r = await h.restores.settle((await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-busy' }, 2)).jobId);
    expect(r.attemptsMade).toBe(2); // transient: retried
    expect(r.failedReason).toMatch(/VM vm-busy .* is still being created .*retrying later/);
    expect(clones(h.root)).toBe(0);
  });

  it('somebody else\'s VM of that name → permanent, no clone', async () => {
    const h = await host('r-taken');
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest });
    plantVm(h.root, { name: 'vm-taken', state: 'running', image: 'https://e/w', imageDigest: img.digest, createdAt: new Date(Date.now() - 3_600_000) });
    const r = await h.restores.settle((await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-taken' }, 3)).jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/already exists and is not this job's clone \(it was created at .*before this job first started\)/);
    expect(clones(h.root)).toBe(0);
  });
});

describe('cocoon failures, driven by the fixture\'s real error texts', () => {
  let h: Awaited<ReturnType<typeof host>>;
  let img: TestImage;
  beforeAll(async () => {
    h = await host('r-cocoon-fail', { FLEETQ_COCOON_TIMEOUT: '1500ms', FLEETQ_SHUTDOWN_GRACE: '300ms' });
    img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest, cpu: 4, memory: 2 * 1024 ** 3, nics: 1 });
    setHostCores(h.root, 8);
  });
  let n = 0;
  const clone = (extra: Partial<RestoreInput> = {}, attempts = 2) => h.restore({ kind: 'clone', snapshot: 'golden', name: `vm-f${n++}`, ...extra } as RestoreInput, attempts);
  const withFault = async (fault: Parameters<typeof setCocoonFault>[1], fn: () => Promise<void>) => {
    setCocoonFault(h.root, fault);
    try {
      await fn();
    } finally {
      setCocoonFault(h.root, undefined);
    }
  };

  it.each([
    ['snapshot not found', { snapshot: 'no-such-snap' }, /inspect: snapshot not found \[E_COCOON_SNAPSHOT_NOT_FOUND/],
    ['cpu below the snapshot\'s', { cpu: 2 }, /--cpu 2 below snapshot minimum 4 \[E_COCOON_BELOW_SNAPSHOT/],
    ['memory below the snapshot\'s', { memory: '1G' }, /--memory 1.074GB below snapshot minimum 2.147GB \[E_COCOON_BELOW_SNAPSHOT/],
    ['vCPUs over the host\'s cores', { cpu: 64 }, /requested 64 vCPUs exceeds host cores \(8\) \[E_COCOON_TOO_MANY_CPUS/],
  ])('%s → permanent, one attempt', async (_what, extra, reason) => {
    const r = await h.restores.settle((await clone(extra, 3)).jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(reason);
  });

  it('CNI/network init → permanent', async () => {
    await withFault({ only: 'clone', at: 'network', message: 'no conflist found' }, async () => {
      const r = await h.restores.settle((await clone({}, 3)).jobId);
      expect(r.attemptsMade).toBe(1);
      expect(r.failedReason).toMatch(/init network: no conflist found \[E_COCOON_NETWORK/);
    });
  });

  it('hypervisor launch failure → transient (retried); the job log holds the argv and cocoon\'s stderr', async () => {
    await withFault({ only: 'clone', at: 'launch', message: 'exit status 1' }, async () => {
      const { jobId } = await clone({}, 2);
      const r = await h.restores.settle(jobId);
      expect(r.attemptsMade).toBe(2);
      expect(r.failedReason).toMatch(/clone VM: launch CH: exit status 1 \[E_COCOON_HYPERVISOR/);
      const logs = (await h.restores.queue.getJobLogs(jobId)).logs.join('\n');
      expect(logs).toMatch(/\$ .*fake-cocoon vm clone golden --name vm-f\d+ -o json --root-dir /);
      expect(logs).toMatch(/\[cocoon stderr\] Error: clone VM: launch CH: exit status 1/);
    });
  });

  it('timeout → cocoon is killed and the job retried; the clone record is gone', async () => {
    await withFault({ only: 'clone', at: 'launch', sleepMs: 30_000 }, async () => {
      const { jobId, vm } = await clone({}, 2);
      const r = await h.restores.settle(jobId);
      expect(r.attemptsMade).toBe(2);
      expect(r.failedReason).toMatch(/timed out after 1.5s(: .*)? \(FLEETQ_COCOON_TIMEOUT\)$/);
      expect((await h.restores.queue.getJobLogs(jobId)).logs.join('\n')).toMatch(/\[cocoon stderr\] .*INF launching cloud-hypervisor/);
      expect(readVm(h.root, vm)).toBeUndefined(); // SIGTERM: cocoon cleans up its reservation
    });
  });

  it('cocoon printing help and exiting 0 (no such subcommand) is not success', async () => {
    await withFault({ only: 'clone', helpInstead: true }, async () => {
      const r = await h.restores.settle((await clone({}, 3)).jobId);
      expect(r.attemptsMade).toBe(1);
      expect(r.failedReason).toMatch(/exited 0 but printed .* instead of the cloned VM record/);
    });
  });

  it('restore to a snapshot that is not the VM\'s → permanent', async () => {
    plantVm(h.root, { name: 'vm-owner', state: 'running', image: 'https://e/w', imageDigest: img.digest, cpu: 4, memory: 2 * 1024 ** 3, nics: 1, backing: blobOf(h.root, img) });
    const r = await h.restores.settle((await h.restore({ kind: 'restore', vm: 'vm-owner', snapshot: 'golden' }, 3)).jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/snapshot golden does not belong to VM vm-owner \[E_COCOON_SNAPSHOT_NOT_OWNED/);
    expect(readVm(h.root, 'vm-owner')!.state).toBe('running');
  });

  it('a bad cocoon config file → permanent (configuration error)', async () => {
    const h2 = await host('r-cocoon-config', { FLEETQ_COCOON_CONFIG: '/nonexistent/cocoon.yaml' });
    plantBlob(h2.root, img.hex, img.body);
    const r = await h2.restores.settle((await h2.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-cfg' }, 3)).jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/read config: open \/nonexistent\/cocoon.yaml: no such file or directory \[E_COCOON_CONFIG/);
  });

  it('bad restore payloads → clear error, no retries, no subprocess', async () => {
    const before = restoreCalls(h.root).length;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ kind: 'restore', snapshot: 's' }, /^invalid restore payload: vm is required/],
      [{ kind: 'clone', snapshot: 's' }, /^invalid restore payload: name is required/],
      [{ kind: 'clone', snapshot: 's', name: 'n', cpu: -1 }, /^invalid restore payload: cpu must be at least 1/],
      [{ kind: 'clone', snapshot: 's', name: 'n', memory: '256M' }, /^invalid restore payload: memory must be at least 512M/],
      [{ kind: 'clone', snapshot: 's', name: 'n', nics: 0 }, /^invalid restore payload: nics must be at least 1/],
      [{ kind: 'migrate', snapshot: 's' }, /^invalid restore payload: kind must be "clone" or "restore"/],
      [{ kind: 'clone', snapshot: 's', name: 'n', extra: 1 }, /^invalid restore payload: extra is not a known field/],
      [{ kind: 'clone', snapshot: '--rm-all', name: 'n' }, /^invalid restore payload: snapshot must match/],
    ];
    for (const [data, reason] of cases) {
      const job = await h.restores.queue.add('restore', data, { attempts: 3, backoff: { type: 'fixed', delay: 50 } });
      const r = await h.restores.settle(job.id!);
      expect(r.state).toBe('failed');
      expect(r.attemptsMade).toBe(1);
      expect(r.failedReason).toMatch(reason);
    }
    expect(restoreCalls(h.root).length).toBe(before);
  });
});

describe('cocoon gc keeps every blob fleetq reported', () => {
  it('after a pull, a re-pointed URL and a present pin, every reported digest is referenced by images.json and survives gc', async () => {
    const h = await host('r-gc-refs');
    const d1 = freshImage();
    const d2 = freshImage();
    const stray = freshImage();
    const path = '/gc-refs/win11';
    const ensure = async (imageDigest: string) => {
      const { jobId } = await enqueueEnsureImage(h.images.queue, { image: upstream.url(path), imageDigest }, { host: h.id, attempts: 1, backoffMs: 10 });
      return h.images.settle(jobId);
    };
    upstream.serve(path, d1.body);
    expect((await ensure(d1.digest)).value.outcome).toBe('pulled');
    upstream.serve(path, d2.body); // the tag is re-pushed
    expect((await ensure(d2.digest)).value.outcome).toBe('pulled');
    expect(readIndexFile(h.root).images[upstream.url(path)]!.content_sum).toBe(d2.digest); // D1 lost its reference…
    expect((await ensure(d1.digest)).value.outcome).toBe('present'); // …until D1 is reported present again
    const refs = Object.values(readIndexFile(h.root).images).map((e) => e.content_sum);
    expect(refs).toEqual(expect.arrayContaining([d1.digest, d2.digest]));
    expect(readIndexFile(h.root).images[`${upstream.url(path)}#${d1.digest}`]!.content_sum).toBe(d1.digest);

    plantBlob(h.root, stray.hex, stray.body); // referenced by nothing: gc must delete it
    const gc = await runFakeCocoon(['gc', ...cocoonGlobalArgs(h.root)]);
    expect(gc.code).toBe(0);
    expect(storeState(h.root).blobs).toEqual([`${d1.hex}.qcow2`, `${d2.hex}.qcow2`].sort());
    assertConsistent(h.root);
  });
});

describe('shutdown during a restore', () => {
  it('the cocoon subprocess is signalled, the worker exits 0, and a later worker redoes the job', async () => {
    const h = await host('r-shutdown', { FLEETQ_SHUTDOWN_GRACE: '300ms' }, 0);
    const img = freshImage();
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, { name: 'golden', image: 'https://e/w', imageDigest: img.digest });
    setCocoonFault(h.root, { only: 'clone', at: 'launch', sleepMs: 60_000 });
    const w1 = await startWorkerProcess(h.base);
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', name: 'vm-sd' });
    await w1.waitForLog((l) => l.msg === 'running cocoon vm clone');
    const clonePid = await waitFor('the clone call in the fake cocoon\'s log', () => cocoonCalls(h.root).find((c) => c.argv[1] === 'clone')?.pid, { intervalMs: 20 });
    expect(await w1.stop()).toBe(0);
    expect(() => process.kill(clonePid, 0)).toThrow(); // the subprocess is gone
    expect(readVm(h.root, 'vm-sd')).toBeUndefined(); // cocoon removed its reservation: nothing half-done
    expect(['delayed', 'wait', 'waiting']).toContain(await (await h.restores.queue.getJob(jobId))!.getState());

    setCocoonFault(h.root, undefined);
    const w2 = await startWorkerProcess(h.base);
    try {
      const r = await h.restores.settle(jobId);
      expect(r.value.outcome).toBe('done');
      expect(readVm(h.root, 'vm-sd')!.state).toBe('running');
    } finally {
      expect(await w2.stop()).toBe(0);
    }
  });
});

describe('CLI: fleetq enqueue restore', () => {
  it('clone without --image/--digest, --wait --json → exit 0 with the VM and the snapshot\'s digest', async () => {
    const h = await host('r-cli');
    const img = freshImage();
    const url = upstream.serve('/cli-restore/win11', img.body);
    plantSnapshot(h.root, { name: 'win11-golden', image: url, imageDigest: img.digest, cpu: 2 });
    const r = await runCli(['enqueue', 'restore', '--host', 'r-cli', '--kind', 'clone', '--snapshot', 'win11-golden', '--name', 'vm-cli', '--cpu', '4', '--memory', '8G', '--wait', '--json'], { REDIS_URL: redis.url });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ state: 'completed', vm: 'vm-cli', outcome: 'done', digest: img.digest });
    // --wait reports on stderr (the id at once, then a line per change); no warning: the host has a live worker.
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe(`job ${out.jobId}: queued on ${restoreQueueName('r-cli')}`);
    for (const l of lines) expect(l.startsWith(`job ${out.jobId}: `)).toBe(true);
  });

  it.each([
    [['--kind', 'restore', '--snapshot', 's'], /^fleetq: --vm: is required/],
    [['--kind', 'clone', '--snapshot', 's', '--memory', '8X'], /^fleetq: --memory: must be a size/],
    [['--kind', 'clone', '--snapshot', 's', '--memory', '256M'], /^fleetq: --memory: must be at least 512M/],
    [['--kind', 'clone', '--snapshot', 's', '--storage', '5G'], /^fleetq: --storage: must be at least 10G/],
    [['--kind', 'clone', '--snapshot', 's', '--nics', '0'], /^fleetq: --nics: must be at least 1/],
    [['--kind', 'clone', '--snapshot', 's', '--cpu', 'many'], /^fleetq: --cpu: must be a whole number/],
    [['--kind', 'clone', '--snapshot', 's', '--name', 'bad name'], /^fleetq: --name: must match/],
    [['--kind', 'teleport', '--snapshot', 's'], /^fleetq: --kind: must be "clone" or "restore"/],
  ])('bad flags exit 2 naming the flag: %j', async (args, message) => {
    const r = await runCli(['enqueue', 'restore', '--host', 'r-cli-bad', ...args], { REDIS_URL: redis.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});

void rmSync;
