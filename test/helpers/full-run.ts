/**
 * A full run of one host's fleet, against any Redis fleetq can be configured
 * for (`env`: REDIS_URL, or FLEETQ_REDIS_CLUSTER_NODES, or FLEETQ_REDIS_SENTINELS
 * + _NAME, with FLEETQ_PREFIX): a worker process, and on it
 *   - ensure-image: a pull that succeeds on its second attempt (BullMQ retry),
 *     a cache hit, an unpinned pull (the URL lock), a herd of 20 jobs for one
 *     digest (one GET; followers wait on the lock-release channel);
 *   - a restore flow (a clone whose base is missing: its image job is a child
 *     in the host's images queue);
 *   - a dead letter (a 404, one attempt) and `fleetq retry` of another failed
 *     job once its upstream recovered (it leaves the dead letters);
 *   - the CLI's reads (`hosts`, `jobs ls`, `dlq ls`) and the board's API and
 *     /metrics.
 * Every client on the test's side comes from the connection factory, so the
 * same run works on a single Redis, Sentinel and Cluster. Each step asserts
 * its outcome. Returns what it made, for further checks.
 */
import { Job, Queue, QueueEvents } from 'bullmq';
import { expect } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { boardName, imageChildId, imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { connectRedis, type RedisClient, waitReady } from '../../src/redis/connect.js';
import { basic, startBoardProcess } from './board-process.js';
import { cocoonWorkerEnv, plantSnapshot, setHostCores } from './cocoon.js';
import { qcow2Image, rawImage } from './images.js';
import type { Upstream } from './upstream.js';
import { waitFor } from './wait.js';
import { runCli, startWorkerProcess, type WorkerProcess } from './worker-process.js';

export interface FullRunOptions {
  /** The Redis settings and FLEETQ_PREFIX, as every fleetq process of the run gets them. */
  env: Record<string, string>;
  host: string;
  /** The worker's store (a fake-cocoon root). */
  root: string;
  upstream: Upstream;
  /** Distinguishes this run's upstream paths and image contents (default: the host). */
  tag?: string;
}

export interface FullRun {
  worker: WorkerProcess;
  /** Ids of the jobs made, by step. */
  jobs: { pulled: string; hit: string; unpinned: string; herd: string[]; restore: string; restoreImage: string; dead: string; retried: string };
  /** Stop the worker (and close the run's clients). */
  stop(): Promise<void>;
}

interface Side {
  queue: Queue;
  settle(id: string, timeoutMs?: number): Promise<{ state: 'completed' | 'failed'; value?: any; failedReason?: string; attemptsMade: number }>;
}

async function side(env: Record<string, string>, name: string, clients: RedisClient[]): Promise<Side & { close(): Promise<void> }> {
  const cfg = loadConfig(env);
  const conn = connectRedis(cfg, 'service');
  const evConn = connectRedis(cfg, 'worker'); // QueueEvents blocks on XREAD
  for (const c of [conn, evConn]) {
    c.on('error', () => {});
    clients.push(c);
    await waitReady(c, cfg);
  }
  const queue = new Queue(name, { connection: conn, prefix: cfg.prefix });
  const events = new QueueEvents(name, { connection: evConn, prefix: cfg.prefix });
  queue.setMaxListeners(0);
  events.setMaxListeners(0);
  await events.waitUntilReady();
  return {
    queue,
    async settle(id, timeoutMs = 60_000) {
      const job = await Job.fromId(queue, id);
      if (!job) throw new Error(`job ${id} not found in ${name}`);
      try {
        const value = await job.waitUntilFinished(events, timeoutMs);
        return { state: 'completed', value, attemptsMade: (await Job.fromId(queue, id))!.attemptsMade };
      } catch (err) {
        if (/timed out before finishing/.test((err as Error).message)) throw err;
        const j = await Job.fromId(queue, id);
        return { state: 'failed', failedReason: j?.failedReason ?? (err as Error).message, attemptsMade: j?.attemptsMade ?? 0 };
      }
    },
    async close() {
      await events.close();
      await queue.close();
    },
  };
}

export async function fullRun(o: FullRunOptions): Promise<FullRun> {
  const { env, host, root, upstream } = o;
  const tag = o.tag ?? host;
  const cli = async (...args: string[]) => {
    const r = await runCli(args, env);
    expect(r.code, `fleetq ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const cliJson = async (...args: string[]) => JSON.parse(await cli(...args, '--json'));
  const clients: RedisClient[] = [];

  setHostCores(root, 16);
  const worker = await startWorkerProcess({ ...env, FLEETQ_HOST: host, FLEETQ_ROOT: root, FLEETQ_BACKOFF: '100ms', FLEETQ_HEARTBEAT: '200ms', FLEETQ_CONCURRENCY: '24', ...cocoonWorkerEnv(root) });
  const images = await side(env, imageQueueName(host), clients);
  const restores = await side(env, restoreQueueName(host), clients);
  const seed = [...tag].reduce((a, c) => a + c.charCodeAt(0), 0) % 97;

  // A pull that succeeds on its second attempt (the first GET answers 500).
  const img = qcow2Image(700 + seed);
  const url = upstream.serve(`/${tag}/base.qcow2`, img.body, { faults: [{ kind: 'status', status: 500 }] });
  const pulled = (await enqueueEnsureImage(images.queue, { image: url, imageDigest: img.digest }, { host, attempts: 3, backoffMs: 100 })).jobId;
  expect(await images.settle(pulled)).toMatchObject({ state: 'completed', attemptsMade: 2, value: { outcome: 'pulled', digest: img.digest } });
  // A cache hit.
  const hit = (await enqueueEnsureImage(images.queue, { image: url, imageDigest: img.digest }, { host, attempts: 1, backoffMs: 100 })).jobId;
  expect((await images.settle(hit)).value).toMatchObject({ outcome: 'present', digest: img.digest });
  // An unpinned URL (locked on the URL's hash).
  const loose = rawImage(256 * 1024 + seed);
  const unpinned = (await enqueueEnsureImage(images.queue, { image: upstream.serve(`/${tag}/loose.img`, loose.body) }, { host, attempts: 1, backoffMs: 100 })).jobId;
  expect((await images.settle(unpinned)).value).toMatchObject({ outcome: 'pulled', digest: loose.digest });

  // A herd: 20 jobs for one digest (no deduplication: plain adds), a slow upstream: one GET.
  const herdImg = rawImage(2 * 1024 * 1024 + seed);
  const herdUrl = upstream.serve(`/${tag}/herd.img`, herdImg.body, { chunkSize: 64 * 1024, chunkDelayMs: 15 });
  const herd = (await images.queue.addBulk(Array.from({ length: 20 }, () => ({ name: 'ensure-image', data: { image: herdUrl, imageDigest: herdImg.digest }, opts: { attempts: 1 } })))).map((j) => j.id!);
  const herdResults = await Promise.all(herd.map((id) => images.settle(id)));
  expect(herdResults.map((r) => r.state)).toEqual(Array(20).fill('completed'));
  expect(herdResults.filter((r) => r.value.outcome === 'pulled')).toHaveLength(1);
  expect(upstream.gets(`/${tag}/herd.img`)).toBe(1);

  // A restore flow: the base is missing, so the restore adds its image job as a child in images-{<host>}.
  const base = qcow2Image(800 + seed);
  plantSnapshot(root, { name: `${tag}-golden`, image: upstream.serve(`/${tag}/golden.qcow2`, base.body), imageDigest: base.digest, cpu: 2 });
  const restore = (await enqueueRestore(restores.queue, { kind: 'clone', snapshot: `${tag}-golden`, name: `${tag}-vm-1` }, { host, attempts: 2, backoffMs: 100 })).jobId;
  const restoreImage = imageChildId(restore, 0);
  expect(await restores.settle(restore)).toMatchObject({ state: 'completed', value: { vm: `${tag}-vm-1`, digest: base.digest, imageJobId: restoreImage } });
  expect((await images.queue.getJob(restoreImage))?.parentKey).toBe(`${loadConfig(env).prefix}:${restoreQueueName(host)}:${restore}`);

  // A dead letter (404, one attempt), and a job that fails once (500) and is put back with `fleetq retry`.
  const dead = (await enqueueEnsureImage(images.queue, { image: upstream.url(`/${tag}/missing.qcow2`), imageDigest: qcow2Image(900 + seed).digest }, { host, attempts: 1, backoffMs: 100 })).jobId;
  expect((await images.settle(dead)).state).toBe('failed');
  const flaky = qcow2Image(1000 + seed);
  const flakyUrl = upstream.serve(`/${tag}/flaky.qcow2`, flaky.body, { faults: [{ kind: 'status', status: 500 }] });
  const retried = (await enqueueEnsureImage(images.queue, { image: flakyUrl, imageDigest: flaky.digest }, { host, attempts: 1, backoffMs: 100 })).jobId;
  expect((await images.settle(retried)).state).toBe('failed');
  await waitFor('both failures in `fleetq dlq ls`', async () => {
    const ids = (await cliJson('dlq', 'ls', '--host', host)).map((d: { originalId: string }) => d.originalId);
    return ids.includes(dead) && ids.includes(retried);
  }, { timeoutMs: 20_000, intervalMs: 200 });
  const r = await cliJson('retry', '--id', retried, '--host', host, '--yes');
  expect(r.summary).toMatchObject({ matched: 1, retried: 1, errors: 0 });
  expect(await images.settle(retried)).toMatchObject({ state: 'completed', value: { outcome: 'pulled', digest: flaky.digest } });
  const dlq = (await cliJson('dlq', 'ls', '--host', host)).map((d: { originalId: string }) => d.originalId);
  expect(dlq).toContain(dead);
  expect(dlq).not.toContain(retried);

  // The CLI's reads.
  expect((await cliJson('hosts')).find((h: { host: string }) => h.host === host)).toMatchObject({ state: 'up' });
  expect((await cliJson('jobs', 'ls', '--host', host, '--state', 'failed')).map((j: { id: string }) => j.id)).toContain(dead);

  // The board: its API and /metrics (the worker's snapshots, merged).
  const board = await startBoardProcess({ ...env, FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 'full-run-pw' });
  try {
    const auth = basic('oncall', 'full-run-pw');
    const api = (await (await fetch(`${board.url}/api/queues?activeQueue=${encodeURIComponent(boardName('images', host))}&status=failed&page=1&jobsPerPage=10`, { headers: auth })).json()) as { queues: Array<{ name: string; jobs: Array<{ id: string }> }> };
    const q = api.queues.find((x) => x.name === boardName('images', host));
    expect(q?.jobs.map((j) => j.id)).toContain(dead);
    const job = (await (await fetch(`${board.url}/api/queues/${encodeURIComponent(boardName('restores', host))}/${restore}`, { headers: auth })).json()) as { job: { id: string } };
    expect(job.job.id).toBe(restore);
    await waitFor('the worker\'s pulls in the board\'s /metrics', async () => {
      const text = await (await fetch(`${board.url}/metrics`, { headers: auth })).text();
      return new RegExp(`fleetq_pulls_total\\{[^}]*host="${host.replace(/\./g, '\\.')}"[^}]*outcome="pulled"[^}]*\\} [1-9]`).test(text) || new RegExp(`fleetq_pulls_total\\{[^}]*outcome="pulled"[^}]*host="${host.replace(/\./g, '\\.')}"[^}]*\\} [1-9]`).test(text);
    }, { timeoutMs: 15_000, intervalMs: 250 });
  } finally {
    await board.stop();
  }

  return {
    worker,
    jobs: { pulled, hit, unpinned, herd, restore, restoreImage, dead, retried },
    async stop() {
      await images.close();
      await restores.close();
      for (const c of clients) c.disconnect();
      expect(await worker.stop()).toBe(0);
    },
  };
}
