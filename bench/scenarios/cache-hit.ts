/**
 * cache-hit throughput: ensure-image jobs for a pinned digest whose blob is
 * present, one fleetq worker process at concurrency 50, against a bare BullMQ
 * worker (no-op processor, own process) on the same Redis, same concurrency,
 * same job count, same payload and job options.
 *
 * Method (both sides alike): obliterate the queue, pause it, add N jobs
 * (addBulk, 1000 at a time), read Redis used_memory before and after adding,
 * note the time and resume; the run ends at the newest completed job's
 * finishedOn. jobs/s = N / (end − resume).
 *
 * Then the same at 1k, 10k, 100k waiting jobs for growth (quick: 1k, plus the
 * main 5k measurement). The worker's and redis-server's CPU per job are noted.
 */
import { join } from 'node:path';
import { childExit } from '../../src/lib/child-exit.js';
import { defaultJobOptions } from '../../src/queues/job-options.js';
import { imageQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { DIST_BENCH } from '../lib/paths.js';
import { cleanEnv, cpuSeconds, spawnTracked, startWorker, stopChild, type BenchWorker, until } from '../lib/procs.js';
import { addJobs, openQueue, pendingCount, type QueueHandle, usedMemory } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { summarise } from '../lib/stats.js';
import { plantBlob } from '../lib/store.js';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

const HOST = 'bench-hit';
const CONCURRENCY = 50;

interface Throughput {
  jobsPerSec: number;
  seconds: number;
  memPer1k: number;
  /** CPU of the worker process and of redis-server per job, µs. */
  workerCpuUs: number;
  redisCpuUs: number;
  /** Redis commands per job (INFO commandstats, inside Lua scripts too, the bench's own polling included): calls and µs. */
  commands: Record<string, { calls: number; us: number }>;
}

async function commandStats(redis: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}

/** The commands that cost Redis most per job, as "cmd calls/job µs/job". */
export function topCommands(c: Throughput['commands'], n = 6): string {
  return Object.entries(c)
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, n)
    .map(([k, v]) => `${k} ${v.calls.toFixed(2)}×/${v.us.toFixed(1)}µs`)
    .join(', ');
}

async function startNoopWorker(ctx: BenchContext, queue: string) {
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`, `--cpu-prof-name=noop.${Date.now()}.cpuprofile`] : [];
  const proc = spawnTracked(process.execPath, [...prof, join(DIST_BENCH, 'noop-worker.js')], {
    env: cleanEnv({ REDIS_URL: ctx.redisUrl, QUEUE: queue, PREFIX: ctx.prefix, CONCURRENCY: String(CONCURRENCY) }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  let dead = false;
  void childExit(proc).then(() => (dead = true));
  await until('the no-op worker to start', 20_000, () => {
    if (out.includes('ready')) return true;
    if (dead) throw new Error(`no-op worker exited: ${err}`);
    return undefined;
  });
  return { proc, stop: () => stopChild(proc) };
}

/** One throughput run on `queue` with `n` identical jobs. */
export async function throughput(redis: Redis, queue: Queue, n: number, data: unknown, pids: { worker: number; redis: number }): Promise<Throughput> {
  await queue.obliterate({ force: true });
  await queue.pause();
  const memBefore = await usedMemory(redis);
  await addJobs(queue, 'ensure-image', Array.from({ length: n }, () => data), defaultJobOptions({ attempts: 5, backoffMs: 5000 }));
  const memAfter = await usedMemory(redis);
  const stats0 = await commandStats(redis);
  const cpu0 = [cpuSeconds(pids.worker), cpuSeconds(pids.redis)];
  const t0 = Date.now();
  await queue.resume();
  await until(`${n} jobs on ${queue.name}`, Math.max(60_000, n * 5), async () => ((await pendingCount(queue)) === 0 ? true : undefined), 20);
  const cpu = [cpuSeconds(pids.worker) - cpu0[0]!, cpuSeconds(pids.redis) - cpu0[1]!];
  const commands: Throughput['commands'] = {};
  for (const [k, v] of await commandStats(redis)) {
    const b = stats0.get(k) ?? { calls: 0, usec: 0 };
    if (v.calls > b.calls) commands[k] = { calls: (v.calls - b.calls) / n, us: (v.usec - b.usec) / n };
  }
  const failed = await queue.getFailedCount();
  if (failed > 0) {
    const [f] = await queue.getFailed(0, 0);
    throw new Error(`${failed} jobs failed on ${queue.name}: ${f?.failedReason}`);
  }
  const [newest] = await queue.getJobs(['completed'], 0, 0, false);
  if (!newest?.finishedOn) throw new Error(`no completed job on ${queue.name}`);
  const seconds = (newest.finishedOn - t0) / 1000;
  return { jobsPerSec: n / seconds, seconds, memPer1k: (memAfter - memBefore) / (n / 1000), workerCpuUs: (cpu[0]! * 1e6) / n, redisCpuUs: (cpu[1]! * 1e6) / n, commands };
}

export async function cacheHit(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.quick ? 5_000 : 20_000;
  // Quick: 1k here, plus the main 5k measurement as the second point.
  const sizes = ctx.quick ? [1_000] : [1_000, 10_000, 100_000];
  const img = await ctx.image('cache-hit', 1024 * 1024);
  const root = join(ctx.tmp, 'cache-hit');
  await plantBlob(root, img);
  const data = { image: ctx.http.url(img.name), imageDigest: img.digest };

  let fleetq: BenchWorker | undefined;
  let noop: Awaited<ReturnType<typeof startNoopWorker>> | undefined;
  const handles: QueueHandle[] = [];
  try {
    const fleetqP = startWorker({
      name: 'cache-hit',
      dir: ctx.tmp,
      env: { REDIS_URL: ctx.redisUrl, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_PREFIX: ctx.prefix, FLEETQ_CONCURRENCY: String(CONCURRENCY), FLEETQ_QUEUES: 'images' },
    });
    const noopP = startNoopWorker(ctx, 'bench-noop');
    // Keep both handles even when one of them fails to start, so `finally` stops the other.
    const [fs, ns] = await Promise.allSettled([fleetqP, noopP]);
    if (fs.status === 'fulfilled') fleetq = fs.value;
    if (ns.status === 'fulfilled') noop = ns.value;
    if (fs.status === 'rejected') throw fs.reason;
    if (ns.status === 'rejected') throw ns.reason;
    const fq = openQueue(ctx.redisUrl, imageQueueName(HOST), ctx.prefix);
    const nq = openQueue(ctx.redisUrl, 'bench-noop', ctx.prefix);
    handles.push(fq, nq);
    const redisPid = ctx.redisPid;
    const fPids = { worker: fleetq!.pid, redis: redisPid };
    const bPids = { worker: noop!.proc.pid!, redis: redisPid };

    const runs = await measured(ctx, `cache-hit ${n} jobs`, async () => {
      const f = await throughput(ctx.redis, fq.queue, n, data, fPids);
      const b = await throughput(ctx.redis, nq.queue, n, data, bPids);
      ctx.log(
        `  fleetq ${Math.round(f.jobsPerSec)} jobs/s (worker ${f.workerCpuUs.toFixed(0)} µs CPU/job, redis ${f.redisCpuUs.toFixed(0)}), ` +
          `bare BullMQ ${Math.round(b.jobsPerSec)} jobs/s (worker ${b.workerCpuUs.toFixed(0)} µs CPU/job, redis ${b.redisCpuUs.toFixed(0)})\n` +
          `    redis per job, fleetq: ${topCommands(f.commands)}\n    redis per job, bare:   ${topCommands(b.commands)}`,
      );
      return { f, b };
    });
    const fv = summarise(runs.map((r) => r.f.jobsPerSec));
    const bv = summarise(runs.map((r) => r.b.jobsPerSec));
    const rows: Row[] = [
      row({
        scenario: 'cache-hit throughput',
        name: `cache-hit throughput (${n / 1000}k jobs, c=${CONCURRENCY})`,
        value: fv,
        baseline: bv,
        unit: 'jobs/s',
        goal: 'ratio ≥ 0.85',
        pass: fv.median / bv.median >= 0.85,
        details: {
          jobs: n,
          concurrency: CONCURRENCY,
          fleetqRuns: fv.runs,
          baselineRuns: bv.runs,
          ratioPerRun: runs.map((r) => r.f.jobsPerSec / r.b.jobsPerSec),
          fleetqWorkerCpuUsPerJob: runs.map((r) => r.f.workerCpuUs),
          baselineWorkerCpuUsPerJob: runs.map((r) => r.b.workerCpuUs),
          redisCpuUsPerJob: { fleetq: runs.map((r) => r.f.redisCpuUs), baseline: runs.map((r) => r.b.redisCpuUs) },
          redisCommandsPerJob: { fleetq: runs.at(-1)!.f.commands, baseline: runs.at(-1)!.b.commands },
          note: `worker CPU per job: fleetq ${summarise(runs.map((r) => r.f.workerCpuUs)).median.toFixed(0)} µs, bare BullMQ ${summarise(runs.map((r) => r.b.workerCpuUs)).median.toFixed(0)} µs; redis-server ${summarise(runs.map((r) => r.f.redisCpuUs)).median.toFixed(0)} vs ${summarise(runs.map((r) => r.b.redisCpuUs)).median.toFixed(0)} µs`,
        },
      }),
    ];

    const growth = (size: number, ok: Array<{ f: Throughput; b: Throughput }>): Row[] => {
      const f = summarise(ok.map((r) => r.f.jobsPerSec));
      const b = summarise(ok.map((r) => r.b.jobsPerSec));
      return [
        row({
          scenario: 'cache-hit growth',
          name: `cache-hit at ${size / 1000}k waiting jobs`,
          value: f,
          baseline: b,
          unit: 'jobs/s',
          goal: 'report',
          pass: null,
          details: { jobs: size, fleetqRuns: f.runs, baselineRuns: b.runs },
        }),
        row({
          scenario: 'cache-hit growth',
          name: `Redis memory per 1k waiting jobs (${size / 1000}k)`,
          value: summarise(ok.map((r) => r.f.memPer1k / (1024 * 1024))),
          baseline: summarise(ok.map((r) => r.b.memPer1k / (1024 * 1024))),
          unit: 'MiB',
          goal: 'report',
          pass: null,
        }),
      ];
    };
    const growthRows: Row[][] = [];
    // Growth: throughput and Redis memory as the number of waiting jobs grows.
    for (const size of sizes) {
      // The warm-up of the main measurement above ran in these same worker processes.
      const ok = await measured(
        ctx,
        `cache-hit growth ${size} jobs`,
        async () => {
          const f = await throughput(ctx.redis, fq.queue, size, data, fPids);
          const b = await throughput(ctx.redis, nq.queue, size, data, bPids);
          ctx.log(`  fleetq ${Math.round(f.jobsPerSec)} jobs/s, bare ${Math.round(b.jobsPerSec)} jobs/s, ${Math.round(f.memPer1k / 1024)} KiB per 1k waiting jobs`);
          return { f, b };
        },
        { warmUp: false },
      );
      growthRows.push(growth(size, ok));
    }
    if (ctx.quick) growthRows.push(growth(n, runs));
    rows.push(...growthRows.flat());
    for (const h of handles) await h.queue.obliterate({ force: true }).catch(() => {});
    return rows;
  } finally {
    for (const h of handles) await h.close();
    await fleetq?.stop();
    await noop?.stop();
  }
}
