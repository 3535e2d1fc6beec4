/**
 * cold pull: one ensure-image job for a pinned digest that is not in the
 * store, downloading a 1 GiB qcow2 v3 body (0.25 GiB with --quick) from the
 * loopback server, including verify and commit (fsync, chmod, rename, fsync
 * dir, index update under flock).
 *
 *   fleetq:   wall = job.finishedOn − job.timestamp (enqueue to completed)
 *   baseline: `curl -sfo FILE URL && sha256sum FILE` (spawned through sh),
 *             wall measured around the spawn; same server, same file.
 *
 * Before every run: the blob is removed and `sync` runs, so both sides start
 * with no dirty pages. The worker's peak RSS (VmHWM) is read after all runs.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Job } from 'bullmq';
import { imageQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { statsDelta } from '../lib/http.js';
import type { BenchImage } from '../lib/images.js';
import { startWorker, type BenchWorker, until } from '../lib/procs.js';
import { openQueue, type QueueHandle } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { summarise } from '../lib/stats.js';
import { removeBlob } from '../lib/store.js';

const execFileP = promisify(execFile);
const HOST = 'bench-cold';
const MB = 1_000_000;

export const bigImageBytes = (quick: boolean) => (quick ? 256 : 1024) * 1024 * 1024;

export interface PullRun {
  seconds: number;
  serverCpuShare: number;
  gets: number;
  outcome: string;
}

/** Add one ensure-image job and wait for it; wall from its timestamp to its finishedOn. */
export async function onePull(ctx: BenchContext, q: QueueHandle, root: string, img: BenchImage): Promise<PullRun> {
  await removeBlob(root, img);
  await execFileP('sync');
  const before = await ctx.http.stats();
  const job = await q.queue.add('ensure-image', { image: ctx.http.url(img.name), imageDigest: img.digest }, { attempts: 1, removeOnComplete: 1000, removeOnFail: 1000 });
  const done = await until(`the cold pull of ${img.name}`, 300_000, async () => {
    const j = await Job.fromId(q.queue, job.id!);
    if (j?.finishedOn) return j;
    return undefined;
  }, 20);
  const after = await ctx.http.stats();
  if (done.failedReason) throw new Error(`cold pull failed: ${done.failedReason}`);
  const seconds = (done.finishedOn! - done.timestamp) / 1000;
  const d = statsDelta(before, after);
  return { seconds, serverCpuShare: d.cpuSec / seconds, gets: d.gets[`/${img.name}`] ?? 0, outcome: (done.returnvalue as { outcome?: string })?.outcome ?? '?' };
}

async function curlAndHash(ctx: BenchContext, img: BenchImage): Promise<PullRun> {
  const out = join(ctx.tmp, 'curl-download.img');
  await rm(out, { force: true });
  await execFileP('sync');
  const before = await ctx.http.stats();
  const t0 = performance.now();
  const { stdout } = await execFileP('sh', ['-c', 'curl -sfo "$1" "$2" && sha256sum "$1"', 'sh', out, ctx.http.url(img.name)], { timeout: 300_000 });
  const seconds = (performance.now() - t0) / 1000;
  const after = await ctx.http.stats();
  await rm(out, { force: true });
  if (`sha256:${stdout.split(' ')[0]}` !== img.digest) throw new Error(`curl baseline: digest mismatch (${stdout.trim()})`);
  const d = statsDelta(before, after);
  return { seconds, serverCpuShare: d.cpuSec / seconds, gets: d.gets[`/${img.name}`] ?? 0, outcome: 'curl' };
}

export async function coldPull(ctx: BenchContext): Promise<Row[]> {
  const bytes = bigImageBytes(ctx.quick);
  const img = await ctx.image('big', bytes);
  const root = join(ctx.tmp, 'cold-pull');
  let worker: BenchWorker | undefined;
  let q: QueueHandle | undefined;
  try {
    worker = await startWorker({
      name: 'cold-pull',
      dir: ctx.tmp,
      env: { REDIS_URL: ctx.redisUrl, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_PREFIX: ctx.prefix, FLEETQ_QUEUES: 'images' },
    });
    q = openQueue(ctx.redisUrl, imageQueueName(HOST), ctx.prefix);
    const runs = await measured(ctx, `cold pull ${Math.round(img.size / 2 ** 20)} MiB`, async () => {
      const f = await onePull(ctx, q!, root, img);
      const b = await curlAndHash(ctx, img);
      if (f.outcome !== 'pulled') throw new Error(`cold pull: outcome ${f.outcome}, want pulled`);
      if (f.gets !== 1) throw new Error(`cold pull: ${f.gets} GETs, want 1`);
      ctx.log(`  fleetq ${f.seconds.toFixed(2)} s (server CPU ${(f.serverCpuShare * 100).toFixed(0)}%), curl+sha256sum ${b.seconds.toFixed(2)} s (server CPU ${(b.serverCpuShare * 100).toFixed(0)}%)`);
      return { f, b };
    });
    const rss = worker.peakRss();
    const f = summarise(runs.map((r) => r.f.seconds));
    const b = summarise(runs.map((r) => r.b.seconds));
    const share = (xs: number[]) => `${Math.round(summarise(xs).median * 100)}%`;
    const note = `server CPU share: fleetq runs ${share(runs.map((r) => r.f.serverCpuShare))}, curl runs ${share(runs.map((r) => r.b.serverCpuShare))}; fleetq ${Math.round(img.size / MB / f.median)} MB/s end to end`;
    return [
      row({
        scenario: 'cold pull',
        name: `cold pull ${Math.round(img.size / 2 ** 20)} MiB (vs curl && sha256sum)`,
        value: f,
        baseline: b,
        unit: 's',
        goal: 'ratio ≤ 1.0',
        pass: f.median / b.median <= 1.0,
        details: {
          bytes: img.size,
          fleetqRuns: f.runs,
          baselineRuns: b.runs,
          serverCpuShareFleetq: runs.map((r) => r.f.serverCpuShare),
          serverCpuShareBaseline: runs.map((r) => r.b.serverCpuShare),
          note,
        },
      }),
      row({
        scenario: 'cold pull',
        name: 'cold pull: worker peak RSS (VmHWM)',
        value: rss === undefined ? null : rss / MB,
        unit: 'MB',
        goal: '≤ 150 MB',
        pass: rss === undefined ? false : rss / MB <= 150,
      }),
    ];
  } finally {
    await q?.close();
    await worker?.stop();
  }
}
