/**
 * cold pull: one ensure-image job for a pinned digest that is not in the
 * store, downloading a 512 MiB and a 1 GiB qcow2 v3 body (256 MiB with
 * --quick) from the loopback server, including verify and commit (fsync,
 * chmod, rename, fsync dir, index update under flock).
 *
 *   fleetq:     wall = job.finishedOn − job.timestamp (enqueue to completed)
 *   baseline 1: `curl -sf URL | openssl dgst -sha256` (download + hash, no
 *               disk write: the hashing limit; fleetq's floor is this plus the
 *               final fsync of the blob)
 *   baseline 2: `curl -sfo FILE URL && sha256sum FILE` (download to disk, then hash)
 *
 * Both baselines are spawned through sh, wall measured around the spawn, same
 * server and file, digest checked; the three sides alternate inside each run.
 * Before every side: the blob is removed and `sync` runs, so each starts with
 * no dirty pages. The worker's peak RSS (VmHWM) is read after all runs; a
 * second worker with the other young-generation setting
 * (`--max-semi-space-size=1` or not) pulls the largest size twice, so peak RSS
 * is reported with and without the flag in the same run.
 *
 * Experiment knobs: BENCH_COLD_MIB="512,1024" (sizes); BENCH_COLD_BINS=
 * "a=/x/bin/fleetq.js,b=/y/bin/fleetq.js" adds one worker per build, pulling
 * in turn with the others in every run (A/B of a change in one run).
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
import { startWorker, type BenchWorker, until, workerNodeArgs } from '../lib/procs.js';
import { openQueue, type QueueHandle } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { summarise } from '../lib/stats.js';
import { removeBlob } from '../lib/store.js';

const execFileP = promisify(execFile);
const HOST = 'bench-cold';
const MB = 1_000_000;
const MiB = 2 ** 20;
const SEMI = '--max-semi-space-size=1';
/** The goal's size: ratio ≤ 1.4 against curl | openssl at 512 MiB. */
const GOAL_BYTES = 512 * MiB;

/** The herd's body (bench/scenarios/herd.ts): the same file as the cold pull's largest size. */
export const bigImageBytes = (quick: boolean) => (quick ? 256 : 1024) * MiB;

function coldPullSizes(quick: boolean): number[] {
  const env = process.env.BENCH_COLD_MIB;
  if (env) return env.split(',').map((s) => Number(s) * MiB);
  return quick ? [256 * MiB] : [512 * MiB, 1024 * MiB];
}

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

/** A shell pipeline against the image's URL; its stdout's first hex word of 64 digits must be the digest. */
async function baseline(ctx: BenchContext, img: BenchImage, script: string, label: string): Promise<PullRun> {
  const out = join(ctx.tmp, 'curl-download.img');
  await rm(out, { force: true });
  await execFileP('sync');
  const before = await ctx.http.stats();
  const t0 = performance.now();
  const { stdout } = await execFileP('sh', ['-c', script, 'sh', out, ctx.http.url(img.name)], { timeout: 300_000 });
  const seconds = (performance.now() - t0) / 1000;
  const after = await ctx.http.stats();
  await rm(out, { force: true });
  const hex = /\b[0-9a-f]{64}\b/.exec(stdout)?.[0];
  if (`sha256:${hex}` !== img.digest) throw new Error(`${label} baseline: digest mismatch (${stdout.trim()})`);
  const d = statsDelta(before, after);
  return { seconds, serverCpuShare: d.cpuSec / seconds, gets: d.gets[`/${img.name}`] ?? 0, outcome: label };
}

const CURL_OPENSSL = 'curl | openssl dgst -sha256';
const CURL_SHA256SUM = 'curl && sha256sum';
const curlOpenssl = (ctx: BenchContext, img: BenchImage) => baseline(ctx, img, 'curl -sf "$2" | openssl dgst -sha256', CURL_OPENSSL);
const curlSha256sum = (ctx: BenchContext, img: BenchImage) => baseline(ctx, img, 'curl -sfo "$1" "$2" && sha256sum "$1"', CURL_SHA256SUM);

interface Side {
  label: string;
  worker: BenchWorker;
  q: QueueHandle;
  root: string;
}

function checkPull(f: PullRun, label: string): void {
  if (f.outcome !== 'pulled') throw new Error(`cold pull (${label}): outcome ${f.outcome}, want pulled`);
  if (f.gets !== 1) throw new Error(`cold pull (${label}): ${f.gets} GETs, want 1`);
}

/** Extra builds to compare (BENCH_COLD_BINS="label=path,…"). */
function extraBins(): Array<{ label: string; bin: string }> {
  return (process.env.BENCH_COLD_BINS ?? '')
    .split(',')
    .filter(Boolean)
    .map((s, i) => {
      const eq = s.indexOf('=');
      return eq > 0 ? { label: s.slice(0, eq), bin: s.slice(eq + 1) } : { label: `build${i + 1}`, bin: s };
    });
}

async function openSide(ctx: BenchContext, label: string, host: string, opts: { bin?: string; nodeArgs?: string[] } = {}): Promise<Side> {
  const root = join(ctx.tmp, `cold-pull-${host}`);
  const worker = await startWorker({
    name: `cold-pull-${host}`,
    dir: ctx.tmp,
    env: { REDIS_URL: ctx.redisUrl, FLEETQ_HOST: host, FLEETQ_ROOT: root, FLEETQ_PREFIX: ctx.prefix, FLEETQ_QUEUES: 'images' },
    ...(opts.bin ? { bin: opts.bin } : {}),
    ...(opts.nodeArgs ? { replaceNodeArgs: opts.nodeArgs } : {}),
  });
  return { label, worker, q: openQueue(ctx.redisUrl, imageQueueName(host), ctx.prefix), root };
}

export async function coldPull(ctx: BenchContext): Promise<Row[]> {
  const sizes = coldPullSizes(ctx.quick);
  const imgs: Array<BenchImage & { mib: number }> = [];
  // The herd's size is the same file ('big'): made once for both scenarios.
  for (const bytes of sizes) imgs.push({ ...(await ctx.image(bytes === bigImageBytes(ctx.quick) ? 'big' : `cold-${bytes / MiB}`, bytes)), mib: bytes / MiB });
  const sides: Side[] = [];
  let other: Side | undefined;
  try {
    const prodArgs = workerNodeArgs();
    sides.push(await openSide(ctx, 'fleetq', HOST));
    for (const [i, x] of extraBins().entries()) sides.push(await openSide(ctx, x.label, `${HOST}-ab${i}`, { bin: x.bin }));
    const rows: Row[] = [];
    const shown = (a: readonly string[]) => (a.length ? a.join(' ') : 'default V8 flags');
    for (const img of imgs) {
      const mib = img.mib;
      const runs = await measured(ctx, `cold pull ${mib} MiB`, async () => {
        const f: PullRun[] = [];
        for (const s of sides) {
          const r = await onePull(ctx, s.q, s.root, img);
          checkPull(r, s.label);
          f.push(r);
        }
        const o = await curlOpenssl(ctx, img);
        const c = await curlSha256sum(ctx, img);
        ctx.log(
          `  ${sides.map((s, i) => `${s.label} ${f[i]!.seconds.toFixed(2)} s (server CPU ${(f[i]!.serverCpuShare * 100).toFixed(0)}%)`).join(', ')}, ` +
            `curl|openssl ${o.seconds.toFixed(2)} s, curl&&sha256sum ${c.seconds.toFixed(2)} s (server CPU ${(c.serverCpuShare * 100).toFixed(0)}%)`,
        );
        return { f, o, c };
      });
      const o = summarise(runs.map((r) => r.o.seconds));
      const c = summarise(runs.map((r) => r.c.seconds));
      const share = (xs: number[]) => `${Math.round(summarise(xs).median * 100)}%`;
      for (const [i, s] of sides.entries()) {
        const f = summarise(runs.map((r) => r.f[i]!.seconds));
        const who = i === 0 ? 'cold pull' : `cold pull [${s.label}]`;
        const goal = i === 0 && mib * MiB === GOAL_BYTES;
        const note = `server CPU share: fleetq ${share(runs.map((r) => r.f[i]!.serverCpuShare))}, curl|openssl ${share(runs.map((r) => r.o.serverCpuShare))}, curl&&sha256sum ${share(runs.map((r) => r.c.serverCpuShare))}; ${Math.round(img.size / MB / f.median)} MB/s end to end`;
        rows.push(
          row({
            scenario: 'cold pull',
            name: `${who} ${mib} MiB (vs ${CURL_OPENSSL})`,
            value: f,
            baseline: o,
            unit: 's',
            goal: goal ? 'ratio ≤ 1.4' : 'report',
            pass: goal ? f.median / o.median <= 1.4 : null,
            details: { bytes: img.size, fleetqRuns: f.runs, baselineRuns: o.runs, note },
          }),
          row({
            scenario: 'cold pull',
            name: `${who} ${mib} MiB (vs ${CURL_SHA256SUM})`,
            value: f,
            baseline: c,
            unit: 's',
            goal: i === 0 ? 'ratio ≤ 1.0' : 'report',
            pass: i === 0 ? f.median / c.median <= 1.0 : null,
            details: { bytes: img.size, fleetqRuns: f.runs, baselineRuns: c.runs },
          }),
        );
      }
    }
    for (const s of sides) {
      const rss = s.worker.peakRss();
      rows.push(
        row({
          scenario: 'cold pull',
          name: `cold pull${s.label === 'fleetq' ? '' : ` [${s.label}]`}: worker peak RSS (VmHWM, ${shown(prodArgs)})`,
          value: rss === undefined ? null : rss / MB,
          unit: 'MB',
          goal: s.label === 'fleetq' ? '≤ 150 MB' : 'report',
          pass: s.label !== 'fleetq' ? null : rss === undefined ? false : rss / MB <= 150,
        }),
      );
    }
    // The other young-generation setting, for comparison: two pulls of the largest size.
    const otherArgs = prodArgs.includes(SEMI) ? prodArgs.filter((a) => a !== SEMI) : [...prodArgs, SEMI];
    other = await openSide(ctx, 'other-flags', `${HOST}-flags`, { nodeArgs: otherArgs });
    const big = imgs[imgs.length - 1]!;
    for (let i = 0; i < 2; i++) {
      ctx.log(`cold pull ${big.mib} MiB with ${shown(otherArgs)}: ${i + 1}/2`);
      checkPull(await onePull(ctx, other.q, other.root, big), 'other flags');
    }
    const rss = other.worker.peakRss();
    rows.push(
      row({
        scenario: 'cold pull',
        name: `cold pull: worker peak RSS (VmHWM, ${shown(otherArgs)}; comparison)`,
        value: rss === undefined ? null : rss / MB,
        unit: 'MB',
        goal: 'report',
        pass: null,
      }),
    );
    return rows;
  } finally {
    for (const s of [...sides, ...(other ? [other] : [])]) {
      await s.q.close();
      await s.worker.stop();
    }
  }
}
