/**
 * Restore flows end to end: real redis-server, real worker processes, a real
 * HTTP upstream, real qcow2 images and overlays (qemu-img), and a fake cocoon
 * that behaves as cocoon does on disk.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { cocoonCalls, FAKE_COCOON, plantSnapshot, setCocoonFault, vmRecord } from '../helpers/cocoon.js';
import { qcow2Image, qemuInfo, type TestImage } from '../helpers/images.js';
import { queueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, plantBlob, plantIndexEntry, removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
let upstream: Upstream;
let flowConn: Redis;
let flow: FlowProducer;
const cleanups: Array<() => Promise<void> | void> = [];
let size = 200;
const freshImage = () => qcow2Image(size++);

beforeAll(async () => {
  upstream = await startUpstream();
  flowConn = new Redis(redis.url, { maxRetriesPerRequest: null });
  flow = new FlowProducer({ connection: flowConn, prefix: 'fleetq' });
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await flow?.close();
  flowConn?.disconnect();
  await upstream?.stop();
});

/** A host: its own root, worker process(es) and queue clients. */
async function host(id: string, env: Record<string, string> = {}, processes = 1) {
  const root = tempRoot();
  const workers: WorkerProcess[] = [];
  for (let i = 0; i < processes; i++) {
    workers.push(await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, FLEETQ_COCOON_BIN: FAKE_COCOON, FLEETQ_BACKOFF: '100ms', ...env }));
  }
  const restores = await queueClient(redis.url, restoreQueueName(id));
  const images = await queueClient(redis.url, imageQueueName(id));
  cleanups.push(async () => {
    await restores.close();
    await images.close();
    for (const w of workers) await w.kill();
    removeRoot(root);
  });
  const restore = (input: Parameters<typeof enqueueRestore>[1], attempts = 3) => enqueueRestore(flow, input, { host: id, attempts, backoffMs: 100 });
  return { id, root, workers, restores, images, restore };
}

/** The #37 set-up: the URL index points at an old digest whose blob exists; the URL now serves `current`; the snapshot pins `current`. */
function plant37(root: string, path: string): { url: string; old: TestImage; current: TestImage } {
  const old = freshImage();
  const current = freshImage();
  const url = upstream.serve(path, current.body);
  plantBlob(root, old.hex, old.body);
  plantIndexEntry(root, url, old.digest, old.body.length);
  plantSnapshot(root, 'win11-golden', { image: url, image_digest: current.digest, cpu: 2, memory: '4G' });
  return { url, old, current };
}

describe('cocoon#37 through a restore', () => {
  it('stale URL entry + pinned newer digest → one GET, clone succeeds on the pinned blob', async () => {
    const h = await host('r-37');
    const { url, current } = plant37(h.root, '/r37/win11');
    const { jobId, vm } = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-042', image: url, imageDigest: current.digest, cpu: 4, memory: '8G' });
    const r = await h.restores.settle(jobId);

    expect(r.state).toBe('completed');
    expect(vm).toBe('vm-042');
    expect(r.value).toMatchObject({ kind: 'clone', vm: 'vm-042', digest: current.digest, outcome: 'done' });
    expect(upstream.gets('/r37/win11')).toBe(1);
    const blob = join(h.root, 'cloudimg/blobs', `${current.hex}.qcow2`);
    const rec = vmRecord(h.root, 'vm-042')!;
    expect(qemuInfo(rec.overlay)['backing-filename']).toBe(blob);
    expect(cocoonCalls(h.root).map((c) => c.argv.slice(0, 2).join(' '))).toEqual(['vm inspect', 'vm clone']);
    expect(cocoonCalls(h.root)[1]!.argv).toEqual(['vm', 'clone', 'win11-golden', '--name', 'vm-042', '--cpu', '4', '--memory', '8G', '-o', 'json']);
    assertConsistent(h.root);
  });

  it('with the forced pull switched off (pre-#39 behaviour) the same scenario dies in cocoon with "Backing file I/O error" — the test detects the bug', async () => {
    const h = await host('r-37-legacy', { FLEETQ_UNSAFE_LEGACY_URL_CACHE: '1' });
    const { url, current } = plant37(h.root, '/r37-legacy/win11');
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-043', image: url, imageDigest: current.digest }, 1);
    const r = await h.restores.settle(jobId);

    expect(r.state).toBe('failed');
    expect(r.failedReason).toMatch(/Backing file I\/O error: .*\/cloudimg\/blobs\/[0-9a-f]{64}\.qcow2 — No such file or directory/);
    expect(r.failedReason).toContain(current.hex);
    expect(upstream.gets('/r37-legacy/win11')).toBe(0);
    const logs = await h.restores.queue.getJobLogs(jobId);
    expect(logs.logs.join('\n')).toMatch(/\[cocoon stderr\] Error: vm\.restore → 500: Backing file I\/O error/);
  });
});

describe('the base image cannot be had', () => {
  it('pinned digest no longer served → the restore fails before cocoon is spawned, naming both digests', async () => {
    const h = await host('r-unobtainable');
    const pinned = freshImage();
    const served = freshImage();
    const url = upstream.serve('/unobtainable/win11', served.body);
    plantSnapshot(h.root, 'golden', { image: url, image_digest: pinned.digest });
    const { jobId, imageJobId } = await h.restore({ kind: 'clone', snapshot: 'golden', image: url, imageDigest: pinned.digest });
    const r = await h.restores.settle(jobId);

    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toContain(pinned.digest);
    expect(r.failedReason).toContain(served.digest);
    expect(r.failedReason).toMatch(/cocoon was not started/);
    expect((await h.images.queue.getJob(imageJobId))!.attemptsMade).toBe(1); // digest mismatch is permanent
    expect(cocoonCalls(h.root)).toHaveLength(0);
  });

  it('upstream 404 → the restore fails with the child\'s reason; cocoon never runs', async () => {
    const h = await host('r-404');
    const img = freshImage();
    plantSnapshot(h.root, 'golden', { image: upstream.url('/nothing-here'), image_digest: img.digest });
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'golden', image: upstream.url('/nothing-here'), imageDigest: img.digest });
    const r = await h.restores.settle(jobId);
    expect(r.state).toBe('failed');
    expect(r.failedReason).toMatch(/HTTP 404/);
    expect(cocoonCalls(h.root)).toHaveLength(0);
  });
});

describe('fan-out', () => {
  it('20 clones for one digest on one host across two worker processes → one GET, 20 overlays on the same blob', async () => {
    const h = await host('r-fanout', { FLEETQ_CONCURRENCY: '10', FLEETQ_RESTORE_CONCURRENCY: '5' }, 2);
    const img = qcow2Image(1024);
    const url = upstream.serve('/fanout/win11', img.body, { chunkDelayMs: 20, chunkSize: 16 * 1024 });
    plantSnapshot(h.root, 'golden', { image: url, image_digest: img.digest });
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => h.restore({ kind: 'clone', snapshot: 'golden', name: `fan-${i}`, image: url, imageDigest: img.digest })));
    const results = await Promise.all(jobs.map((j) => h.restores.settle(j.jobId, 60_000)));

    expect(results.map((r) => r.state)).toEqual(Array(20).fill('completed'));
    expect(upstream.gets('/fanout/win11')).toBe(1);
    const blob = join(h.root, 'cloudimg/blobs', `${img.hex}.qcow2`);
    const backings = new Set(Array.from({ length: 20 }, (_, i) => qemuInfo(vmRecord(h.root, `fan-${i}`)!.overlay)['backing-filename']));
    expect(backings).toEqual(new Set([blob]));
    const children = await Promise.all(jobs.map((j) => h.images.queue.getJob(j.imageJobId)));
    const outcomes = children.map((c) => c!.returnvalue.outcome);
    expect(outcomes.filter((o: string) => o === 'pulled')).toHaveLength(1);
    expect(outcomes.filter((o: string) => o === 'present')).toHaveLength(19);
  });
});

describe('blob deleted between child and parent', () => {
  it('the parent does not call cocoon on a missing base; the retry pulls the image again and the restore succeeds', async () => {
    const root = tempRoot();
    const id = 'r-gc';
    const img = freshImage();
    const url = upstream.serve('/gc/win11', img.body);
    plantSnapshot(root, 'golden', { image: url, image_digest: img.digest });
    const base = { REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, FLEETQ_COCOON_BIN: FAKE_COCOON };
    const imagesOnly = await startWorkerProcess({ ...base, FLEETQ_QUEUES: 'images' });
    const restores = await queueClient(redis.url, restoreQueueName(id));
    const images = await queueClient(redis.url, imageQueueName(id));
    try {
      const { jobId, imageJobId } = await enqueueRestore(flow, { kind: 'clone', snapshot: 'golden', name: 'vm-gc', image: url, imageDigest: img.digest }, { host: id, attempts: 3, backoffMs: 100 });
      expect((await images.settle(imageJobId)).value.outcome).toBe('pulled');
      rmSync(join(root, 'cloudimg/blobs', `${img.hex}.qcow2`)); // GC, a wiped disk…

      const restoresOnly = await startWorkerProcess({ ...base, FLEETQ_QUEUES: 'restores' });
      try {
        const r = await restores.settle(jobId);
        expect(r.state).toBe('completed');
        expect(r.attemptsMade).toBe(2);
        expect(upstream.gets('/gc/win11')).toBe(2);
        // First attempt failed before cocoon; only the retry ran it (inspect + clone), never on a missing base.
        expect(cocoonCalls(root).map((c) => c.argv[1])).toEqual(['inspect', 'clone']);
        const firstFailure = await restoresOnly.waitForLog((l) => l.msg === 'restore failed', 5000);
        expect(String((firstFailure.err as { message: string }).message)).toMatch(new RegExp(`base image .*${img.hex}\\.qcow2 \\(${img.digest}\\) is missing`));
        expect(qemuInfo(vmRecord(root, 'vm-gc')!.overlay)['backing-filename']).toBe(join(root, 'cloudimg/blobs', `${img.hex}.qcow2`));
      } finally {
        expect(await restoresOnly.stop()).toBe(0);
      }
    } finally {
      expect(await imagesOnly.stop()).toBe(0);
      await restores.close();
      await images.close();
      removeRoot(root);
    }
  });
});

describe('cocoon failures are classified as documented; job logs hold its output', () => {
  let h: Awaited<ReturnType<typeof host>>;
  let img: TestImage;
  let url: string;
  beforeAll(async () => {
    h = await host('r-cocoon-fail', { FLEETQ_COCOON_TIMEOUT: '1500ms', FLEETQ_SHUTDOWN_GRACE: '300ms' });
    img = freshImage();
    url = upstream.serve('/cocoon-fail/win11', img.body);
    plantBlob(h.root, img.hex, img.body);
    plantSnapshot(h.root, 'golden', { image: url, image_digest: img.digest, cpu: 4, nics: 1 });
  });
  const clone = (extra: Record<string, unknown> = {}, attempts = 2) =>
    h.restore({ kind: 'clone', snapshot: 'golden', image: url, imageDigest: img.digest, ...extra } as never, attempts);

  it('snapshot not found → permanent (no retry)', async () => {
    const { jobId } = await h.restore({ kind: 'clone', snapshot: 'no-such-snap', image: url, imageDigest: img.digest }, 3);
    const r = await h.restores.settle(jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/snapshot "no-such-snap" not found \[E_COCOON_SNAPSHOT_NOT_FOUND/);
    const logs = (await h.restores.queue.getJobLogs(jobId)).logs.join('\n');
    expect(logs).toMatch(/\$ .*fake-cocoon vm clone no-such-snap/);
    expect(logs).toMatch(/\[cocoon stderr\] Error: snapshot "no-such-snap" not found/);
  });

  it('resources below the snapshot\'s → permanent', async () => {
    const r = await h.restores.settle((await clone({ cpu: 2 }, 3)).jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/E_COCOON_BELOW_SNAPSHOT/);
  });

  it('NIC mismatch → permanent', async () => {
    const r = await h.restores.settle((await clone({ nics: 3 }, 3)).jobId);
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/E_COCOON_NIC_MISMATCH/);
  });

  it('an unrecognised non-zero exit → retried, last stderr lines in the reason', async () => {
    setCocoonFault(h.root, { exitCode: 3, stderr: 'Error: hypervisor hiccup', only: 'clone' });
    try {
      const r = await h.restores.settle((await clone()).jobId);
      expect(r.attemptsMade).toBe(2);
      expect(r.failedReason).toMatch(/exited 3: Error: hypervisor hiccup \[E_COCOON_FAILED/);
    } finally {
      setCocoonFault(h.root, undefined);
    }
  });

  it('timeout → cocoon is killed and the job retried', async () => {
    setCocoonFault(h.root, { sleepMs: 30_000, only: 'clone' });
    try {
      const { jobId } = await clone();
      const r = await h.restores.settle(jobId);
      expect(r.attemptsMade).toBe(2);
      expect(r.failedReason).toMatch(/timed out after 1.5s \(FLEETQ_COCOON_TIMEOUT\)/);
      expect((await h.restores.queue.getJobLogs(jobId)).logs.join('\n')).toMatch(/\[cocoon stdout\] booting/);
    } finally {
      setCocoonFault(h.root, undefined);
    }
  });

  it('killed by a signal → retried', async () => {
    setCocoonFault(h.root, { sleepMs: 10, killSelf: 'SIGKILL', only: 'clone' });
    try {
      const r = await h.restores.settle((await clone()).jobId);
      expect(r.attemptsMade).toBe(2);
      expect(r.failedReason).toMatch(/was killed by SIGKILL/);
    } finally {
      setCocoonFault(h.root, undefined);
    }
  });

  it('a retried clone that an earlier attempt already made is not made twice', async () => {
    const first = await h.restores.settle((await clone({ name: 'vm-idem' })).jobId);
    expect(first.value.outcome).toBe('done');
    const again = await h.restores.settle((await clone({ name: 'vm-idem' })).jobId);
    expect(again.state).toBe('completed');
    expect(again.value.outcome).toBe('already-done');
    expect(cocoonCalls(h.root).filter((c) => c.argv[1] === 'clone' && c.argv.includes('vm-idem'))).toHaveLength(1);
  });

  it('restore of a VM to its own snapshot works; to a foreign one fails permanently', async () => {
    plantSnapshot(h.root, 'idem-snap', { image: url, image_digest: img.digest, vm: 'vm-idem', cpu: 4 });
    const ok = await h.restores.settle((await h.restore({ kind: 'restore', vm: 'vm-idem', snapshot: 'idem-snap', image: url, imageDigest: img.digest })).jobId);
    expect(ok.value).toMatchObject({ kind: 'restore', vm: 'vm-idem', outcome: 'done', digest: img.digest });
    const bad = await h.restores.settle((await h.restore({ kind: 'restore', vm: 'vm-idem', snapshot: 'golden', image: url, imageDigest: img.digest })).jobId);
    expect(bad.attemptsMade).toBe(1);
    expect(bad.failedReason).toMatch(/does not belong to VM "vm-idem" \[E_COCOON_SNAPSHOT_NOT_OWNED/);
  });

  it('bad restore payloads → clear error, no retries, no subprocess', async () => {
    const before = cocoonCalls(h.root).length;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ kind: 'restore', snapshot: 's', image: url }, /^invalid restore payload: vm is required for kind "restore"/],
      [{ kind: 'clone', snapshot: 's', image: url, cpu: -1 }, /^invalid restore payload: cpu must be at least 1/],
      [{ kind: 'clone', snapshot: 's', image: url, memory: '8X' }, /^invalid restore payload: memory must be a size/],
      [{ kind: 'migrate', snapshot: 's', image: url }, /^invalid restore payload: kind must be "clone" or "restore"/],
      [{ kind: 'clone', snapshot: 's', image: url, extra: 1 }, /^invalid restore payload: extra is not a known field/],
      [{ kind: 'clone', snapshot: '--rm-all', image: url }, /^invalid restore payload: snapshot must be/],
    ];
    for (const [data, reason] of cases) {
      const job = await h.restores.queue.add('restore', data, { attempts: 3, backoff: { type: 'fixed', delay: 50 } });
      const r = await h.restores.settle(job.id!);
      expect(r.state).toBe('failed');
      expect(r.attemptsMade).toBe(1);
      expect(r.failedReason).toMatch(reason);
    }
    expect(cocoonCalls(h.root).length).toBe(before);
  });
});

describe('shutdown during a restore', () => {
  it('the cocoon subprocess is signalled, the worker exits 0, and a later worker redoes the job', async () => {
    const root = tempRoot();
    const id = 'r-shutdown';
    const img = freshImage();
    const url = upstream.serve('/shutdown/win11', img.body);
    plantBlob(root, img.hex, img.body);
    plantSnapshot(root, 'golden', { image: url, image_digest: img.digest });
    setCocoonFault(root, { sleepMs: 60_000, only: 'clone' });
    const env = { REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, FLEETQ_COCOON_BIN: FAKE_COCOON, FLEETQ_SHUTDOWN_GRACE: '300ms' };
    const restores = await queueClient(redis.url, restoreQueueName(id));
    const w1 = await startWorkerProcess(env);
    try {
      const { jobId } = await enqueueRestore(flow, { kind: 'clone', snapshot: 'golden', name: 'vm-sd', image: url, imageDigest: img.digest }, { host: id, attempts: 3, backoffMs: 100 });
      await w1.waitForLog((l) => l.msg === 'running cocoon');
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (cocoonCalls(root).some((c) => c.argv[1] === 'clone')) {
            clearInterval(t);
            resolve();
          }
        }, 20);
      });
      const clonePid = cocoonCalls(root).find((c) => c.argv[1] === 'clone')!.pid;
      expect(await w1.stop()).toBe(0);
      expect(() => process.kill(clonePid, 0)).toThrow(); // the subprocess is gone
      expect(vmRecord(root, 'vm-sd')).toBeUndefined(); // nothing half-done is recorded
      expect(['delayed', 'wait', 'waiting']).toContain(await (await restores.queue.getJob(jobId))!.getState());

      setCocoonFault(root, undefined);
      const w2 = await startWorkerProcess(env);
      try {
        const r = await restores.settle(jobId);
        expect(r.state).toBe('completed');
        expect(r.value.outcome).toBe('done');
        expect(vmRecord(root, 'vm-sd')!.backing).toBe(join(root, 'cloudimg/blobs', `${img.hex}.qcow2`));
      } finally {
        expect(await w2.stop()).toBe(0);
      }
    } finally {
      await w1.kill();
      await restores.close();
      removeRoot(root);
    }
  });
});

describe('CLI: fleetq enqueue restore', () => {
  it('clone --wait --json → exit 0 with the VM and digest', async () => {
    const h = await host('r-cli');
    const img = freshImage();
    const url = upstream.serve('/cli-restore/win11', img.body);
    plantSnapshot(h.root, 'win11-golden', { image: url, image_digest: img.digest, cpu: 2 });
    const r = await runCli(
      ['enqueue', 'restore', '--host', 'r-cli', '--kind', 'clone', '--snapshot', 'win11-golden', '--name', 'vm-cli', '--image', url, '--digest', img.digest, '--cpu', '4', '--memory', '8G', '--wait', '--json'],
      { REDIS_URL: redis.url },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: 'completed', vm: 'vm-cli', outcome: 'done', digest: img.digest });
  });

  it.each([
    [['--kind', 'restore', '--snapshot', 's'], /^fleetq: --vm: is required for kind "restore"/],
    [['--kind', 'clone', '--snapshot', 's', '--memory', '8X'], /^fleetq: --memory: must be a size/],
    [['--kind', 'clone', '--snapshot', 's', '--cpu', 'many'], /^fleetq: --cpu: must be a whole number/],
    [['--kind', 'teleport', '--snapshot', 's'], /^fleetq: --kind: must be "clone" or "restore"/],
  ])('bad flags exit 2 naming the flag: %j', async (args, message) => {
    const r = await runCli(['enqueue', 'restore', '--host', 'r-cli-bad', '--image', 'http://127.0.0.1/x', ...args], { REDIS_URL: redis.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
