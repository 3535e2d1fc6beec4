/**
 * Dead letters are never lost (issue 10), against a real redis-server with
 * `maxmemory` + `noeviction` and real worker processes:
 *   - jobs that die while Redis refuses writes (OOM) are in `fleetq dlq ls`
 *     once memory is back; the refused recordings are logged and counted
 *     (fleetq_dead_letter_record_failures_total, fleetq_redis_errors_total),
 *     and so is the Redis error that failed the job attempt;
 *   - a worker that is killed before it could record them: its successor's
 *     start-up sweep records them;
 *   - `dlq purge` stays purged: the sweep does not bring entries back.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { hostKeys } from '../../src/registry/keys.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
let upstream: Upstream;
let admin: Redis;
const roots: string[] = [];
const workers: WorkerProcess[] = [];
const clients: QueueClient[] = [];
let size = 800;

async function startWorker(host: string): Promise<WorkerProcess> {
  const root = tempRoot();
  roots.push(root);
  const w = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: host, FLEETQ_ROOT: root, FLEETQ_HEARTBEAT: '200ms' });
  workers.push(w);
  return w;
}

async function client(host: string): Promise<QueueClient> {
  const c = await queueClient(redis.url, imageQueueName(host));
  clients.push(c);
  return c;
}

/** Jobs that will fail (the URL 404s), each with one attempt, due shortly. */
async function doomedJobs(q: QueueClient, host: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const img = qcow2Image(size++);
    const { jobId } = await enqueueEnsureImage(q.queue, { image: upstream.url(`/dl/${host}/${i}`), imageDigest: img.digest }, { host, attempts: 1, backoffMs: 10, delayMs: 1500 });
    ids.push(jobId);
  }
  return ids;
}

const oom = () => admin.config('SET', 'maxmemory', '1');
const memoryBack = () => admin.config('SET', 'maxmemory', '0');
const failedCount = (host: string) => admin.zcard(`fleetq:${imageQueueName(host)}:failed`);

async function dlqIds(): Promise<string[]> {
  const r = await runCli(['dlq', 'ls', '--json'], { REDIS_URL: redis.url });
  if (r.code !== 0) throw new Error(`dlq ls exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ originalId: string }>).map((d) => d.originalId);
}

/** A worker's last metrics snapshot (pushed to Redis with its heartbeat), as name{labels} → value. */
async function metricsOf(host: string): Promise<Record<string, number>> {
  const keys = (await admin.zrange(hostKeys('fleetq', host).metricsIndex, 0, -1)).map((i) => hostKeys('fleetq', host).metrics(i));
  const out: Record<string, number> = {};
  for (const k of keys) {
    for (const m of JSON.parse((await admin.get(k)) ?? '[]') as Array<{ name: string; values: Array<{ labels: Record<string, string>; value: number }> }>) {
      for (const v of m.values) {
        const labels = Object.entries(v.labels)
          .filter(([l]) => l !== 'host')
          .map(([l, x]) => `${l}="${x}"`)
          .join(',');
        out[`${m.name}{${labels}}`] = (out[`${m.name}{${labels}}`] ?? 0) + v.value;
      }
    }
  }
  return out;
}

beforeAll(async () => {
  upstream = await startUpstream();
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
});

afterAll(async () => {
  await memoryBack().catch(() => {});
  for (const c of clients) await c.close();
  for (const w of workers) await w.kill();
  admin?.disconnect();
  await upstream?.stop();
  for (const r of roots) removeRoot(r);
});

describe('dead letters under Redis OOM (maxmemory + noeviction)', () => {
  let dead: string[] = [];

  it('jobs that die while Redis refuses writes are all in `fleetq dlq ls` once memory is back; every refusal is logged and counted', async () => {
    const w = await startWorker('dl-1');
    const q = await client('dl-1');
    dead = await doomedJobs(q, 'dl-1', 6);
    await oom();
    // BullMQ still moves them to `failed` (its scripts begin with a delete, and Redis refuses only a script's first write)…
    await expect.poll(() => failedCount('dl-1'), { timeout: 20_000, interval: 100 }).toBe(6);
    // …while every try to record them is refused, retried, and finally left to the sweep.
    for (const id of dead) await w.waitForLog((l) => l.jobId === id && /^dead-letter record failed: left to the dead-letter sweep/.test(String(l.msg)), 15_000);
    const refused = w.logs.filter((l) => String(l.msg).startsWith('dead-letter record failed'));
    expect(refused.length).toBeGreaterThanOrEqual(6 * 5);
    expect(refused[0]!.err).toMatch(/^OOM command not allowed/);
    expect(await admin.hlen(hostKeys('fleetq', 'dl-1').dlqEntries)).toBe(0);
    // The job attempts that Redis itself failed are said so (and cost the job its only attempt).
    const lost = w.logs.filter((l) => String(l.msg).startsWith('job attempt failed on a Redis error'));
    expect(lost.map((l) => l.jobId).sort()).toEqual([...dead].sort());
    expect(lost[0]).toMatchObject({ level: 50, attemptsMade: 1, attempts: 1, err: expect.stringMatching(/^OOM/) });

    await memoryBack();
    await expect.poll(() => dlqIds(), { timeout: 30_000, interval: 250 }).toEqual(expect.arrayContaining(dead));
    const entries = JSON.parse((await runCli(['dlq', 'ls', '--json', '--host', 'dl-1'], { REDIS_URL: redis.url })).stdout) as Array<Record<string, unknown>>;
    expect(entries).toHaveLength(6);
    for (const e of entries) expect(e).toMatchObject({ host: 'dl-1', queue: imageQueueName('dl-1'), queueKind: 'images', name: 'ensure-image', attemptsMade: 1, reason: expect.stringMatching(/OOM/) });
    for (const id of dead) expect(w.logs.some((l) => l.jobId === id && /^job dead-lettered \(by the sweep/.test(String(l.msg)))).toBe(true);

    // The counters reach /metrics through the worker's snapshot.
    await expect
      .poll(async () => (await metricsOf('dl-1'))['fleetq_dead_letters_total{via="sweep"}'], { timeout: 10_000, interval: 200 })
      .toBe(6);
    const m = await metricsOf('dl-1');
    expect(m['fleetq_dead_letter_record_failures_total{}']).toBeGreaterThanOrEqual(6 * 5);
    expect(m['fleetq_redis_errors_total{op="dead-letter"}']).toBe(m['fleetq_dead_letter_record_failures_total{}']);
    expect(m['fleetq_redis_errors_total{op="job"}']).toBe(6);
    expect(m['fleetq_dead_letters_total{via="event"}']).toBe(0);
  });

  it('a worker killed before it could record them: its successor\'s start-up sweep does', async () => {
    const w = await startWorker('dl-2');
    const q = await client('dl-2');
    const ids = await doomedJobs(q, 'dl-2', 3);
    await oom();
    await expect.poll(() => failedCount('dl-2'), { timeout: 20_000, interval: 100 }).toBe(3);
    await w.waitForLog((l) => String(l.msg).startsWith('dead-letter record failed'), 10_000);
    await w.kill();
    await memoryBack();
    expect((await dlqIds()).filter((id) => ids.includes(id))).toEqual([]);

    const next = await startWorker('dl-2');
    await expect.poll(() => dlqIds(), { timeout: 15_000, interval: 200 }).toEqual(expect.arrayContaining(ids));
    for (const id of ids) expect(next.logs.some((l) => l.jobId === id && /by the sweep/.test(String(l.msg)))).toBe(true);
  });

  it('purged dead letters stay purged: the sweep knows they were recorded', async () => {
    const purged = await runCli(['dlq', 'purge', '--older-than', '1ms', '--json', '--yes'], { REDIS_URL: redis.url });
    expect(JSON.parse(purged.stdout).removed).toBeGreaterThanOrEqual(9);
    expect(await dlqIds()).toEqual([]);
    // A fresh worker sweeps at start-up, over the same failed jobs.
    const w = await startWorker('dl-1');
    await w.waitForLog((l) => l.msg === 'dead-letter sweep done' && l.ok === true, 10_000);
    expect(await dlqIds()).toEqual([]);
    expect(w.logs.filter((l) => /by the sweep/.test(String(l.msg)))).toEqual([]);
    // The jobs themselves are still in BullMQ's failed set (7 days), for `fleetq retry`.
    expect(await failedCount('dl-1')).toBe(6);
  });
});
