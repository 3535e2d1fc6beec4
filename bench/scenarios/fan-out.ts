/**
 * restore fan-out: 100 clones over 10 digests on one host (fake cocoon: real
 * `qemu-img create -b <blob>` overlays), against the same 100 ensure-image
 * pulls without restores on the same worker.
 *
 * Each run starts with none of the 10 blobs in the store.
 *   upstream GETs        per run, from the server's counters (must be 10)
 *   wall                 restores: max(parent finishedOn) − min(parent timestamp);
 *                        pulls only: max(finishedOn) − min(timestamp)
 *   overhead per job     (restores wall − pulls wall) / 100
 */
import { join } from 'node:path';
import type { Job } from 'bullmq';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { statsDelta } from '../lib/http.js';
import type { BenchImage } from '../lib/images.js';
import { startWorker, type BenchWorker } from '../lib/procs.js';
import { addJobs, assertCompleted, fetchJobs, openQueue, type QueueHandle, waitIdle } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { median, percentile, summarise } from '../lib/stats.js';
import { fakeCocoonEnv, plantSnapshot, removeBlob, removeVms } from '../lib/store.js';

const HOST = 'bench-fan';
const DIGESTS = 10;

export const smallImageBytes = (quick: boolean) => (quick ? 8 : 32) * 1024 * 1024;

export async function smallImages(ctx: BenchContext, n: number): Promise<BenchImage[]> {
  const out: BenchImage[] = [];
  for (let i = 0; i < n; i++) out.push(await ctx.image(`small-${i}`, smallImageBytes(ctx.quick)));
  return out;
}

export interface RestoreBatch {
  jobs: Job[];
  wall: number;
  gets: number;
}

/** Enqueue `plan` restores (flows), wait for all of them, return the parent jobs. */
export async function runRestores(
  ctx: BenchContext,
  plan: Array<{ host: string; snapshot: string; name: string; img: BenchImage }>,
  queues: Map<string, { images: QueueHandle; restores: QueueHandle }>,
  timeoutMs: number,
): Promise<RestoreBatch> {
  {
    const before = await ctx.http.stats();
    const added = await Promise.all(
      plan.map((p) =>
        enqueueRestore(
          queues.get(p.host)!.restores.queue,
          { kind: 'clone', snapshot: p.snapshot, name: p.name, image: ctx.http.url(p.img.name), imageDigest: p.img.digest },
          { host: p.host, attempts: 3, backoffMs: 1000 },
        ),
      ),
    );
    const all = [...queues.values()].flatMap((q) => [q.images.queue, q.restores.queue]);
    await waitIdle(all, timeoutMs, 50);
    const after = await ctx.http.stats();
    const jobs: Job[] = [];
    for (const [host, q] of queues) {
      const ids = added.filter((_, i) => plan[i]!.host === host).map((a) => a.jobId);
      const js = await fetchJobs(q.restores.queue, ids);
      await assertCompleted(q.restores.queue, js);
      jobs.push(...js);
    }
    const wall = (Math.max(...jobs.map((j) => j.finishedOn!)) - Math.min(...jobs.map((j) => j.timestamp))) / 1000;
    return { jobs, wall, gets: statsDelta(before, after).totalGets };
  }
}

export async function fanOut(ctx: BenchContext): Promise<Row[]> {
  const clones = ctx.quick ? 20 : 100;
  const imgs = await smallImages(ctx, DIGESTS);
  const root = join(ctx.tmp, 'fan-out');
  for (const [i, img] of imgs.entries()) await plantSnapshot(root, `golden-${i}`, { url: ctx.http.url(img.name), digest: img.digest });
  let worker: BenchWorker | undefined;
  const handles: QueueHandle[] = [];
  try {
    worker = await startWorker({
      name: 'fan-out',
      dir: ctx.tmp,
      env: {
        REDIS_URL: ctx.redisUrl,
        FLEETQ_HOST: HOST,
        FLEETQ_ROOT: root,
        FLEETQ_PREFIX: ctx.prefix,
        FLEETQ_CONCURRENCY: '10',
        FLEETQ_RESTORE_CONCURRENCY: '4',
        ...fakeCocoonEnv(root),
      },
    });
    const images = openQueue(ctx.redisUrl, imageQueueName(HOST), ctx.prefix);
    const restores = openQueue(ctx.redisUrl, restoreQueueName(HOST), ctx.prefix);
    handles.push(images, restores);
    const queues = new Map([[HOST, { images, restores }]]);
    const clearStore = async () => {
      for (const img of imgs) await removeBlob(root, img);
      await removeVms(root);
    };

    const runs = await measured(ctx, `fan-out ${clones} clones over ${DIGESTS} digests`, async (run, warm) => {
      // The warm-up (JIT, page cache, fake cocoon's first start) needs no full-size batch.
      const n = warm ? DIGESTS : clones;
      // The same pulls without restores.
      await clearStore();
      const before = await ctx.http.stats();
      const datas = Array.from({ length: n }, (_, i) => ({ image: ctx.http.url(imgs[i % DIGESTS]!.name), imageDigest: imgs[i % DIGESTS]!.digest }));
      const ids = await addJobs(images.queue, 'ensure-image', datas, { attempts: 3, removeOnComplete: 5000, removeOnFail: 5000 });
      await waitIdle([images.queue], 120_000);
      const after = await ctx.http.stats();
      const pj = await fetchJobs(images.queue, ids);
      await assertCompleted(images.queue, pj);
      const pullsWall = (Math.max(...pj.map((j) => j.finishedOn!)) - Math.min(...pj.map((j) => j.timestamp))) / 1000;
      const pullGets = statsDelta(before, after).totalGets;

      // The restores.
      await clearStore();
      const plan = Array.from({ length: n }, (_, i) => ({ host: HOST, snapshot: `golden-${i % DIGESTS}`, name: `r${run}-${i}`, img: imgs[i % DIGESTS]! }));
      const r = await runRestores(ctx, plan, queues, 300_000);
      const proc = r.jobs.map((j) => j.finishedOn! - j.processedOn!);
      const res = {
        pullsWall,
        pullGets,
        wall: r.wall,
        gets: r.gets,
        overheadMs: ((r.wall - pullsWall) * 1000) / n,
        restoreJobP50: median(proc),
        restoreJobP99: percentile(proc, 99),
      };
      ctx.log(`  pulls only ${pullsWall.toFixed(2)} s (${pullGets} GETs), with restores ${r.wall.toFixed(2)} s (${r.gets} GETs), overhead ${res.overheadMs.toFixed(0)} ms/job, restore job p50 ${res.restoreJobP50} ms`);
      return res;
    });
    const gets = summarise(runs.map((r) => r.gets));
    const wall = summarise(runs.map((r) => r.wall));
    const pulls = summarise(runs.map((r) => r.pullsWall));
    const overhead = summarise(runs.map((r) => r.overheadMs));
    return [
      row({
        scenario: 'restore fan-out',
        name: `fan-out: upstream GETs (${clones} clones, ${DIGESTS} digests)`,
        value: gets,
        baseline: summarise(runs.map((r) => r.pullGets)),
        unit: '',
        goal: `= ${DIGESTS} in every run`,
        pass: runs.every((r) => r.gets === DIGESTS),
      }),
      row({
        scenario: 'restore fan-out',
        name: 'fan-out: wall (vs the same pulls without restores)',
        value: wall,
        baseline: pulls,
        unit: 's',
        goal: 'report',
        pass: null,
        details: { restoreJobP50Ms: runs.map((r) => r.restoreJobP50), restoreJobP99Ms: runs.map((r) => r.restoreJobP99) },
      }),
      row({
        scenario: 'restore fan-out',
        name: 'fan-out: restore overhead per job',
        value: overhead,
        unit: 'ms',
        goal: 'report',
        pass: null,
        details: {
          note: `(wall with restores − wall of the pulls alone) / ${clones}; fake cocoon (2 node processes + 2 qemu-img per clone), FLEETQ_RESTORE_CONCURRENCY=4; restore job p50 ${median(runs.map((r) => r.restoreJobP50))} ms`,
        },
      }),
    ];
  } finally {
    for (const h of handles) await h.close();
    await worker?.stop();
  }
}
