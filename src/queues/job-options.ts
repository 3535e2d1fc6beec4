/** Default BullMQ job options: retries with jittered exponential backoff, bounded retention. */
import type { JobsOptions } from 'bullmq';

export interface RetryDefaults {
  attempts: number;
  backoffMs: number;
}

export function defaultJobOptions(r: RetryDefaults): JobsOptions {
  return {
    attempts: r.attempts,
    backoff: { type: 'exponential', delay: r.backoffMs, jitter: 0.3 },
    removeOnComplete: { age: 24 * 3600, count: 5000 },
    // Failed jobs stay a week: the retry tooling works on them after an incident.
    removeOnFail: { age: 7 * 24 * 3600, count: 50_000 },
  };
}
