/**
 * Every re-submission goes through queues/resubmit.ts, against a real Redis
 * and real worker processes:
 *   - a rerouted ensure-image job gets the target host's deduplication id, so
 *     it collapses into an identical pull already pending there;
 *   - a dead letter whose payload breaks its contract is refused by
 *     `dlq requeue`, naming the field, whether its job is still failed
 *     (retried in place) or gone (added again); nothing is queued.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENSURE_IMAGE } from '../../src/jobs/contracts/ensure-image.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
const roots: string[] = [];
const workers: WorkerProcess[] = [];
const clients: Record<string, QueueClient> = {};
let admin: Redis;

async function startWorker(host: string, queues: string): Promise<void> {
  const root = tempRoot();
  roots.push(root);
  workers.push(await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: host, FLEETQ_ROOT: root, FLEETQ_HEARTBEAT: '200ms', FLEETQ_QUEUES: queues }));
  clients[host] = await queueClient(redis.url, imageQueueName(host));
}

const cli = (...args: string[]) => runCli(args, { REDIS_URL: redis.url });

async function dlqEntries(host: string): Promise<Array<{ originalId: string; reason: string }>> {
  const r = await cli('dlq', 'ls', '--host', host, '--json');
  if (r.code !== 0) throw new Error(`dlq ls exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function waitForDeadLetter(host: string, id: string, timeoutMs = 10_000): Promise<{ originalId: string; reason: string }> {
  const t0 = Date.now();
  for (;;) {
    const hit = (await dlqEntries(host)).find((d) => d.originalId === id);
    if (hit) return hit;
    if (Date.now() - t0 > timeoutMs) throw new Error(`job ${id} not dead-lettered within ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  // Registered and live, but taking no pulls: what is queued on their images queues stays there.
  await startWorker('rs-a', 'restores');
  await startWorker('rs-b', 'restores');
  // Takes pulls: fails (permanently) the bad payloads below, which become dead letters.
  await startWorker('rs-c', 'images');
});

afterAll(async () => {
  for (const c of Object.values(clients)) await c.close();
  for (const w of workers) await w.kill();
  admin?.disconnect();
  for (const r of roots) removeRoot(r);
});

describe('reroute', () => {
  it('a rerouted ensure-image collapses into the identical pull pending on the target', async () => {
    const img = qcow2Image(4100);
    const input = { image: 'http://127.0.0.1:9/rs/win11.qcow2', imageDigest: img.digest };
    const moving = await enqueueEnsureImage(clients['rs-a']!.queue, input, { host: 'rs-a', attempts: 2, backoffMs: 20 });
    const pending = await enqueueEnsureImage(clients['rs-b']!.queue, input, { host: 'rs-b', attempts: 2, backoffMs: 20 });

    const r = await cli('reroute', '--from-host', 'rs-a', '--to-host', 'rs-b', '--yes', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).summary).toMatchObject({ moved: 1, skipped: 0 });
    expect(await clients['rs-a']!.queue.getJobCounts('wait', 'prioritized', 'delayed')).toEqual({ wait: 0, prioritized: 0, delayed: 0 });
    // One pull on rs-b: the one that was there; the moved job was taken in by it, not added beside it.
    const waiting = await clients['rs-b']!.queue.getJobs(['wait', 'prioritized', 'delayed']);
    expect(waiting.map((j) => j.id)).toEqual([pending.jobId]);
    expect(await clients['rs-b']!.queue.getJob(moving.jobId)).toBeUndefined();
  });

  it('a job whose payload breaks its contract is not moved: the error names the field', async () => {
    const bad = await clients['rs-a']!.queue.add(ENSURE_IMAGE, { image: 'http://127.0.0.1:9/rs/bad.qcow2', imageDigest: 'sha256:nothex' }, { jobId: 'rs-bad-move' });
    const r = await cli('reroute', '--from-host', 'rs-a', '--to-host', 'rs-b', '--yes', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.summary).toMatchObject({ moved: 0, skipped: 1 });
    expect(out.jobs[0]).toMatchObject({ id: bad.id, action: 'skip' });
    expect(out.jobs[0].why).toMatch(/^error: invalid ensure-image payload: imageDigest must be "sha256:" followed by 64 lowercase hex characters/);
    expect(await clients['rs-b']!.queue.getJob('rs-bad-move')).toBeUndefined();
    expect(await bad.getState()).toBe('waiting'); // left where it was
    await bad.remove();
  });
});

describe('dlq requeue', () => {
  it('refuses a dead letter with a bad payload, naming the field, whether its job is still failed or gone', async () => {
    const q = clients['rs-c']!.queue;
    // A raw producer that skipped validation: the worker fails these at once (no retry), and they are dead-lettered.
    const kept = await q.add(ENSURE_IMAGE, { image: 'http://127.0.0.1:9/rs/a.qcow2', imageDigest: 'sha256:nothex' }, { jobId: 'rs-dead-kept', attempts: 3 });
    const gone = await q.add(ENSURE_IMAGE, { image: 'http://127.0.0.1:9/rs/b.qcow2', imageDigst: 'sha256:typo' }, { jobId: 'rs-dead-gone', attempts: 3 });
    expect((await waitForDeadLetter('rs-c', kept.id!)).reason).toMatch(/imageDigest/);
    expect((await waitForDeadLetter('rs-c', gone.id!)).reason).toMatch(/imageDigst/);
    expect(await gone.getState()).toBe('failed');
    await gone.remove(); // e.g. `fleetq clean`: requeue has to add it again from the dead letter

    const r = await cli('dlq', 'requeue', '--host', 'rs-c', '--yes', '--json');
    expect(r.code).toBe(1); // errors
    const byId = Object.fromEntries((JSON.parse(r.stdout).entries as Array<{ id: string; result: string }>).map((e) => [e.id, e.result]));
    expect(byId['rs-dead-kept']).toMatch(/^error: invalid ensure-image payload: imageDigest must be "sha256:" followed by 64 lowercase hex characters \(got "sha256:nothex"\)$/);
    expect(byId['rs-dead-gone']).toMatch(/^error: invalid ensure-image payload: imageDigst is not a known field$/);
    // Nothing went back to work, and both stay dead letters.
    expect(await (await q.getJob('rs-dead-kept'))!.getState()).toBe('failed');
    expect(await q.getJob('rs-dead-gone')).toBeUndefined();
    expect((await dlqEntries('rs-c')).map((d) => d.originalId).sort()).toEqual(['rs-dead-gone', 'rs-dead-kept']);
  });
});
