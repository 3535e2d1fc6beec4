/** BullMQ processor for a host's images queue. */
import { setMaxListeners } from 'node:events';
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { ENSURE_IMAGE, type EnsureImageResult } from '../jobs/contracts/ensure-image.js';
import { parseEnsureImagePayload } from '../jobs/contracts/ensure-image-check.js';
import { ensureImage, type EnsureDeps } from '../ensure/ensure-image.js';
import { InvalidInputError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';
import type { WorkerMetrics } from '../metrics/worker-metrics.js';
import { lazyChild } from '../lib/lazy-log.js';
import { StoreFullError, StoreUnwritableError } from '../store/store-errors.js';
import type { StoreHealth } from './store-health.js';
import { attemptLabel, errorCode, failureLine, isPermanent, toBullmqError } from './to-bullmq-error.js';

export interface ImageProcessorDeps extends EnsureDeps {
  host: string;
  log: Logger;
  metrics?: WorkerMetrics | undefined;
  /** Store health shared with the worker (registry, pausing pulls). */
  health?: StoreHealth | undefined;
  /** FLEETQ_STORE_FULL_RETRY: how much later a pull that hit a full store runs again. */
  storeFullRetryMs?: number | undefined;
  /** Aborted when the worker gives up on its running jobs (shutdown): cancels every pull. */
  shutdown?: AbortSignal | undefined;
}

/**
 * A cache hit (image present) costs its job nothing beyond BullMQ's own
 * commands: no progress, no job-log line, no registry write, and no log line
 * at the default level; the closures below are only called on a pull.
 * (`host` is not bound here: the worker's root logger carries it.)
 *
 * The processor takes two parameters, not BullMQ's third (`signal`): BullMQ
 * makes an AbortController for every job of a processor that takes one (~5 µs
 * of a ~50 µs job). Pulls are cancelled at shutdown through `deps.shutdown`.
 */
export function createImageProcessor(deps: ImageProcessorDeps) {
  const m = deps.metrics?.forHost(deps.host);
  const signal = deps.shutdown;
  // Every follower waiting on a pull listens to this one signal.
  if (signal) setMaxListeners(0, signal);
  return async (job: Job, token?: string): Promise<EnsureImageResult> => {
    const started = performance.now();
    try {
      if (job.name !== ENSURE_IMAGE) throw new InvalidInputError(`unknown job name "${job.name}" on an images queue`, 'name');
      const payload = parseEnsureImagePayload(job.data);
      const log = lazyChild(deps.log, () => ({ jobId: job.id, attempt: job.attemptsMade + 1, digest: payload.imageDigest, image: redactUrl(payload.image) }));
      const result = await ensureImage(payload, deps, {
        log,
        signal,
        // Bull Board draws its ring from `progress`; bytes, total and rate show in its Progress tab.
        onProgress: (p) => {
          job.updateProgress(p).catch(() => {});
        },
        onLockWait: (ms) => m?.lockWait.observe(ms / 1000),
        jobLog: (line) => {
          job.log(line).catch(() => {});
        },
        attempt: () => attemptLabel(job),
      });
      m?.pulls[result.outcome].inc();
      if (result.bytesDownloaded) m?.bytes.inc(result.bytesDownloaded);
      m?.pullDuration[result.outcome].observe(result.durationMs / 1000);
      // Cache hits are counted by fleetq_pulls_total{outcome="present"}; a line each only at debug.
      log[result.outcome === 'present' ? 'debug' : 'info']({ outcome: result.outcome, digest: result.digest, durationMs: result.durationMs }, 'ensure-image done');
      return result;
    } catch (err) {
      const base = lazyChild(deps.log, () => ({ jobId: job.id, attempt: job.attemptsMade + 1 }));
      if (err instanceof StoreFullError && token) {
        // Not the job's fault and not worth an attempt: park it until space is likely back; pulls pause meanwhile.
        deps.health?.set('disk-full', err.message, err.needBytes);
        const delay = deps.storeFullRetryMs ?? 5 * 60_000;
        base.warn({ err: err.message, retryInMs: delay }, 'store full: pull parked, pulls paused until space is back');
        await job.log(`${err.message} (retried in ${Math.round(delay / 1000)}s)`).catch(() => {});
        await job.moveToDelayed(Date.now() + delay, token);
        throw new DelayedError();
      }
      if (err instanceof StoreUnwritableError) deps.health?.set('store-unwritable', err.message);
      m?.pulls.failed.inc();
      m?.pullDuration.failed.observe((performance.now() - started) / 1000);
      base.warn({ err, code: errorCode(err), permanent: isPermanent(err) }, 'ensure-image failed');
      await job.log(failureLine(err, job)).catch(() => {});
      throw toBullmqError(err);
    }
  };
}
