/**
 * fleet: H hosts (one worker process each, separate roots) × 5 digests × R
 * restores (clones through the fake cocoon), all enqueued at once.
 *
 *   upstream GETs   per run: must be H × 5 (one per host and digest)
 *   latency         per restore: parent finishedOn − parent timestamp
 *                   (enqueue to VM running); p50 and p99 over all restores
 */
import { join } from 'node:path';
import { imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { startWorker, type BenchWorker } from '../lib/procs.js';
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

export async function fleet(ctx: BenchContext): Promise<Row[]> {
  const { hosts, perHost } = fleetShape(ctx.quick);
  const imgs = (await smallImages(ctx, DIGESTS)).slice(0, DIGESTS);
  const hostIds = Array.from({ length: hosts }, (_, i) => `bench-fleet-${i}`);
  const roots = new Map(hostIds.map((h) => [h, join(ctx.tmp, 'fleet', h)]));
  for (const root of roots.values()) {
    for (const [i, img] of imgs.entries()) await plantSnapshot(root, `golden-${i}`, { url: ctx.http.url(img.name), digest: img.digest });
  }
  const workers: BenchWorker[] = [];
  const queues = new Map<string, { images: QueueHandle; restores: QueueHandle }>();
  try {
    const started = await Promise.all(
      hostIds.map((h) =>
        startWorker({
          name: h,
          dir: ctx.tmp,
          env: {
            REDIS_URL: ctx.redisUrl,
            FLEETQ_HOST: h,
            FLEETQ_ROOT: roots.get(h)!,
            FLEETQ_PREFIX: ctx.prefix,
            FLEETQ_CONCURRENCY: '10',
            FLEETQ_RESTORE_CONCURRENCY: '2',
            ...fakeCocoonEnv(roots.get(h)!),
          },
        }),
      ),
    );
    workers.push(...started);
    for (const h of hostIds) {
      queues.set(h, { images: openQueue(ctx.redisUrl, imageQueueName(h), ctx.prefix), restores: openQueue(ctx.redisUrl, restoreQueueName(h), ctx.prefix) });
    }
    const total = hosts * perHost;
    const runs = await measured(ctx, `fleet ${hosts} hosts × ${DIGESTS} digests, ${total} restores`, async (run, warm) => {
      // Warm-up: one restore per host and digest is enough to warm every worker.
      const n = warm ? hosts * DIGESTS : total;
      for (const root of roots.values()) {
        for (const img of imgs) await removeBlob(root, img);
        await removeVms(root);
      }
      // Interleave hosts and digests so every host works on every digest at once.
      const plan = Array.from({ length: n }, (_, i) => {
        const host = hostIds[i % hosts]!;
        const d = Math.floor(i / hosts) % DIGESTS;
        return { host, snapshot: `golden-${d}`, name: `f${run}-${i}`, img: imgs[d]! };
      });
      const r = await runRestores(ctx, plan, queues, 400_000);
      const lat = r.jobs.map((j) => j.finishedOn! - j.timestamp);
      const res = { gets: r.gets, wall: r.wall, p50: percentile(lat, 50), p99: percentile(lat, 99), perSec: n / r.wall };
      ctx.log(`  ${r.gets} GETs, wall ${r.wall.toFixed(2)} s (${res.perSec.toFixed(1)} restores/s), latency p50 ${res.p50} ms p99 ${res.p99} ms`);
      return res;
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
    for (const q of queues.values()) {
      await q.images.close();
      await q.restores.close();
    }
    await Promise.all(workers.map((w) => w.stop()));
  }
}
