/**
 * fleet: H hosts (one worker process each, separate roots) × 5 digests × R
 * restores (clones through the fake cocoon), all enqueued at once.
 *
 *   upstream GETs   per run: must be H × 5 (one per host and digest)
 *   latency         per restore: parent finishedOn − parent timestamp
 *                   (enqueue to VM running); p50 and p99 over all restores
 *
 * Then, in the same run, the same wave's pulls on H other hosts with peers on
 * (FLEETQ_PEER_LISTEN and a fleet token; their own key prefix, roots and
 * holder sets): one restore per host and digest, which is what decides the
 * pulls (more restores of a digest on a host share its one pull).
 *
 *   upstream GETs with peers   must be 5 (one per digest, not per host ×
 *                              digest), beside the peers-off count
 */
import { join } from 'node:path';
import { imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { clearHolders, fleetToken, peerEnv, startWorkers } from '../lib/peers.js';
import type { BenchWorker } from '../lib/procs.js';
import { openQueue, type QueueHandle } from '../lib/queue.js';
import { type Row, row } from '../lib/report.js';
import { percentile, summarise } from '../lib/stats.js';
import { fakeCocoonEnv, plantSnapshot, removeBlob, removeVms } from '../lib/store.js';
import { runRestores, smallImages } from './fan-out.js';

const DIGESTS = 5;

/**
 * perHost = restores per host, spread evenly over the 5 digests. Full: 8 hosts
 * × 5 digests × 20 restores per host (160 clones); BENCH_FLEET_PER_HOST
 * overrides (100 = 20 per host and digest, 800 clones: ~2 min per run here).
 */
export function fleetShape(quick: boolean): { hosts: number; perHost: number } {
  const override = Number(process.env.BENCH_FLEET_PER_HOST);
  const perHost = Number.isInteger(override) && override > 0 ? override : quick ? 5 : 20;
  return quick ? { hosts: 4, perHost } : { hosts: 8, perHost };
}

interface FleetSide {
  prefix: string;
  hostIds: string[];
  roots: Map<string, string>;
  queues: Map<string, { images: QueueHandle; restores: QueueHandle }>;
}

export async function fleet(ctx: BenchContext): Promise<Row[]> {
  const { hosts, perHost } = fleetShape(ctx.quick);
  const imgs = (await smallImages(ctx, DIGESTS)).slice(0, DIGESTS);
  const token = fleetToken();
  const workers: BenchWorker[] = [];
  const sides: FleetSide[] = [];
  try {
    // Peers off (the fleet as it was: ctx.prefix), then peers on (own prefix: the two never see each other's holders).
    for (const peers of [false, true]) {
      const prefix = peers ? `${ctx.prefix}-fleet-peers` : ctx.prefix;
      const hostIds = Array.from({ length: hosts }, (_, i) => `bench-fleet-${peers ? 'p' : ''}${i}`);
      const roots = new Map(hostIds.map((h) => [h, join(ctx.tmp, 'fleet', h)]));
      for (const root of roots.values()) {
        for (const [i, img] of imgs.entries()) await plantSnapshot(root, `golden-${i}`, { url: ctx.http.url(img.name), digest: img.digest });
      }
      const started = await startWorkers(
        hostIds.map((h) => ({
          name: h,
          dir: ctx.tmp,
          env: {
            REDIS_URL: ctx.redisUrl,
            FLEETQ_HOST: h,
            FLEETQ_ROOT: roots.get(h)!,
            FLEETQ_PREFIX: prefix,
            FLEETQ_CONCURRENCY: '10',
            FLEETQ_RESTORE_CONCURRENCY: '2',
            ...fakeCocoonEnv(roots.get(h)!),
            ...(peers ? peerEnv(token) : {}),
          },
        })),
        hosts,
      );
      workers.push(...started);
      const queues = new Map(hostIds.map((h) => [h, { images: openQueue(ctx.redisUrl, imageQueueName(h), prefix), restores: openQueue(ctx.redisUrl, restoreQueueName(h), prefix) }]));
      sides.push({ prefix, hostIds, roots, queues });
    }
    const [off, on] = sides as [FleetSide, FleetSide];
    const clear = async (side: FleetSide) => {
      for (const root of side.roots.values()) {
        for (const img of imgs) await removeBlob(root, img);
        await removeVms(root);
      }
      await clearHolders(ctx.redis, side.prefix, imgs.map((i) => i.digest));
    };
    // Interleave hosts and digests so every host works on every digest at once.
    const planOf = (side: FleetSide, run: number, n: number) =>
      Array.from({ length: n }, (_, i) => {
        const host = side.hostIds[i % hosts]!;
        const d = Math.floor(i / hosts) % DIGESTS;
        return { host, snapshot: `golden-${d}`, name: `f${run}-${i}`, img: imgs[d]! };
      });
    const total = hosts * perHost;
    const wave = hosts * DIGESTS;
    const runs = await measured(ctx, `fleet ${hosts} hosts × ${DIGESTS} digests, ${total} restores; peers on: ${wave} restores`, async (run, warm) => {
      // Warm-up: one restore per host and digest is enough to warm every worker.
      await clear(off);
      const r = await runRestores(ctx, planOf(off, run, warm ? wave : total), off.queues, 400_000);
      const lat = r.jobs.map((j) => j.finishedOn! - j.timestamp);
      const res = { gets: r.gets, wall: r.wall, p50: percentile(lat, 50), p99: percentile(lat, 99), perSec: r.jobs.length / r.wall };
      // Peers on: one restore per host and digest (the pulls of the wave above).
      await clear(on);
      const p = await runRestores(ctx, planOf(on, run, wave), on.queues, 400_000);
      const peers = { gets: p.gets, wall: p.wall };
      ctx.log(
        `  peers off: ${r.gets} GETs, wall ${r.wall.toFixed(2)} s (${res.perSec.toFixed(1)} restores/s), latency p50 ${res.p50} ms p99 ${res.p99} ms; ` +
          `peers on: ${p.gets} GETs for ${wave} restores, wall ${p.wall.toFixed(2)} s`,
      );
      return { ...res, peers };
    });
    const want = hosts * DIGESTS;
    const shape = `${hosts} hosts × ${DIGESTS} digests, ${perHost} restores/host`;
    return [
      row({
        scenario: 'fleet',
        name: `fleet: upstream GETs (${shape})`,
        value: summarise(runs.map((r) => r.gets)),
        unit: '',
        goal: `= ${want} in every run`,
        pass: runs.every((r) => r.gets === want),
      }),
      row({
        scenario: 'fleet',
        name: `fleet: upstream GETs with peers on (${hosts} hosts × ${DIGESTS} digests; vs peers off)`,
        value: summarise(runs.map((r) => r.peers.gets)),
        baseline: summarise(runs.map((r) => r.gets)),
        unit: '',
        goal: `= ${DIGESTS} in every run (one per digest)`,
        pass: runs.every((r) => r.peers.gets === DIGESTS),
        details: {
          peersWallSeconds: runs.map((r) => r.peers.wall),
          note: `peers on: ${wave} restores per run (one per host and digest, which decides the pulls), wall ${summarise(runs.map((r) => r.peers.wall)).median.toFixed(1)} s; peers off: ${total}`,
        },
      }),
      row({
        scenario: 'fleet',
        name: 'fleet: restore latency p50 (enqueue → VM running)',
        value: summarise(runs.map((r) => r.p50)),
        unit: 'ms',
        goal: 'report',
        pass: null,
      }),
      row({
        scenario: 'fleet',
        name: 'fleet: restore latency p99',
        value: summarise(runs.map((r) => r.p99)),
        unit: 'ms',
        goal: 'report',
        pass: null,
        details: { wallSeconds: runs.map((r) => r.wall), restoresPerSec: runs.map((r) => r.perSec), note: `${total} restores per run; FLEETQ_RESTORE_CONCURRENCY=2 per host; wall ${summarise(runs.map((r) => r.wall)).median.toFixed(1)} s` },
      }),
    ];
  } finally {
    for (const side of sides) {
      for (const q of side.queues.values()) {
        await q.images.close();
        await q.restores.close();
      }
    }
    await Promise.all(workers.map((w) => w.stop()));
  }
}
