/**
 * Image bodies and the servers behind job URLs are hostile. Each break found
 * by trying (issue #9) is a test here, end to end: real worker processes, a
 * real redis-server, loopback HTTP servers with fault injection, real
 * qemu-img, real file systems (tmpfs with a size, read-only remounts, another
 * user).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { pullLockRedisKey } from '../../src/lock/keys.js';
import { Digest } from '../../src/lib/digest.js';
import { storePaths } from '../../src/store/paths.js';
import { digestOf, qcow2Image, rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, readIndexFile, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';
import { waitFor } from '../helpers/wait.js';

const redis = useTestRedis();
let upstream: Upstream;
const isRoot = process.getuid?.() === 0;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream?.stop();
});

interface Host {
  id: string;
  root: string;
  worker: WorkerProcess;
  images: QueueClient;
  ensure(image: string, imageDigest?: string, extra?: { force?: boolean; attempts?: number }): Promise<string>;
  close(): Promise<void>;
}

async function host(id: string, env: Record<string, string> = {}, root = tempRoot(), opts: Parameters<typeof startWorkerProcess>[2] = {}): Promise<Host> {
  const worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, FLEETQ_BACKOFF: '100ms', ...env }, [], opts);
  const images = await queueClient(redis.url, imageQueueName(id));
  return {
    id,
    root,
    worker,
    images,
    async ensure(image, imageDigest, extra = {}) {
      const { jobId } = await enqueueEnsureImage(images.queue, { image, imageDigest, force: extra.force }, { host: id, attempts: extra.attempts ?? 2, backoffMs: 100 });
      return jobId;
    },
    async close() {
      await images.close();
      await worker.kill();
    },
  };
}

/** `fleetq hosts --json`'s health for a host, asked until it reads `want` (the next heartbeat carries it) or 5 s pass. */
async function hostHealth(id: string, want: string): Promise<string | undefined> {
  const until = Date.now() + 5000;
  let health: string | undefined;
  while (Date.now() < until && health !== want) {
    const hosts = JSON.parse((await runCli(['hosts', '--json'], { REDIS_URL: redis.url, FLEETQ_HOST_DOWN_AFTER: '5s' })).stdout);
    health = hosts.find((x: { host: string }) => x.host === id)?.health;
  }
  return health;
}

/** Every blob's bytes, concatenated (for "the secret is in no blob"). */
function allBlobBytes(root: string): Buffer {
  const dir = storePaths(root).blobs;
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    /* none */
  }
  return Buffer.concat(names.map((n) => readFileSync(join(dir, n))));
}

describe('1. conversion is explicit and contained: a body never makes qemu open a host file', () => {
  let h: Host;
  let secretDir: string;
  let secret: Buffer;
  let secretFile: string;
  beforeAll(async () => {
    h = await host('hostile-formats');
    secretDir = mkdtempSync(join(tmpdir(), 'fleetq-secret-'));
    secret = Buffer.concat([Buffer.from('TOP-SECRET-'), randomBytes(64 * 1024)]);
    secretFile = join(secretDir, 'secret.raw');
    writeFileSync(secretFile, secret);
  });
  afterAll(async () => {
    await h.close();
    rmSync(secretDir, { recursive: true, force: true });
    removeRoot(h.root);
  });

  const made = (name: string, args: string[]) => {
    const file = join(secretDir, name);
    execFileSync('qemu-img', ['create', '-q', ...args.map((a) => a.replace('$OUT', file))]);
    return readFileSync(file);
  };

  it.each([
    ['a qcow2 whose backing file is a host file', () => made('backing.qcow2', ['-f', 'qcow2', '-o', 'compat=1.1', '-F', 'raw', '-b', secretFile, '$OUT', '64K']), /backing file/i],
    ['a qcow2 v2 whose backing file is a host file', () => made('backing-v2.qcow2', ['-f', 'qcow2', '-o', 'compat=0.10', '-F', 'raw', '-b', secretFile, '$OUT', '64K']), /backing file/i],
    ['a qcow2 v3 with an external data file on the host', () => made('datafile.qcow2', ['-f', 'qcow2', '-o', `compat=1.1,data_file=${secretFile},data_file_raw=on`, '$OUT', '64K']), /data file/i],
    ['a VMDK descriptor whose extent is a host file', () => Buffer.from(`# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 128 FLAT "${secretFile}" 0\n`), /text|VMDK/i],
    ['a sparse VMDK', () => made('sparse.vmdk', ['-f', 'vmdk', '$OUT', '1M']), /VMDK/],
  ])('%s → rejected permanently, nothing committed, the secret in no blob', async (_what, body, reason) => {
    const bytes = body();
    const path = `/formats/${randomBytes(4).toString('hex')}`;
    const r = await h.images.settle(await h.ensure(upstream.serve(path, bytes), undefined, { attempts: 3 }));
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(reason);
    expect(storeState(h.root)).toMatchObject({ blobs: [], temp: [], index: {} });
    expect(allBlobBytes(h.root).includes(secret.subarray(0, 64))).toBe(false);
  });
});

describe('2. honest bytes', () => {
  let h: Host;
  beforeAll(async () => {
    h = await host('hostile-bytes');
  });
  afterAll(async () => {
    await h.close();
    removeRoot(h.root);
  });

  it('a close-delimited body cut halfway (no Content-Length) is not stored when unpinned', async () => {
    const img = rawImage(256 * 1024);
    const url = upstream.serve('/bytes/cut', img.body, { faults: [{ kind: 'close-delimited', afterBytes: 100 * 1024 }] });
    const r = await h.images.settle(await h.ensure(url, undefined, { attempts: 3 }));
    expect(r.state).toBe('failed');
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/neither Content-Length nor chunked encoding.*pin the digest/);
    expect(storeState(h.root)).toMatchObject({ blobs: [], temp: [], index: {} });
  });

  it('the same server with a pinned digest: the digest proves the body complete', async () => {
    const img = rawImage(256 * 1024);
    const url = upstream.serve('/bytes/close-pinned', img.body, { faults: [{ kind: 'close-delimited' }] });
    const r = await h.images.settle(await h.ensure(url, img.digest));
    expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
  });

  it('a 200 text page ("Error: access denied…") is rejected, quoting its first line', async () => {
    const page = Buffer.from(`Error: access denied for user bob\n${'You do not have permission to download this image.\n'.repeat(20)}`);
    const r = await h.images.settle(await h.ensure(upstream.serve('/bytes/text', page), undefined, { attempts: 3 }));
    expect(r.attemptsMade).toBe(1);
    expect(r.failedReason).toMatch(/text.*"Error: access denied for user bob"/);
    expect(storeState(h.root).blobs).not.toContain(`${digestOf(page).slice(7)}.qcow2`);
  });
});

describe('3. a leader that lost its lock cannot re-point the URL', () => {
  it('paused (SIGSTOP) past the lock TTL while a newer leader records the new digest: the old entry never lands', async () => {
    const root = tempRoot();
    const id = 'hostile-fence';
    const env = { FLEETQ_LOCK_TTL: '1s', FLEETQ_MIN_RATE: '0' };
    const a = await host(id, env, root);
    const b = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root, FLEETQ_BACKOFF: '100ms', ...env });
    const conn = new Redis(redis.url);
    try {
      const old = rawImage(512 * 1024);
      const next = rawImage(512 * 1024);
      const path = '/fence/win11';
      const url = upstream.serve(path, old.body, { chunkSize: 16 * 1024, chunkDelayMs: 5 });
      // Job 1 runs on one of the two workers; find which, and pause it when the server has sent everything.
      const sent = new Promise<void>((resolve) => upstream.on('sent', function onSent(n: number) { if (n === old.body.length) { upstream.off('sent', onSent); resolve(); } }));
      const job1 = await a.ensure(url, undefined, { attempts: 3 });
      await sent;
      const leader = [a.worker, b].find((w) => w.logs.some((l) => l.jobId === job1 && l.msg === 'image needs download'))!;
      leader.proc.kill('SIGSTOP');
      try {
        // The lock expires (no refresh while stopped) — watched in Redis, not slept on.
        const lockKey = pullLockRedisKey('fleetq', id, { kind: 'url', url }); // fleetq:mutex:pull-lock:…
        await waitFor(`${lockKey} to expire`, async () => (await conn.exists(lockKey)) === 0, { timeoutMs: 30_000 });
        upstream.serve(path, next.body); // the tag is re-pushed
        const job2 = await a.ensure(url, undefined, { force: true });
        // The live worker pulls the new digest — for job 2, or (when BullMQ's stalled check has already handed it
        // the paused worker's job 1) for job 1, whose flight job 2 then shares as `present`.
        const r2 = (await a.images.settle(job2)).value;
        expect(r2.digest).toBe(next.digest);
        expect(['pulled', 'present']).toContain(r2.outcome);
        expect(readIndexFile(root).images[url]!.content_sum).toBe(next.digest);
      } finally {
        leader.proc.kill('SIGCONT');
      }
      const r1 = await a.images.settle(job1);
      // Whatever the paused leader did, the URL still names the newer digest…
      expect(readIndexFile(root).images[url]!.content_sum).toBe(next.digest);
      // …and the first job ends with what the URL now holds (or failed as lock-lost), never with the stale digest recorded.
      if (r1.state === 'completed') expect(r1.value.digest).toBe(next.digest);
      assertConsistent(root);
    } finally {
      conn.disconnect();
      await a.close();
      await b.kill();
      removeRoot(root);
    }
  });
});

describe('4. a digest mismatch belongs to (URL, digest)', () => {
  it('two jobs pin D1: A\'s URL serves other bytes, B\'s URL is right → A fails, B fetches its own URL and succeeds', async () => {
    const h = await host('hostile-two-urls');
    try {
      const d1 = qcow2Image(321);
      const other = qcow2Image(322);
      const bad = upstream.serve('/two-urls/bad', other.body, { chunkSize: 8 * 1024, chunkDelayMs: 10 });
      const good = upstream.serve('/two-urls/good', d1.body);
      const [ja, jb] = [await h.ensure(bad, d1.digest, { attempts: 1 }), await h.ensure(good, d1.digest, { attempts: 1 })];
      expect(ja).not.toBe(jb); // not deduplicated into each other
      const [ra, rb] = [await h.images.settle(ja), await h.images.settle(jb)];
      expect(ra.state).toBe('failed');
      expect(ra.failedReason).toMatch(/digest mismatch/);
      expect(rb.value).toMatchObject({ outcome: 'pulled', digest: d1.digest });
      expect(upstream.gets('/two-urls/good')).toBe(1);
      expect(upstream.gets('/two-urls/bad')).toBe(1);
    } finally {
      await h.close();
      removeRoot(h.root);
    }
  });
});

describe('5. a minimum transfer rate', () => {
  it('a slowloris (1 byte every 200 ms, under the idle timeout) is aborted as a stall and the lock is released', async () => {
    const h = await host('hostile-slowloris', { FLEETQ_MIN_RATE: '64K', FLEETQ_RATE_WINDOW: '1s', FLEETQ_DOWNLOAD_IDLE_TIMEOUT: '60s' });
    try {
      const img = rawImage(64 * 1024);
      const url = upstream.serve('/slowloris', img.body, { chunkSize: 1, chunkDelayMs: 200 });
      const started = Date.now();
      const r = await h.images.settle(await h.ensure(url, img.digest, { attempts: 1 }), 20_000);
      expect(r.state).toBe('failed');
      expect(r.failedReason).toMatch(/under the minimum 64\.0 KiB: stalled \(FLEETQ_MIN_RATE \/ FLEETQ_RATE_WINDOW\)$/);
      expect(Date.now() - started).toBeLessThan(10_000);
      const conn = new Redis(redis.url);
      expect(await conn.exists(pullLockRedisKey('fleetq', h.id, { kind: 'digest', digest: Digest.parse(img.digest) }))).toBe(0);
      conn.disconnect();
      expect(storeState(h.root)).toMatchObject({ blobs: [], temp: [] });
    } finally {
      await h.close();
      removeRoot(h.root);
    }
  });
});

describe('7. error classes that mean something', () => {
  it('a corrupt images.json does not block a pinned pull and is never overwritten; an unpinned pull fails once, saying how to repair', async () => {
    const h = await host('hostile-corrupt-index');
    try {
      const p = storePaths(h.root);
      mkdirSync(p.db, { recursive: true });
      writeFileSync(p.index, '{"images": {"http://x": {"ref": "http://x", "content_su');
      const img = qcow2Image(333);
      const url = upstream.serve('/corrupt-index/img', img.body);
      const first = await h.ensure(url, img.digest);
      const r = await h.images.settle(first);
      expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
      expect(readFileSync(p.index, 'utf8')).toBe('{"images": {"http://x": {"ref": "http://x", "content_su');
      expect((await h.images.queue.getJobLogs(first)).logs.join('\n')).toMatch(/not indexed, so `cocoon gc` may delete it/);
      // Pinned and present: decided by the blob, the index is not needed.
      expect((await h.images.settle(await h.ensure(url, img.digest))).value.outcome).toBe('present');
      const un = await h.images.settle(await h.ensure(upstream.serve('/corrupt-index/other', qcow2Image(334).body), undefined, { attempts: 3 }));
      expect(un.attemptsMade).toBe(1);
      expect(un.failedReason).toMatch(/images\.json is not valid JSON.*will not overwrite it; repair it/);
    } finally {
      await h.close();
      removeRoot(h.root);
    }
  });

  describe.skipIf(!isRoot)('file systems that refuse (tmpfs and remounts need root)', () => {
    it('a full disk: the pull is parked (no attempt used), the host says "disk full" and takes no pulls; space back → it completes', async () => {
      const root = mkdtempSync(join(tmpdir(), 'fleetq-tmpfs-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', root]);
      let h: Host | undefined;
      try {
        h = await host('hostile-full', { FLEETQ_STORE_FULL_RETRY: '1s', FLEETQ_HEARTBEAT: '200ms' }, root);
        const img = rawImage(4 * 1024 * 1024);
        const jobId = await h.ensure(upstream.serve('/full/img', img.body), img.digest, { attempts: 1 });
        await h.worker.waitForLog((l) => l.msg === 'store full: pulls paused until space is back', 15_000);
        expect(await hostHealth('hostile-full', 'disk-full')).toBe('disk-full');
        expect(await (await h.images.queue.getJob(jobId))!.getState()).toMatch(/delayed|wait|prioritized/);
        expect(readdirSync(storePaths(root).temp).filter((n) => n.startsWith('pull-'))).toEqual([]);

        // 2 MiB free is not the 8 MiB this pull needs (4 MiB body + conversion): pulls stay paused.
        expect(h.worker.logs.some((l) => l.msg === 'store has space again: pulls resumed')).toBe(false);
        execFileSync('mount', ['-o', 'remount,size=64m', root]);
        const r = await h.images.settle(jobId, 30_000);
        expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
        expect(r.attemptsMade).toBe(1); // its only attempt (attempts: 1): parking used none
        await h.worker.waitForLog((l) => l.msg === 'store has space again: pulls resumed');
      } finally {
        await h?.close();
        execFileSync('umount', [root]);
        rmSync(root, { recursive: true, force: true });
      }
    });

    it('a read-only store: permanent failure, and the host reports it as not writable', async () => {
      const root = mkdtempSync(join(tmpdir(), 'fleetq-ro-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', root]);
      let h: Host | undefined;
      try {
        h = await host('hostile-ro', { FLEETQ_HEARTBEAT: '200ms' }, root);
        execFileSync('mount', ['-o', 'remount,ro', root]);
        const img = rawImage(64 * 1024);
        const r = await h.images.settle(await h.ensure(upstream.serve('/ro/img', img.body), img.digest, { attempts: 3 }));
        expect(r.attemptsMade).toBe(1);
        expect(r.failedReason).toMatch(/store is not writable .*EROFS/);
        expect(await hostHealth('hostile-ro', 'store-unwritable')).toBe('store-unwritable');
      } finally {
        await h?.close();
        execFileSync('umount', [root]);
        rmSync(root, { recursive: true, force: true });
      }
    });

    it('a permission error (worker run as another user, store owned by root): permanent', async () => {
      const root = mkdtempSync(join(tmpdir(), 'fleetq-perm-'));
      chmodSync(root, 0o755);
      for (const d of ['cloudimg', 'cloudimg/blobs', 'cloudimg/db', 'cloudimg/temp']) mkdirSync(join(root, d), { recursive: true, mode: 0o755 });
      const h = await host('hostile-perm', {}, root, { asUser: { uid: 65534, gid: 65534 } });
      try {
        const img = rawImage(64 * 1024);
        const r = await h.images.settle(await h.ensure(upstream.serve('/perm/img', img.body), img.digest, { attempts: 3 }));
        expect(r.attemptsMade).toBe(1);
        expect(r.failedReason).toMatch(/store is not writable .*EACCES/);
        expect(statSync(join(root, 'cloudimg/temp')).uid).toBe(0);
      } finally {
        await h.close();
        rmSync(root, { recursive: true, force: true });
      }
    });
  });
});

