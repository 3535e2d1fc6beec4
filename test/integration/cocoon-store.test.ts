/**
 * The store as cocoon sees it: a committed blob and its images.json entry
 * appear together, under cocoon's own images.lock, so `cocoon gc` (which takes
 * that lock) can never find a fleetq blob unreferenced; temp files follow
 * cocoon's conventions.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { sweepTemp } from '../../src/store/blob-store.js';
import { storePaths } from '../../src/store/paths.js';
import { cocoonGlobalArgs, runFakeCocoon } from '../helpers/cocoon.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, readIndexFile, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import { waitFor } from '../helpers/wait.js';

const redis = useTestRedis();
let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream?.stop();
});

/** Hold db/images.lock from another process (util-linux flock, as cocoon's flock(2) would). */
async function holdIndexLock(root: string): Promise<ChildProcess> {
  const p = storePaths(root);
  mkdirSync(p.db, { recursive: true });
  const holder = spawn('flock', ['--exclusive', p.indexLock, 'sleep', '60'], { stdio: 'ignore', detached: true });
  // Held once a non-blocking attempt from here fails.
  await waitFor(`flock to hold ${p.indexLock}`, () => spawnSync('flock', ['--nonblock', '--conflict-exit-code', '75', p.indexLock, 'true']).status === 75, { intervalMs: 20 });
  return holder;
}

describe('commit under cocoon\'s images.lock', () => {
  it('a finished download waits for the lock; meanwhile blobs/ and images.json show nothing and cocoon gc aborts; then both appear together', async () => {
    const root = tempRoot();
    const id = 'store-lock';
    const img = qcow2Image(64);
    const url = upstream.serve('/store-lock/img', img.body);
    const worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: id, FLEETQ_ROOT: root });
    const images = await queueClient(redis.url, imageQueueName(id));
    const holder = await holdIndexLock(root);
    try {
      const { jobId } = await enqueueEnsureImage(images.queue, { image: url, imageDigest: img.digest }, { host: id, attempts: 1, backoffMs: 10 });
      const p = storePaths(root);
      // The download is complete in temp/ (full size) while the commit waits for the lock.
      await waitFor('the whole body in a temp file', () => readdirSync(p.temp).some((n) => n.startsWith('pull-') && statSync(join(p.temp, n)).size === img.body.length), { timeoutMs: 15_000, intervalMs: 20 });
      expect(storeState(root).blobs).toEqual([]);
      expect(readIndexFile(root).images).toEqual({});
      const gc = await runFakeCocoon(['gc', ...cocoonGlobalArgs(root)]);
      expect(gc.code).toBe(1);
      expect(gc.stderr).toMatch(/gc aborted: modules skipped \(lock busy\): cloudimg/);
      expect(storeState(root).blobs).toEqual([]); // still not visible, a gc run later

      process.kill(-holder.pid!, 'SIGKILL');
      const r = await images.settle(jobId);
      expect(r.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
      expect(storeState(root)).toMatchObject({ blobs: [`${img.hex}.qcow2`], index: { [url]: img.digest } });
      assertConsistent(root);
      // Now cocoon gc keeps it: the entry references it.
      expect((await runFakeCocoon(['gc', ...cocoonGlobalArgs(root)])).code).toBe(0);
      expect(storeState(root).blobs).toEqual([`${img.hex}.qcow2`]);
    } finally {
      try {
        process.kill(-holder.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await images.close();
      expect(await worker.stop()).toBe(0);
      removeRoot(root);
    }
  });
});

describe('temp/ follows cocoon\'s conventions', () => {
  it('the sweep removes only stale pull-* files, never cocoon\'s .tmp-* conversions or *.lock files', async () => {
    const root = tempRoot();
    try {
      const p = storePaths(root);
      mkdirSync(p.temp, { recursive: true });
      const old = new Date(Date.now() - 2 * 3600_000);
      const names = ['pull-1-aa.img', 'pull-1-aa.img.qcow2', 'pull-2-bb.img', `.tmp-${'c'.repeat(64)}.qcow2`, `.tmp-${'c'.repeat(64)}.qcow2.lock`, 'pull-3.lock'];
      for (const n of names) writeFileSync(join(p.temp, n), 'x');
      for (const n of names.filter((n) => n !== 'pull-2-bb.img')) utimesSync(join(p.temp, n), old, old);
      const removed = await sweepTemp(p, 3600_000);
      expect(removed.map((f) => f.slice(p.temp.length + 1)).sort()).toEqual(['pull-1-aa.img', 'pull-1-aa.img.qcow2']);
      expect(readdirSync(p.temp).sort()).toEqual([`.tmp-${'c'.repeat(64)}.qcow2`, `.tmp-${'c'.repeat(64)}.qcow2.lock`, 'pull-2-bb.img', 'pull-3.lock'].sort());
    } finally {
      removeRoot(root);
    }
  });
});
