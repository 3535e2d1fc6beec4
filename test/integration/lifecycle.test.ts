/**
 * Process lifecycle: graceful shutdown (finish or abort running jobs, release
 * locks, exit 0), the embedded-Redis default of `fleetq start`, and
 * concurrent index writers that must not lose each other's entries.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Digest } from '../../src/lib/digest.js';
import { freePort } from '../../src/lib/free-port.js';
import { imageQueueName } from '../../src/queues/names.js';
import { recordUrl } from '../../src/store/image-index.js';
import { storePaths } from '../../src/store/paths.js';
import { qcow2Image, rawImage } from '../helpers/images.js';
import { queueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { assertConsistent, readIndexFile, removeRoot, storeState, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { BIN, HOST_WORKER, startWorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream?.stop();
});

describe('graceful shutdown', () => {
  it('SIGTERM during a download: stops taking jobs, aborts after the grace period, releases the lock, exits 0; the job is retried later', async () => {
    const root = tempRoot();
    const host = 'h-shutdown';
    const img = rawImage(2 * 1024 * 1024);
    const url = upstream.serve('/slow-shutdown.img', img.body, { chunkSize: 16 * 1024, chunkDelayMs: 50 });
    const q = await queueClient(redis.url, imageQueueName(host));
    const w = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: host, FLEETQ_ROOT: root, FLEETQ_SHUTDOWN_GRACE: '500ms' });
    try {
      const job = await q.queue.add('ensure-image', { image: url, imageDigest: img.digest }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } });
      await w.waitForLog((l) => l.msg === 'image needs download');
      const code = await w.stop();
      expect(code).toBe(0);
      expect(w.logs.some((l) => l.msg === 'jobs still running after the grace period: aborting them')).toBe(true);
      expect(w.logs.some((l) => l.msg === 'worker stopped')).toBe(true);
      // The lock is gone (released, not left to expire) and nothing half-done is visible.
      const r = new Redis(redis.url);
      expect(await r.keys('*pull-lock*')).toEqual([]);
      r.disconnect();
      expect(storeState(root)).toMatchObject({ blobs: [], temp: [] });
      const j = await q.queue.getJob(job.id!);
      expect(['delayed', 'waiting', 'wait']).toContain(await j!.getState());

      // A new worker finishes it.
      const w2 = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: host, FLEETQ_ROOT: root });
      const done = await q.settle(job.id!, 30_000);
      expect(done.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
      expect(await w2.stop()).toBe(0);
      assertConsistent(root);
    } finally {
      await w.kill();
      await q.close();
      removeRoot(root);
    }
  });

  it('SIGTERM while idle exits 0 at once', async () => {
    const root = tempRoot();
    const w = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: 'h-idle', FLEETQ_ROOT: root });
    const t0 = Date.now();
    expect(await w.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    removeRoot(root);
  });

  it('a bad configuration value stops the worker at start with one line naming the variable', async () => {
    const p = spawn(process.execPath, [BIN, 'worker'], { env: { ...process.env, FLEETQ_LOCK_TTL: 'forever' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code] = await once(p, 'exit');
    expect(code).toBe(2);
    expect(err.trim()).toMatch(/^fleetq: invalid FLEETQ_LOCK_TTL \(got "forever"\): .*not a duration/);
    expect(err.trim().split('\n')).toHaveLength(1);
  });
});

describe('the per-host entry point (dist/workers/host.worker.js: the image\'s CMD, npm run worker)', () => {
  it('runs the same worker as `fleetq worker`: registers, pulls, and exits 0 on SIGTERM', async () => {
    const root = tempRoot();
    const q = await queueClient(redis.url, imageQueueName('h-entry'));
    try {
      const w = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: 'h-entry', FLEETQ_ROOT: root }, [], { entry: 'host' });
      expect(w.logs.find((l) => l.msg === 'worker started')).toMatchObject({ host: 'h-entry', queues: [imageQueueName('h-entry'), 'restores-{h-entry}'] });
      const img = qcow2Image(4242);
      const url = upstream.serve('/entry/img.raw', img.body);
      const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host: 'h-entry', attempts: 1, backoffMs: 10 });
      expect((await q.settle(jobId)).value).toMatchObject({ outcome: 'pulled' });
      const hosts = await runHosts();
      expect(hosts.find((h: { host: string }) => h.host === 'h-entry')).toMatchObject({ state: 'up' });
      expect(await w.stop()).toBe(0);
      expect(w.logs.at(-1)).toMatchObject({ msg: 'worker stopped' });
    } finally {
      await q.close();
      removeRoot(root);
    }
  });

  it('a bad configuration value: exit 2 and one line naming the variable', async () => {
    const p = spawn(process.execPath, [HOST_WORKER], { env: { ...process.env, FLEETQ_LOCK_TTL: 'forever' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code] = await once(p, 'exit');
    expect(code).toBe(2);
    expect(err.trim()).toMatch(/^fleetq: invalid FLEETQ_LOCK_TTL \(got "forever"\): .*not a duration/);
    expect(err.trim().split('\n')).toHaveLength(1);
  });
});

async function runHosts(): Promise<Array<{ host: string; state: string }>> {
  const p = spawn(process.execPath, [BIN, 'hosts', '--json'], { env: { PATH: process.env.PATH, REDIS_URL: redis.url }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = await once(p, 'close');
  expect(code).toBe(0);
  return JSON.parse(out);
}

describe('fleetq start: the embedded default', () => {
  it('with no REDIS_URL and nothing answering, starts its own redis-server under ./var/redis and a worker on it', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'fleetq-start-'));
    const probe = await freePort();
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, FLEETQ_EMBEDDED_PROBE_PORT: String(probe), FLEETQ_HOST: 'h-start' };
    const boardPort = await freePort();
    const p = spawn(process.execPath, [BIN, 'start', '--board-port', String(boardPort)], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const check = () => out.includes('"worker started"') && err.includes('board login:') && resolve();
        p.stdout.on('data', check);
        p.stderr.on('data', check);
        p.once('exit', () => reject(new Error(`exited early: ${err}`)));
      });
      expect(err).toMatch(/started redis-server at redis:\/\/127\.0\.0\.1:\d+ \(data in .*var\/redis\)/);
      // The board runs next to the worker, behind the printed (generated) credentials.
      expect(err).toContain(`board at http://127.0.0.1:${boardPort}/ (user "admin", credentials from a password generated for this run)`);
      const [, user, password] = /board login: (\S+) \/ (\S+)/.exec(err)!;
      expect((await fetch(`http://127.0.0.1:${boardPort}/`)).status).toBe(401);
      const ok = await fetch(`http://127.0.0.1:${boardPort}/`, { headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } });
      expect(ok.status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${boardPort}/healthz`)).status).toBe(200);
      const port = Number(/started redis-server at redis:\/\/127\.0\.0\.1:(\d+)/.exec(err)![1]);
      const r = new Redis(port, '127.0.0.1');
      expect(await r.ping()).toBe('PONG');
      expect(await r.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      r.disconnect();
      p.kill('SIGTERM');
      const [code] = await once(p, 'exit');
      expect(code).toBe(0);
    } finally {
      p.kill('SIGKILL');
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('without redis-server on PATH, exits with one line saying how to get one', async () => {
    const probe = await freePort();
    const env: NodeJS.ProcessEnv = { PATH: '/nonexistent', FLEETQ_EMBEDDED_PROBE_PORT: String(probe), FLEETQ_HOST: 'h-start' };
    const cwd = mkdtempSync(join(tmpdir(), 'fleetq-start-'));
    const p = spawn(process.execPath, [BIN, 'start'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code] = await once(p, 'exit');
    rmSync(cwd, { recursive: true, force: true });
    expect(code).not.toBe(0);
    expect(err.trim().split('\n')).toHaveLength(1);
    expect(err).toMatch(/apt-get install redis-server/);
    expect(err).toMatch(/docker compose up -d redis/);
  });
});

describe('the index under concurrent writers', () => {
  it('40 concurrent updates from 4 processes lose no entry and never expose a half-written file', async () => {
    const root = tempRoot();
    const paths = storePaths(root);
    const script = `
      const { recordUrl } = await import(${JSON.stringify(new URL('../../dist/src/store/image-index.js', import.meta.url).href)});
      const { Digest } = await import(${JSON.stringify(new URL('../../dist/src/lib/digest.js', import.meta.url).href)});
      const { storePaths } = await import(${JSON.stringify(new URL('../../dist/src/store/paths.js', import.meta.url).href)});
      const p = storePaths(process.argv[1]);
      await Promise.all(Array.from({ length: 10 }, (_, i) => recordUrl(p, 'http://h/' + process.argv[2] + '/' + i, Digest.parse('sha256:' + String(i).padStart(64, '0')), 100 + i)));
    `;
    // A reader that parses the index continuously must never see invalid JSON.
    let reads = 0;
    let stopReading = false;
    const reader = (async () => {
      while (!stopReading) {
        try {
          JSON.parse(readFileSync(paths.index, 'utf8'));
          reads++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const procs = ['a', 'b', 'c', 'd'].map((tag) => spawn(process.execPath, ['--input-type=module', '-e', script, root, tag], { stdio: 'inherit' }));
    const codes = await Promise.all(procs.map((p) => once(p, 'exit').then(([c]) => c)));
    await recordUrl(paths, 'http://h/main', Digest.parse(`sha256:${'f'.repeat(64)}`), 1);
    stopReading = true;
    await reader;
    expect(codes).toEqual([0, 0, 0, 0]);
    expect(reads).toBeGreaterThan(0);
    const urls = Object.keys(readIndexFile(root).images);
    expect(urls).toHaveLength(41);
    removeRoot(root);
  });
});
