/** BullMQ processor for a host's restores queue (parents of ensure-image children). */
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { parsePayload } from '../jobs/contracts/common.js';
import { EnsureImageResult } from '../jobs/contracts/ensure-image.js';
import { RESTORE, RestorePayload, type RestoreResult } from '../jobs/contracts/restore.js';
import { InvalidInputError } from '../lib/errors.js';
import { runRestore, type RestoreDeps } from '../restore/restore-handler.js';
import type { WorkerMetrics } from '../metrics/worker-metrics.js';
import { errorCode, isPermanent, toBullmqError } from './to-bullmq-error.js';

export interface RestoreProcessorDeps extends RestoreDeps {
  host: string;
  log: Logger;
  metrics?: WorkerMetrics | undefined;
}

export function createRestoreProcessor(deps: RestoreProcessorDeps) {
  return async (job: Job, _token?: string, signal?: AbortSignal): Promise<RestoreResult> => {
    const base = deps.log.child({ jobId: job.id, host: deps.host, attempt: job.attemptsMade + 1 });
    let logChain: Promise<unknown> = Promise.resolve();
    const started = performance.now();
    const kind = typeof job.data?.kind === 'string' ? job.data.kind : 'unknown';
    const observe = (result: string) => {
      deps.metrics?.restores.inc({ host: deps.host, kind, result });
      deps.metrics?.restoreDuration.observe({ host: deps.host, kind, result }, (performance.now() - started) / 1000);
    };
    const jobLog = (line: string) => {
      logChain = logChain.then(() => job.log(line)).catch(() => {});
    };
    try {
      if (job.name !== RESTORE) throw new InvalidInputError(`unknown job name "${job.name}" on a restores queue`, 'name');
      const payload = parsePayload(RestorePayload, job.data, RESTORE);
      const [values, failures] = await Promise.all([job.getChildrenValues(), job.getIgnoredChildrenFailures()]);
      const child = Object.values(values)
        .map((v) => EnsureImageResult.safeParse(v))
        .find((r) => r.success)?.data;
      const childFailure = Object.values(failures)[0];
      const log = base.child({ digest: child?.digest ?? payload.imageDigest, vm: payload.vm ?? payload.name });
      const result = await runRestore(payload, deps, { log, attempt: job.attemptsMade + 1, signal, child, childFailure, jobLog });
      log.info({ vm: result.vm, outcome: result.outcome, durationMs: result.durationMs }, 'restore done');
      observe('completed');
      return result;
    } catch (err) {
      observe('failed');
      base.warn({ err, code: errorCode(err), permanent: isPermanent(err) }, 'restore failed');
      jobLog(`failed: ${(err as Error).message}`);
      throw toBullmqError(err);
    } finally {
      await logChain;
    }
  };
}
