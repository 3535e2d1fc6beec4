/**
 * A/B of fleetq's cache-hit path, for changes too small to see through the
 * run-to-run spread of `npm run bench` on a shared 2-core machine.
 *
 *   node dist/bench/cache-hit-ab.js [--rounds 30] [--jobs 5000] noop [noop+result] [noop+signal] /path/to/buildA /path/to/buildB …
 *
 * A build is a directory holding a compiled fleetq (`dist/src/…`, e.g. a copy
 * of this checkout made before a change, with node_modules linked). Every
 * variant gets a BullMQ Worker (concurrency 50) in this one process, on one
 * private redis-server, with that build's image processor (logger at info to a
 * file, metrics on) or a no-op (`noop+result`: returning a result of fleetq's
 * size; `noop+signal`: taking BullMQ's per-job AbortSignal). Rounds interleave the variants, so machine
 * load hits all of them alike. Per round and variant: N cache-hit jobs
 * (present blob) are queued while paused, then drained; the process CPU time
 * and the wall time per job are recorded. The processor alone (no Redis, no
 * BullMQ) is measured as well. Prints medians with min–max.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Processor, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { defaultJobOptions } from '../src/queues/job-options.js';
import { startRedisServer } from '../src/redis/redis-server.js';
import { median } from './lib/stats.js';

type AnyProcessor = (job: unknown, token?: string, signal?: AbortSignal) => Promise<unknown>;

const args = process.argv.slice(2);
let rounds = 30;
let jobs = 5000;
const variants: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--rounds') rounds = Number(args[++i]);
  else if (args[i] === '--jobs') jobs = Number(args[++i]);
  else variants.push(args[i]!);
}
if (variants.length === 0 || !(rounds >= 1) || !(jobs >= 1)) {
  process.stderr.write('usage: cache-hit-ab.js [--rounds N] [--jobs N] noop|noop+result|noop+signal|BUILD_DIR …\n');
  process.exit(2);
}

const tmp = mkdtempSync(join(tmpdir(), 'fleetq-ab-'));
const hex = 'a'.repeat(64);
const root = join(tmp, 'root');
mkdirSync(join(root, 'cloudimg', 'blobs'), { recursive: true });
mkdirSync(join(root, 'cloudimg', 'db'), { recursive: true });
writeFileSync(join(root, 'cloudimg', 'blobs', `${hex}.qcow2`), 'QFI\xfb qcow2 stand-in');
const data = { image: 'http://127.0.0.1:9/base.qcow2', imageDigest: `sha256:${hex}` };

async function processorFor(v: string, i: number): Promise<AnyProcessor> {
  if (v === 'noop') return async () => {};
  // The no-op with one of fleetq's per-job costs, to price it inside BullMQ: a result of fleetq's size, a signal parameter.
  if (v === 'noop+result') {
    const path = join(root, 'cloudimg', 'blobs', `${hex}.qcow2`);
    return async () => ({ outcome: 'present', digest: data.imageDigest, path, size: 19, bytesDownloaded: 0, durationMs: 0 });
  }
  if (v === 'noop+signal') return async (_job: unknown, _token?: string, _signal?: AbortSignal) => {};
  const dir = resolve(v);
  const load = (p: string) => import(pathToFileURL(join(dir, 'dist', 'src', p)).href);
  const { createImageProcessor } = await load('worker/image-processor.js');
  const { createLogger } = await load('lib/log.js');
  const { storePaths } = await load('store/paths.js');
  const metrics = await load('metrics/worker-metrics.js').then((m) => new m.WorkerMetrics('h'), () => undefined);
  // Builds since the pull-references cache became a required dependency take it from the caller.
  const references = await load('store/image-index.js').then((m) => (m.IndexReferences ? new m.IndexReferences() : undefined));
  const log = createLogger({ level: 'info', host: 'h' }, pino.destination({ dest: join(tmp, `variant-${i}.log`), sync: true }));
  return createImageProcessor({ paths: storePaths(root), references, host: 'h', log, metrics, dispatcher: undefined, coordinator: undefined, qemuImg: 'qemu-img', maxImageSize: 1e12, downloadTimeoutMs: 1e6 });
}

/** CPU µs per call of the processor alone, 50 calls in flight, fake jobs. */
async function processorOnly(p: AnyProcessor, n: number): Promise<number> {
  let next = 0;
  const c0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < n) {
        const id = String(next++);
        await p({ id, name: 'ensure-image', attemptsMade: 0, data, updateProgress: async () => {} }, 'token', undefined);
      }
    }),
  );
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

const redis = await startRedisServer({ dir: join(tmp, 'redis') });
const conns: Redis[] = [];
try {
  const setups: Array<{ v: string; queue: Queue; worker: Worker; processor: AnyProcessor; cpu: number[]; rate: number[]; alone: number[] }> = [];
  for (const [i, v] of variants.entries()) {
    const qc = new Redis(redis.url, { maxRetriesPerRequest: null });
    const wc = new Redis(redis.url, { maxRetriesPerRequest: null });
    conns.push(qc, wc);
    const processor = await processorFor(v, i);
    const queue = new Queue(`ab-${i}`, { connection: qc, prefix: 'ab' });
    // fleetq's worker options (src/worker/run-worker.ts, defaults) for every variant, the no-op one too.
    const worker = new Worker(`ab-${i}`, processor as Processor, { connection: wc, prefix: 'ab', concurrency: 50, lockDuration: 30_000, stalledInterval: 30_000, maxStalledCount: 2 });
    await worker.waitUntilReady();
    setups.push({ v, queue, worker, processor, cpu: [], rate: [], alone: [] });
  }
  const opts = defaultJobOptions({ attempts: 5, backoffMs: 5000 });
  for (let round = 0; round <= rounds; round++) {
    for (const s of setups) {
      await s.queue.obliterate({ force: true });
      await s.queue.pause();
      for (let i = 0; i < jobs; i += 1000) await s.queue.addBulk(Array.from({ length: Math.min(1000, jobs - i) }, () => ({ name: 'ensure-image', data, opts })));
      const drained = new Promise<void>((r) => s.worker.once('drained', () => r()));
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await s.queue.resume();
      await drained;
      const c = process.cpuUsage(c0);
      const secs = (performance.now() - t0) / 1000;
      const alone = s.v.startsWith('noop') ? 0 : await processorOnly(s.processor, 2000);
      if (round === 0) continue; // warm-up
      s.cpu.push((c.user + c.system) / jobs);
      s.rate.push(jobs / secs);
      s.alone.push(alone);
    }
  }
  const fmt = (xs: number[], d = 0) => `${median(xs).toFixed(d)} [${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}]`;
  process.stdout.write(`${rounds} rounds × ${jobs} cache-hit jobs per variant, concurrency 50 (median [min–max])\n`);
  for (const s of setups) {
    process.stdout.write(
      `${s.v.padEnd(28)} worker CPU/job ${fmt(s.cpu)} µs · ${fmt(s.rate)} jobs/s${s.v.startsWith('noop') ? '' : ` · processor alone ${fmt(s.alone, 1)} µs/job`}\n`,
    );
  }
  for (const s of setups) {
    await s.worker.close();
    await s.queue.close();
  }
} finally {
  for (const c of conns) c.disconnect();
  await redis.kill();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
