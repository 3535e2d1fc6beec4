/** BullMQ processor for a host's images queue. */
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { parsePayload } from '../jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload, type EnsureImageResult } from '../jobs/contracts/ensure-image.js';
import { ensureImage, type EnsureDeps } from '../ensure/ensure-image.js';
import { InvalidInputError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';
import type { WorkerMetrics } from '../metrics/worker-metrics.js';
import { lazyChild } from '../lib/lazy-log.js';
import { errorCode, isPermanent, toBullmqError } from './to-bullmq-error.js';

export interface ImageProcessorDeps extends EnsureDeps {
  host: string;
  log: Logger;
  metrics?: WorkerMetrics | undefined;
}

export function createImageProcessor(deps: ImageProcessorDeps) {
  const m = deps.metrics?.forHost(deps.host);
  return async (job: Job, _token?: string, signal?: AbortSignal): Promise<EnsureImageResult> => {
    const base = lazyChild(deps.log, () => ({ jobId: job.id, host: deps.host, attempt: job.attemptsMade + 1 }));
    const started = performance.now();
    try {
      if (job.name !== ENSURE_IMAGE) throw new InvalidInputError(`unknown job name "${job.name}" on an images queue`, 'name');
      const payload = parsePayload(EnsureImagePayload, job.data, ENSURE_IMAGE);
      const log = lazyChild(deps.log, () => ({ jobId: job.id, host: deps.host, attempt: job.attemptsMade + 1, digest: payload.imageDigest, image: redactUrl(payload.image) }));
      const result = await ensureImage(payload, deps, {
        log,
        signal,
        onProgress: (p) => {
          job.updateProgress(p).catch(() => {});
        },
        onLockWait: (ms) => m?.lockWait.observe(ms / 1000),
      });
      m?.pulls[result.outcome].inc();
      if (result.bytesDownloaded) m?.bytes.inc(result.bytesDownloaded);
      m?.pullDuration[result.outcome].observe(result.durationMs / 1000);
      // Cache hits are counted by fleetq_pulls_total{outcome="present"}; a line each only at debug.
      (result.outcome === 'present' ? log.debug : log.info)({ outcome: result.outcome, digest: result.digest, durationMs: result.durationMs }, 'ensure-image done');
      return result;
    } catch (err) {
      m?.pulls.failed.inc();
      m?.pullDuration.failed.observe((performance.now() - started) / 1000);
      base.warn({ err, code: errorCode(err), permanent: isPermanent(err) }, 'ensure-image failed');
      throw toBullmqError(err);
    }
  };
}
