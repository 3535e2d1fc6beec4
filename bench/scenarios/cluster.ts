/**
 * cluster: cache-hit throughput of 8 hosts' queues (`images-{<host>}`, one
 * fleetq worker process per host) over a 3-master Redis Cluster, against the
 * same 8 hosts on the one Redis of the run: same jobs, same worker settings,
 * both sides' workers alive throughout, runs alternating.
 *
 * The 8 host ids are picked at run time so that their slots spread over the
 * three masters (3/3/2). The cluster has no replicas: on one machine a
 * replica only adds replication work on the same cores; the single Redis has
 * none either.
 *
 * Method per run and side: obliterate the 8 queues, pause them, add N/8 jobs
 * to each (addBulk), resume all at once; the run ends at the newest
 * completed job's finishedOn over the 8 queues. jobs/s = N / (end − resume).
 * CPU of the worker processes and of every redis-server is read from /proc.
 *
 * What it can show on this machine: Redis Cluster spreads the queues'
 * Redis work over several processes (the busiest one does a fraction of
 * it), but with 2 cores the 8 worker processes are the bottleneck on
 * both sides: throughput cannot grow with masters here. The ratio is
 * reported, with each side's Redis CPU per job and its busiest Redis's
 * utilisation, which is what would allow growth on more cores.
 */
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Cluster, type Redis } from 'ioredis';
import { defaultJobOptions } from '../../src/queues/job-options.js';
import { imageQueueName } from '../../src/queues/names.js';
import { type LocalCluster, startLocalCluster } from '../../src/redis/local-cluster.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { cpuSeconds, startWorker, type BenchWorker, until } from '../lib/procs.js';
import { addJobs, connect, pendingCount } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { summarise } from '../lib/stats.js';
import { plantBlob } from '../lib/store.js';

const HOSTS = 8;
const MASTERS = 3;
const CONCURRENCY = 25;

interface Side {
  label: string;
  queues: Queue[];
  conns: Array<Redis | Cluster>;
  workers: BenchWorker[];
  /** pids of the redis-server processes this side uses. */
  redisPids: number[];
}

interface RunFigures {
  jobsPerSec: number;
  /** Worker CPU (all 8 processes) per job, µs. */
  workerCpuUs: number;
  /** Redis CPU (all of this side's servers) per job, µs. */
  redisCpuUs: number;
  /** CPU-seconds per second of the busiest redis-server during the run (1 = one core saturated). */
  busiestRedisUtil: number;
}

/** Host ids whose `{tag}` slots spread over the masters: `per` on each (8 over 3 → 3/3/2). */
async function spreadHosts(cluster: LocalCluster, n: number): Promise<string[]> {
  const byMaster = new Map<number, string[]>();
  const cap = Math.ceil(n / MASTERS);
  const out: string[] = [];
  for (let i = 0; out.length < n && i < 1000; i++) {
    const h = `bench-c${i}`;
    const owner = (await cluster.masterOfSlot(await cluster.keySlot(`{${h}}`))).port;
    const list = byMaster.get(owner) ?? [];
    if (list.length >= cap) continue;
    list.push(h);
    byMaster.set(owner, list);
    out.push(h);
  }
  if (out.length < n) throw new Error(`could not spread ${n} hosts over ${MASTERS} masters`);
  return out;
}

function clusterConnection(cluster: LocalCluster): Cluster {
  const c = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), {
    redisOptions: { maxRetriesPerRequest: null },
    scaleReads: 'master',
  });
  c.on('error', () => {});
  return c;
}

async function runSide(side: Side, perQueue: number, data: unknown): Promise<RunFigures> {
  await Promise.all(side.queues.map((q) => q.obliterate({ force: true })));
  await Promise.all(side.queues.map((q) => q.pause()));
  const opts = defaultJobOptions({ attempts: 5, backoffMs: 5000 });
  await Promise.all(side.queues.map((q) => addJobs(q, 'ensure-image', Array.from({ length: perQueue }, () => data), opts)));
  const wCpu0 = side.workers.reduce((s, w) => s + cpuSeconds(w.pid), 0);
  const rCpu0 = side.redisPids.map((p) => cpuSeconds(p));
  const t0 = Date.now();
  await Promise.all(side.queues.map((q) => q.resume()));
  const total = perQueue * side.queues.length;
  await until(`${total} jobs on ${side.label}`, Math.max(60_000, total * 10), async () => {
    for (const q of side.queues) if ((await pendingCount(q)) > 0) return undefined;
    return true;
  }, 25);
  const wall = (Date.now() - t0) / 1000;
  const wCpu = side.workers.reduce((s, w) => s + cpuSeconds(w.pid), 0) - wCpu0;
  const rCpu = side.redisPids.map((p, i) => cpuSeconds(p) - rCpu0[i]!);
  let end = 0;
  for (const q of side.queues) {
    const failed = await q.getFailedCount();
    if (failed) {
      const [f] = await q.getFailed(0, 0);
      throw new Error(`${failed} jobs failed on ${q.name} (${side.label}): ${f?.failedReason}`);
    }
    const [newest] = await q.getJobs(['completed'], 0, 0, false);
    if (!newest?.finishedOn) throw new Error(`no completed job on ${q.name} (${side.label})`);
    end = Math.max(end, newest.finishedOn);
  }
  const seconds = (end - t0) / 1000;
  return {
    jobsPerSec: total / seconds,
    workerCpuUs: (wCpu * 1e6) / total,
    redisCpuUs: (rCpu.reduce((a, b) => a + b, 0) * 1e6) / total,
    busiestRedisUtil: Math.max(...rCpu) / wall,
  };
}

export async function clusterScaleOut(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.quick ? 8_000 : 32_000;
  const perQueue = n / HOSTS;
  const img = await ctx.image('cache-hit', 1024 * 1024);
  const data = { image: ctx.http.url(img.name), imageDigest: img.digest };
  let cluster: LocalCluster | undefined;
  const sides: Side[] = [];
  try {
    ctx.log(`starting a ${MASTERS}-master Redis Cluster (no replicas)`);
    cluster = await startLocalCluster({ dir: join(ctx.tmp, 'cluster'), masters: MASTERS, replicasPerMaster: 0 });
    const hosts = await spreadHosts(cluster, HOSTS);
    const slots = await Promise.all(hosts.map(async (h) => (await cluster!.masterOfSlot(await cluster!.keySlot(`{${h}}`))).port));
    ctx.log(`hosts over the masters: ${hosts.map((h, i) => `${h}→${slots[i]}`).join(', ')}`);
    const clusterPids = cluster.nodes.map((x) => x.proc.process!.pid!);

    const start = async (label: string, redisEnv: Record<string, string>, open: () => Redis | Cluster, redisPids: number[]): Promise<Side> => {
      const side: Side = { label, queues: [], conns: [], workers: [], redisPids };
      sides.push(side);
      const roots = hosts.map((h) => join(ctx.tmp, 'cluster-scenario', label, h));
      await Promise.all(roots.map((r) => plantBlob(r, img)));
      // One at a time: eight Node processes starting together on two cores time out.
      for (const [i, h] of hosts.entries()) {
        side.workers.push(
          await startWorker({
            name: `cluster-${label}-${h}`,
            dir: ctx.tmp,
            env: { ...redisEnv, FLEETQ_HOST: h, FLEETQ_ROOT: roots[i], FLEETQ_PREFIX: ctx.prefix, FLEETQ_CONCURRENCY: String(CONCURRENCY), FLEETQ_QUEUES: 'images' },
          }),
        );
        const conn = open();
        side.conns.push(conn);
        const q = new Queue(imageQueueName(h), { connection: conn, prefix: ctx.prefix });
        q.on('error', () => {});
        side.queues.push(q);
      }
      return side;
    };
    const single = await start('single', { REDIS_URL: ctx.redisUrl }, () => connect(ctx.redisUrl), [ctx.redisPid]);
    const multi = await start('cluster', { FLEETQ_REDIS_CLUSTER_NODES: cluster.nodes.map((x) => x.address).join(',') }, () => clusterConnection(cluster!), clusterPids);

    const runs = await measured(ctx, `cluster vs single Redis, ${n} jobs over ${HOSTS} hosts`, async () => {
      const c = await runSide(multi, perQueue, data);
      const s = await runSide(single, perQueue, data);
      ctx.log(
        `  cluster ${Math.round(c.jobsPerSec)} jobs/s (redis ${c.redisCpuUs.toFixed(0)} µs CPU/job over ${MASTERS} servers, busiest at ${(c.busiestRedisUtil * 100).toFixed(0)}% of a core; workers ${c.workerCpuUs.toFixed(0)} µs/job), ` +
          `single ${Math.round(s.jobsPerSec)} jobs/s (redis ${s.redisCpuUs.toFixed(0)} µs/job, at ${(s.busiestRedisUtil * 100).toFixed(0)}% of a core; workers ${s.workerCpuUs.toFixed(0)} µs/job)`,
      );
      return { c, s };
    });
    const cv = summarise(runs.map((r) => r.c.jobsPerSec));
    const sv = summarise(runs.map((r) => r.s.jobsPerSec));
    const med = (f: (r: { c: RunFigures; s: RunFigures }) => number) => summarise(runs.map(f)).median;
    return [
      row({
        scenario: 'cluster',
        name: `cache-hit, ${HOSTS} hosts over a ${MASTERS}-master cluster vs one Redis (${n / 1000}k jobs, c=${CONCURRENCY} each)`,
        value: cv,
        baseline: sv,
        unit: 'jobs/s',
        goal: 'report (grows with masters only when Redis is the bottleneck: not on 2 cores)',
        pass: null,
        details: {
          jobs: n,
          hosts: HOSTS,
          masters: MASTERS,
          concurrencyPerHost: CONCURRENCY,
          clusterRuns: cv.runs,
          singleRuns: sv.runs,
          ratioPerRun: runs.map((r) => r.c.jobsPerSec / r.s.jobsPerSec),
          redisCpuUsPerJob: { cluster: runs.map((r) => r.c.redisCpuUs), single: runs.map((r) => r.s.redisCpuUs) },
          busiestRedisUtil: { cluster: runs.map((r) => r.c.busiestRedisUtil), single: runs.map((r) => r.s.busiestRedisUtil) },
          workerCpuUsPerJob: { cluster: runs.map((r) => r.c.workerCpuUs), single: runs.map((r) => r.s.workerCpuUs) },
          note:
            `busiest redis-server at ${(med((r) => r.c.busiestRedisUtil) * 100).toFixed(0)}% of a core on the cluster vs ${(med((r) => r.s.busiestRedisUtil) * 100).toFixed(0)}% for the single Redis; ` +
            `Redis CPU per job ${med((r) => r.c.redisCpuUs).toFixed(0)} µs (cluster, all masters) vs ${med((r) => r.s.redisCpuUs).toFixed(0)} µs; ` +
            `worker CPU per job ${med((r) => r.c.workerCpuUs).toFixed(0)} vs ${med((r) => r.s.workerCpuUs).toFixed(0)} µs: ` +
            `${HOSTS} worker processes and ${MASTERS + 1} redis-servers share this machine's cores, so the workers, not Redis, bound throughput here`,
        },
      }),
    ];
  } finally {
    for (const side of sides) {
      for (const q of side.queues) await q.obliterate({ force: true }).catch(() => {});
      for (const q of side.queues) await q.close().catch(() => {});
      for (const c of side.conns) c.disconnect();
      await Promise.all(side.workers.map((w) => w.stop()));
    }
    await cluster?.stop();
  }
}
