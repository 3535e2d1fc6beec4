/**
 * The cache-hit path's CPU budget, item by item: each step a present-blob
 * ensure-image job takes, timed alone in a loop (process CPU per call,
 * garbage collection included), then the whole processor without Redis.
 *
 *   node dist/bench/cache-hit-budget.js [--calls 100000] [--rounds 5]
 *
 * Median of the rounds, µs per call. BullMQ's own share is what the no-op
 * worker costs (`cache-hit-ab.js noop .`, or the bench's note); the rest of
 * a job is the sum below. Steps that this build does not take any more are
 * printed for comparison with what they cost before.
 */
import { lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Digest } from '../src/lib/digest.js';
import { ENSURE_IMAGE, EnsureImagePayload } from '../src/jobs/contracts/ensure-image.js';
import { parsePayload } from '../src/jobs/contracts/common.js';
import { parseEnsureImagePayload } from '../src/jobs/contracts/ensure-image-check.js';
import { createImageProcessor } from '../src/worker/image-processor.js';
import { createLogger } from '../src/lib/log.js';
import { lazyChild } from '../src/lib/lazy-log.js';
import { WorkerMetrics } from '../src/metrics/worker-metrics.js';
import { decidePull } from '../src/policy/pull-policy.js';
import { statBlob } from '../src/store/blob-store.js';
import { IndexReferences, setUrlEntry, writeIndex } from '../src/store/image-index.js';
import { blobPath, storePaths } from '../src/store/paths.js';
import { inspectStore } from '../src/ensure/inspect-store.js';
import { median } from './lib/stats.js';

const args = process.argv.slice(2);
let calls = 100_000;
let rounds = 5;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--calls') calls = Number(args[++i]);
  else if (args[i] === '--rounds') rounds = Number(args[++i]);
}

const tmp = mkdtempSync(join(tmpdir(), 'fleetq-budget-'));
const hex = 'a'.repeat(64);
const digest = Digest.parse(`sha256:${hex}`);
const paths = storePaths(join(tmp, 'root'));
mkdirSync(paths.blobs, { recursive: true });
mkdirSync(paths.db, { recursive: true });
const blob = join(paths.blobs, `${hex}.qcow2`);
writeFileSync(blob, 'QFI\xfb qcow2 stand-in');
const url = 'http://127.0.0.1:9/base.qcow2';
const index = { images: {} };
setUrlEntry(index, url, digest, 19);
await writeIndex(paths, index);
const data = { image: url, imageDigest: digest.value };

const log = createLogger({ level: 'info', host: 'h' }, pino.destination({ dest: join(tmp, 'log'), sync: true }));
const metrics = new WorkerMetrics('h');
const m = metrics.forHost('h');
const references = new IndexReferences();
const processor = createImageProcessor({
  paths,
  references,
  host: 'h',
  log,
  metrics,
  dispatcher: undefined as never,
  coordinator: undefined as never,
  qemuImg: 'qemu-img',
  maxImageSize: 1e12,
  downloadTimeoutMs: 1e6,
});
const job = { id: '1', name: ENSURE_IMAGE, attemptsMade: 0, data, updateProgress: async () => {}, log: async () => 0 };

let sink: unknown;
const items: Array<[string, () => unknown]> = [
  ['payload: zod parsePayload (before)', () => parsePayload(EnsureImagePayload, data, ENSURE_IMAGE)],
  ['payload: precompiled check (after)', () => parseEnsureImagePayload(data)],
  ['store: statBlob (blobPath + one lstat of the blob)', () => statBlob(paths, digest)],
  ['store:   of which blobPath (digest check, path.join)', () => blobPath(paths, digest)],
  ['store:   of which lstatSync', () => lstatSync(blob, { throwIfNoEntry: false })],
  ['store: inspectStore (pinned, present)', () => inspectStore(paths, url, digest)],
  ['index: IndexReferences.has', () => references.has(paths, digest)],
  ['policy: decidePull', () => decidePull({ pinned: digest, pinnedBlobValid: true, urlEntryBlobValid: false }, {})],
  ['logging: lazyChild (not written)', () => lazyChild(log, () => ({ jobId: '1' }))],
  ['logging: debug line at info (skipped)', () => log.debug({ a: 1 }, 'x')],
  ['metrics: counter inc (bound child)', () => m.pulls.present.inc()],
  ['metrics: histogram observe (bound child)', () => m.pullDuration.present.observe(0.0001)],
  ['AbortController per job (BullMQ, when the processor takes a signal)', () => new AbortController().signal],
  [
    'result: object + JSON.stringify (BullMQ stores it)',
    () => JSON.stringify({ outcome: 'present', digest, path: join(paths.blobs, `${hex}.qcow2`), size: 19, bytesDownloaded: 0, durationMs: 0 }),
  ],
  ['whole processor, one job at a time (no Redis)', () => processor(job as never, 'token')],
];

async function cpuPerCall(fn: () => unknown, n: number): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const r = fn();
    sink = r instanceof Promise ? await r : r;
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

try {
  const results = new Map<string, number[]>(items.map(([k]) => [k, []]));
  for (let r = 0; r <= rounds; r++) {
    for (const [k, fn] of items) {
      const us = await cpuPerCall(fn, calls);
      if (r > 0) results.get(k)!.push(us); // round 0 warms up
    }
  }
  process.stdout.write(`${rounds} rounds × ${calls} calls, µs of process CPU per call (median [min–max])\n`);
  for (const [k, xs] of results) {
    process.stdout.write(`${k.padEnd(72)} ${median(xs).toFixed(2).padStart(7)} [${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}]\n`);
  }
  void sink;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
