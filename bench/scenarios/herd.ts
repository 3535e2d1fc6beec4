/**
 * thundering herd: 200 ensure-image jobs for one uncached digest, added at
 * once (addBulk, no deduplication id, so all 200 really run) to one host
 * served by 4 worker processes (concurrency 50 each, so all 200 are in
 * flight together), against one cold pull alone on the same workers.
 *
 *   upstream GETs     from the HTTP server's per-path counter (exactly 1)
 *   total wall        max(finishedOn) − min(timestamp) over the 200 jobs,
 *                     vs finishedOn − timestamp of the single pull (≤ 1.3×)
 *   follower latency  each follower's finishedOn − the leader's commit time
 *                     (the leader's "image pulled" log line, written right
 *                     after the blob rename and index update); median ≤ 50 ms
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { imageQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { statsDelta } from '../lib/http.js';
import { startWorker, type BenchWorker } from '../lib/procs.js';
import { addJobs, assertCompleted, fetchJobs, openQueue, type QueueHandle, waitIdle } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { median, percentile, summarise } from '../lib/stats.js';
import { removeBlob } from '../lib/store.js';
import { bigImageBytes, onePull } from './cold-pull.js';

const execFileP = promisify(execFile);
const HOST = 'bench-herd';
const PROCESSES = 4;
const JOBS = 200;

export async function herd(ctx: BenchContext): Promise<Row[]> {
  const img = await ctx.image('big', bigImageBytes(ctx.quick));
  const root = join(ctx.tmp, 'herd');
  const workers: BenchWorker[] = [];
  let q: QueueHandle | undefined;
  try {
    const env = { REDIS_URL: ctx.redisUrl, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, FLEETQ_PREFIX: ctx.prefix, FLEETQ_CONCURRENCY: '50', FLEETQ_QUEUES: 'images' };
    workers.push(...(await Promise.all(Array.from({ length: PROCESSES }, (_, i) => startWorker({ name: `herd-${i}`, dir: ctx.tmp, env })))));
    q = openQueue(ctx.redisUrl, imageQueueName(HOST), ctx.prefix);
    const data = { image: ctx.http.url(img.name), imageDigest: img.digest };

    const runs = await measured(ctx, `herd ${JOBS} jobs × ${PROCESSES} processes`, async () => {
      const single = await onePull(ctx, q!, root, img);

      await removeBlob(root, img);
      await execFileP('sync');
      const before = await ctx.http.stats();
      const ids = await addJobs(q!.queue, 'ensure-image', Array.from({ length: JOBS }, () => data), { attempts: 1, removeOnComplete: 5000, removeOnFail: 5000 });
      await waitIdle([q!.queue], 300_000);
      const after = await ctx.http.stats();
      const jobs = await fetchJobs(q!.queue, ids);
      await assertCompleted(q!.queue, jobs);
      const gets = statsDelta(before, after).gets[`/${img.name}`] ?? 0;
      const leaders = jobs.filter((j) => (j.returnvalue as { outcome?: string }).outcome === 'pulled');
      if (leaders.length !== 1) throw new Error(`${leaders.length} jobs pulled, want exactly 1`);
      const leader = leaders[0]!;
      const pulledLine = workers.flatMap((w) => w.logs()).find((l) => l.msg === 'image pulled' && l.jobId === leader.id);
      const commitAt = pulledLine ? Date.parse(String(pulledLine.time)) : leader.finishedOn!;
      const wall = (Math.max(...jobs.map((j) => j.finishedOn!)) - Math.min(...jobs.map((j) => j.timestamp))) / 1000;
      const followerDelays = jobs.filter((j) => j !== leader).map((j) => j.finishedOn! - commitAt);
      const idSet = new Set(ids);
      const byProcess = workers.map((w) => w.logs().filter((l) => l.msg === 'ensure-image done' && idSet.has(String(l.jobId))).length);
      const t0 = Math.min(...jobs.map((j) => j.timestamp));
      // Where the herd's extra time goes: leader start, leader's own pull, the followers' tail.
      const breakdown = {
        leaderStartMs: leader.processedOn! - t0,
        leaderPullMs: commitAt - leader.processedOn!,
        tailAfterCommitMs: Math.max(...jobs.map((j) => j.finishedOn!)) - commitAt,
        singleMs: Math.round(single.seconds * 1000),
      };
      const r = {
        breakdown,
        single: single.seconds,
        wall,
        gets,
        followerMedian: median(followerDelays),
        followerP99: percentile(followerDelays, 99),
        followerMax: Math.max(...followerDelays),
        byProcess,
        commitFromLog: pulledLine !== undefined,
      };
      ctx.log(`  single ${single.seconds.toFixed(2)} s, herd ${wall.toFixed(2)} s (${(wall / single.seconds).toFixed(2)}×), ${gets} GET, followers +${r.followerMedian} ms median / +${r.followerP99} ms p99 after commit, jobs per process ${byProcess.join('/')}; leader started +${breakdown.leaderStartMs} ms, pulled in ${breakdown.leaderPullMs} ms, last follower +${breakdown.tailAfterCommitMs} ms`);
      return r;
    });

    const gets = summarise(runs.map((r) => r.gets));
    const wall = summarise(runs.map((r) => r.wall));
    const single = summarise(runs.map((r) => r.single));
    const ratio = wall.median / single.median;
    const fol = summarise(runs.map((r) => r.followerMedian));
    return [
      row({
        scenario: 'thundering herd',
        name: `herd: upstream GETs (${JOBS} jobs, ${PROCESSES} processes)`,
        value: gets,
        unit: '',
        goal: '= 1 in every run',
        pass: runs.every((r) => r.gets === 1),
        details: { runs: gets.runs },
      }),
      row({
        scenario: 'thundering herd',
        name: 'herd: total wall (vs one cold pull alone)',
        value: wall,
        baseline: single,
        ratio,
        unit: 's',
        goal: 'ratio ≤ 1.3',
        pass: ratio <= 1.3,
        details: {
          herdRuns: wall.runs,
          singleRuns: single.runs,
          jobsPerProcess: runs.map((r) => r.byProcess),
          breakdown: runs.map((r) => r.breakdown),
          note: `herd = leader start ${summarise(runs.map((r) => r.breakdown.leaderStartMs)).median} ms + leader pull ${summarise(runs.map((r) => r.breakdown.leaderPullMs)).median} ms + last follower ${summarise(runs.map((r) => r.breakdown.tailAfterCommitMs)).median} ms after commit (single pull ${summarise(runs.map((r) => r.breakdown.singleMs)).median} ms)`,
        },
      }),
      row({
        scenario: 'thundering herd',
        name: 'herd: median follower completion after leader commit',
        value: fol,
        unit: 'ms',
        goal: '≤ 50 ms',
        pass: fol.median <= 50,
        details: {
          p99PerRun: runs.map((r) => r.followerP99),
          maxPerRun: runs.map((r) => r.followerMax),
          note: `followers' finishedOn minus the leader's "image pulled" log time; p99 ${runs.map((r) => r.followerP99).join('/')} ms per run`,
        },
      }),
    ];
  } finally {
    await q?.close();
    await Promise.all(workers.map((w) => w.stop()));
  }
}
