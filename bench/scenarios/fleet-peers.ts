/**
 * fleet-peers: a restore wave's pulls over a WAN link. H hosts (one worker
 * process each: own FLEETQ_HOST, FLEETQ_ROOT and peer port on loopback, one
 * Redis) each get one ensure-image job for the same pinned digest of S MiB,
 * all enqueued at once, from an upstream throttled to R MB/s for the whole
 * server (every connection together: a second bench HTTP server process with
 * --rate, serving the same files).
 *
 * In every run, in this order, each starting with the blob in no store and
 * nobody in the digest's holder set:
 *   single      one host alone pulls the digest cold through the same link
 *               (a peers-off host): the baseline wall
 *   peers on    the H hosts with FLEETQ_PEER_LISTEN and the fleet token: one
 *               (FLEETQ_UPSTREAM_PER_DIGEST, default 1) pulls from upstream,
 *               the others stream from it and from each other
 *   peers off   H other hosts without peer settings (own key prefix, so they
 *               see none of the peers-on hosts' holder sets): every host pulls
 *               from upstream, the link is shared H ways
 *
 *   upstream GETs   from the throttled server's per-path counter: 1 with
 *                   peers on, H with peers off
 *   wall            max(finishedOn) − min(timestamp) over the H jobs (enqueue
 *                   to every blob committed), vs the single pull's
 *                   finishedOn − timestamp; goal ≤ 1.5× with peers on; about
 *                   H× with peers off
 *
 * The warm-up run does the single pull and the peers-on wave only.
 * Shape: full 8 hosts × 256 MiB at 50 MB/s; --quick 4 hosts × 32 MiB;
 * BENCH_FLEET_PEERS_HOSTS, BENCH_FLEET_PEERS_MIB, BENCH_FLEET_PEERS_MBPS
 * override either. Experiments: BENCH_FLEET_PEERS_PEER_RATE sets the
 * peers-on workers' FLEETQ_PEER_MAX_RATE (default: fleetq's own default),
 * BENCH_FLEET_PEERS_MAX_STREAMS their FLEETQ_PEER_MAX_STREAMS,
 * BENCH_FLEET_PEERS_UPSTREAM_PER_DIGEST their FLEETQ_UPSTREAM_PER_DIGEST.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { imageQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { type BenchHttpServer, startHttpServer, statsDelta } from '../lib/http.js';
import type { BenchImage } from '../lib/images.js';
import { clearHolders, fleetToken, peerEnv, startWorkers } from '../lib/peers.js';
import type { BenchWorker } from '../lib/procs.js';
import { assertCompleted, fetchJobs, openQueue, type QueueHandle, waitIdle } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { summarise } from '../lib/stats.js';
import { removeBlob } from '../lib/store.js';
import { bigImageBytes, onePull } from './cold-pull.js';

const execFileP = promisify(execFile);
const MiB = 2 ** 20;
const MB = 1_000_000;
/** The goal: the whole wave with peers on within this many single cold pulls. */
const WALL_GOAL = 1.5;

function envInt(name: string, min: number): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be a whole number ≥ ${min} (got ${JSON.stringify(raw)})`);
  return v;
}

export interface FleetPeersShape {
  hosts: number;
  mib: number;
  /** Upstream link, MB/s (10^6 bytes), all connections together. */
  mbps: number;
  /** Extra settings of the peers-on workers (experiments; none by default). */
  peerSettings: Record<string, string>;
}

export function fleetPeersShape(quick: boolean): FleetPeersShape {
  return {
    hosts: envInt('BENCH_FLEET_PEERS_HOSTS', 2) ?? (quick ? 4 : 8),
    mib: envInt('BENCH_FLEET_PEERS_MIB', 1) ?? (quick ? 32 : 256),
    mbps: envInt('BENCH_FLEET_PEERS_MBPS', 1) ?? 50,
    peerSettings: {
      ...(process.env.BENCH_FLEET_PEERS_PEER_RATE ? { FLEETQ_PEER_MAX_RATE: process.env.BENCH_FLEET_PEERS_PEER_RATE } : {}),
      ...(process.env.BENCH_FLEET_PEERS_MAX_STREAMS ? { FLEETQ_PEER_MAX_STREAMS: process.env.BENCH_FLEET_PEERS_MAX_STREAMS } : {}),
      ...(process.env.BENCH_FLEET_PEERS_UPSTREAM_PER_DIGEST ? { FLEETQ_UPSTREAM_PER_DIGEST: process.env.BENCH_FLEET_PEERS_UPSTREAM_PER_DIGEST } : {}),
    },
  };
}

interface Side {
  label: string;
  prefix: string;
  hosts: string[];
  roots: string[];
  queues: QueueHandle[];
  /** One per host, in the order of `hosts`. */
  workers: BenchWorker[];
}

/** Where a wave's time and bytes went, from the workers' logs ("image pulled", "pulling from peer"). */
interface WaveTrace {
  /** Bytes the hosts received from peers and from upstream, all hosts together. */
  fromPeers: number;
  fromUpstream: number;
  /** When the last host that downloaded from upstream committed, s after the first enqueue. */
  upstreamCommit: number;
  /** When the last host committed, s after the first enqueue. */
  lastCommit: number;
  /** Hosts whose first peer was still downloading (a partial holder) when they started on it. */
  behindPartial: number;
}

interface Wave {
  wall: number;
  gets: number;
  upstreamBytes: number;
  outcomes: Record<string, number>;
  trace: WaveTrace;
}

/** The wave's lines in each host's log (its one job), summed up. */
function traceWave(side: Side, jobIds: string[], t0: number): WaveTrace {
  const t: WaveTrace = { fromPeers: 0, fromUpstream: 0, upstreamCommit: 0, lastCommit: 0, behindPartial: 0 };
  for (const [i, w] of side.workers.entries()) {
    const lines = w.logs().filter((l) => String(l.jobId) === jobIds[i]);
    const pulled = lines.find((l) => l.msg === 'image pulled');
    if (pulled) {
      const at = (Date.parse(String(pulled.time)) - t0) / 1000;
      const up = Number(pulled.fromUpstream ?? pulled.bytes ?? 0);
      t.fromPeers += Number(pulled.fromPeers ?? 0);
      t.fromUpstream += up;
      t.lastCommit = Math.max(t.lastCommit, at);
      if (up > 0) t.upstreamCommit = Math.max(t.upstreamCommit, at);
    }
    if (lines.find((l) => l.msg === 'pulling from peer')?.peerState === 'partial') t.behindPartial++;
  }
  return t;
}

/** Every store of `side` without the blob, nobody holding it, dirty pages written out. */
async function reset(ctx: BenchContext, side: Side, img: BenchImage): Promise<void> {
  for (const root of side.roots) await removeBlob(root, img);
  await clearHolders(ctx.redis, side.prefix, [img.digest]);
  await execFileP('sync');
}

/** One ensure-image job per host of `side`, added together; resolves when all are done. */
async function wave(ctx: BenchContext, link: BenchHttpServer, side: Side, img: BenchImage): Promise<Wave> {
  await reset(ctx, side, img);
  const before = await link.stats();
  const data = { image: link.url(img.name), imageDigest: img.digest };
  const opts = { attempts: 1, removeOnComplete: 1000, removeOnFail: 1000 };
  const added = await Promise.all(side.queues.map((q) => q.queue.add('ensure-image', data, opts)));
  await waitIdle(side.queues.map((q) => q.queue), 600_000, 20);
  const after = await link.stats();
  const jobs = [];
  for (const [i, q] of side.queues.entries()) {
    const js = await fetchJobs(q.queue, [added[i]!.id!]);
    await assertCompleted(q.queue, js);
    jobs.push(...js);
  }
  const t0 = Math.min(...jobs.map((j) => j.timestamp));
  const trace = traceWave(side, added.map((a) => a.id!), t0);
  const outcomes: Record<string, number> = {};
  for (const j of jobs) {
    const o = String((j.returnvalue as { outcome?: string } | null)?.outcome ?? '?');
    outcomes[o] = (outcomes[o] ?? 0) + 1;
  }
  const d = statsDelta(before, after);
  return {
    wall: (Math.max(...jobs.map((j) => j.finishedOn!)) - t0) / 1000,
    gets: d.gets[`/${img.name}`] ?? 0,
    upstreamBytes: after.bytesSent - before.bytesSent,
    outcomes,
    trace,
  };
}

export async function fleetPeers(ctx: BenchContext): Promise<Row[]> {
  const { hosts, mib, mbps, peerSettings } = fleetPeersShape(ctx.quick);
  const bytes = mib * MiB;
  // The herd's and cold pull's body when the sizes agree (--quick: 256 MiB), else its own file.
  const img = await ctx.image(bytes === bigImageBytes(ctx.quick) ? 'big' : `peers-${mib}`, bytes);
  const token = fleetToken();
  let link: BenchHttpServer | undefined;
  const workers: BenchWorker[] = [];
  const sides: Side[] = [];
  try {
    link = await startHttpServer(ctx.serveDir, { rate: mbps * MB });
    const linkCtx: BenchContext = { ...ctx, http: link };
    for (const peers of [true, false]) {
      const label = peers ? 'on' : 'off';
      const prefix = `${ctx.prefix}-peers-${label}`;
      const names = Array.from({ length: hosts }, (_, i) => `bench-peers-${label}-${i}`);
      const roots = names.map((h) => join(ctx.tmp, 'fleet-peers', h));
      const started = await startWorkers(
          names.map((h, i) => ({
            name: h,
            dir: ctx.tmp,
            env: {
              REDIS_URL: ctx.redisUrl,
              FLEETQ_HOST: h,
              FLEETQ_ROOT: roots[i]!,
              FLEETQ_PREFIX: prefix,
              FLEETQ_QUEUES: 'images',
              ...(peers ? { ...peerEnv(token), ...peerSettings } : {}),
            },
          })),
      );
      workers.push(...started);
      sides.push({ label: `peers ${label}`, prefix, hosts: names, roots, workers: started, queues: names.map((h) => openQueue(ctx.redisUrl, imageQueueName(h), prefix)) });
    }
    const [on, off] = sides as [Side, Side];
    const tuned = Object.entries(peerSettings).map(([k, v]) => `${k}=${v}`).join(' ');
    const shape = `${hosts} hosts × 1 digest (${mib} MiB), upstream ${mbps} MB/s${tuned ? `, peers with ${tuned}` : ''}`;
    if (tuned) ctx.log(`fleet-peers: experiment settings on the peers-on workers: ${tuned}`);
    const runs = await measured(ctx, `fleet-peers ${shape}`, async (_run, warm) => {
      // The single cold pull: a peers-off host alone (its own prefix: no holders to find).
      await reset(ctx, off, img);
      const single = await onePull(linkCtx, off.queues[0]!, off.roots[0]!, img);
      if (single.outcome !== 'pulled' || single.gets !== 1) throw new Error(`fleet-peers single pull: outcome ${single.outcome}, ${single.gets} GETs (want pulled, 1)`);
      const wOn = await wave(ctx, link!, on, img);
      const wOff = warm ? undefined : await wave(ctx, link!, off, img);
      const mbs = (b: number, s: number) => (b / MB / s).toFixed(1);
      ctx.log(
        `  single ${single.seconds.toFixed(2)} s (${mbs(img.size, single.seconds)} MB/s); ` +
          `peers on ${wOn.wall.toFixed(2)} s (${(wOn.wall / single.seconds).toFixed(2)}×), ${wOn.gets} GETs, ${(wOn.upstreamBytes / img.size).toFixed(2)}× the blob from upstream, ` +
          `${(wOn.trace.fromPeers / img.size).toFixed(2)}× from peers, upstream copy committed +${wOn.trace.upstreamCommit.toFixed(2)} s, last +${wOn.trace.lastCommit.toFixed(2)} s, ` +
          `${wOn.trace.behindPartial}/${hosts - 1} streamed behind a partial holder, outcomes ${JSON.stringify(wOn.outcomes)}` +
          (wOff ? `; peers off ${wOff.wall.toFixed(2)} s (${(wOff.wall / single.seconds).toFixed(2)}×), ${wOff.gets} GETs` : ''),
      );
      return { single: single.seconds, on: wOn, off: wOff! };
    });
    const single = summarise(runs.map((r) => r.single));
    const onWall = summarise(runs.map((r) => r.on.wall));
    const offWall = summarise(runs.map((r) => r.off.wall));
    const onGets = summarise(runs.map((r) => r.on.gets));
    const offGets = summarise(runs.map((r) => r.off.gets));
    const ideal = img.size / (mbps * MB);
    // The cap on upstream downloads per digest: 1 unless the experiment sets another.
    const k = Number(peerSettings.FLEETQ_UPSTREAM_PER_DIGEST ?? 1);
    return [
      row({
        scenario: 'fleet-peers',
        name: `fleet-peers: upstream GETs, ${hosts} hosts × 1 digest (${mib} MiB), peers on${k === 1 ? '' : ` [K=${k}]`} (vs off)`,
        value: onGets,
        baseline: offGets,
        unit: '',
        goal: k === 1 ? '= 1 in every run' : `1–${k} in every run`,
        pass: runs.every((r) => r.on.gets >= 1 && r.on.gets <= k),
        details: { upstreamBlobsPerRun: runs.map((r) => r.on.upstreamBytes / img.size), outcomes: runs.map((r) => r.on.outcomes) },
      }),
      row({
        scenario: 'fleet-peers',
        name: `fleet-peers: upstream GETs, peers off`,
        value: offGets,
        unit: '',
        goal: `= ${hosts} in every run (one per host)`,
        pass: runs.every((r) => r.off.gets === hosts),
      }),
      row({
        scenario: 'fleet-peers',
        name: `fleet-peers: wall, ${hosts} hosts, peers on, upstream ${mbps} MB/s${tuned ? ` [${tuned}]` : ''} (vs one host's cold pull)`,
        value: onWall,
        baseline: single,
        unit: 's',
        goal: `ratio ≤ ${WALL_GOAL}`,
        pass: onWall.median / single.median <= WALL_GOAL,
        details: {
          onRuns: onWall.runs,
          singleRuns: single.runs,
          trace: runs.map((r) => r.on.trace),
          note:
            `enqueue → all ${hosts} committed; one host alone at ${(img.size / MB / single.median).toFixed(1)} MB/s of the ${mbps} MB/s link (${ideal.toFixed(2)} s at line rate); peers on vs off: ${(onWall.median / offWall.median).toFixed(2)}×; ` +
            `the upstream copy committed at +${summarise(runs.map((r) => r.on.trace.upstreamCommit)).median.toFixed(2)} s, the last host at +${summarise(runs.map((r) => r.on.trace.lastCommit)).median.toFixed(2)} s; ` +
            `${summarise(runs.map((r) => r.on.trace.behindPartial)).median} of ${hosts - 1} hosts streamed behind a holder still downloading; ${(summarise(runs.map((r) => r.on.trace.fromPeers)).median / img.size).toFixed(2)} blobs' worth from peers`,
        },
      }),
      row({
        scenario: 'fleet-peers',
        name: `fleet-peers: wall, ${hosts} hosts, peers off (vs one host's cold pull)`,
        value: offWall,
        baseline: single,
        unit: 's',
        goal: `report (≈ ${hosts}× on a shared link)`,
        pass: null,
        details: { offRuns: offWall.runs, note: `peers off: ${hosts} GETs share the link, ${((hosts * img.size) / MB / offWall.median).toFixed(1)} MB/s upstream in total` },
      }),
    ];
  } finally {
    for (const s of sides) for (const q of s.queues) await q.close();
    await Promise.all(workers.map((w) => w.stop()));
    await link?.stop();
  }
}
