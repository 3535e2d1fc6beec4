/** BullMQ processor for a host's restores queue. */
import { type Job, type Queue, WaitingChildrenError } from 'bullmq';
import type { Logger } from 'pino';
import { parsePayload } from '../jobs/contracts/common.js';
import { RESTORE, RestorePayload, type RestoreResult, targetVm } from '../jobs/contracts/restore.js';
import { InvalidInputError } from '../lib/errors.js';
import type { WorkerMetrics } from '../metrics/worker-metrics.js';
import type { RetryDefaults } from '../queues/job-options.js';
import { type RestoreDeps, type RestorePhase, runRestore } from '../restore/restore-handler.js';
import { imageQueueEnsurer } from './restore-base.js';
import { attemptLabel, errorCode, failureLine, isPermanent, toBullmqError } from './to-bullmq-error.js';

export interface RestoreProcessorDeps extends RestoreDeps {
  host: string;
  log: Logger;
  /** This host's images queue (producer side): where a missing base is ensured. */
  images: Queue;
  /** Retry options of the image jobs a restore adds. */
  retry: RetryDefaults;
  metrics?: WorkerMetrics | undefined;
}

/** Restore progress: the phase, and when the job first started (kept across attempts and resumptions). */
interface RestoreProgress {
  phase: RestorePhase;
  startedAt: number;
}

function firstStartedAt(job: Job): number {
  const p = job.progress as Partial<RestoreProgress> | number | undefined;
  if (p && typeof p === 'object' && typeof p.startedAt === 'number') return p.startedAt;
  return job.processedOn ?? Date.now();
}

export function createRestoreProcessor(deps: RestoreProcessorDeps) {
  return async (job: Job, token?: string, signal?: AbortSignal): Promise<RestoreResult> => {
    // `host` is the worker's root logger's; `vm` and `snapshot` are bound below, so calls never repeat them.
    const base = deps.log.child({ jobId: job.id, attempt: job.attemptsMade + 1 });
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
    const startedAt = firstStartedAt(job);
    try {
      if (job.name !== RESTORE) throw new InvalidInputError(`unknown job name "${job.name}" on a restores queue`, 'name');
      const payload = parsePayload(RestorePayload, job.data, RESTORE);
      const log = base.child({ vm: targetVm(payload), snapshot: payload.snapshot });
      const result = await runRestore(payload, deps, {
        log,
        signal,
        jobStartedAt: startedAt,
        jobLog,
        attempt: attemptLabel(job),
        base: imageQueueEnsurer(job, token, { images: deps.images, paths: deps.paths, retry: deps.retry, jobLog }),
        onPhase: (phase) => {
          job.updateProgress({ phase, startedAt } satisfies RestoreProgress).catch(() => {});
        },
      });
      log.info({ outcome: result.outcome, digest: result.digest, durationMs: result.durationMs }, 'restore done');
      observe('completed');
      return result;
    } catch (err) {
      if (err instanceof WaitingChildrenError) {
        base.info('base image missing: waiting for its image job');
        throw err;
      }
      observe('failed');
      base.warn({ err, code: errorCode(err), permanent: isPermanent(err) }, 'restore failed');
      jobLog(failureLine(err, job));
      throw toBullmqError(err);
    } finally {
      await logChain;
    }
  };
}
