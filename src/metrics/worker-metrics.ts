/**
 * The metrics a worker process records (prom-client). Each worker pushes a
 * JSON snapshot of its registry to Redis with every heartbeat; the board
 * merges them (prom-client's AggregatorRegistry.aggregate) into /metrics.
 * With FLEETQ_METRICS_PORT the worker also serves this registry itself, next
 * to its process metrics, build info and queue age (metrics-server.ts); those
 * stay out of the snapshot, where the board would sum them across workers.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import type { PullMetrics } from '../peer/fleet.js';

const DURATION_BUCKETS = [0.005, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800];
const WAIT_BUCKETS = [0.001, 0.01, 0.05, 0.25, 1, 5, 30, 120, 600];

export const REDIS_OPS = ['job', 'queue', 'dead-letter'] as const;

/** Errors that come from Redis (a refused command or a lost connection), not from the job's own work. */
export function isRedisError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { name?: unknown; message?: unknown };
  if (e.name === 'ReplyError' || e.name === 'MaxRetriesPerRequestError') return true;
  const message = typeof e.message === 'string' ? e.message : '';
  return /^(OOM|READONLY|MISCONF|LOADING|BUSY|NOSCRIPT|EXECABORT|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|NOREPLICAS)\b|^Connection is closed\.|Reached the max retries per request limit/.test(message);
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly pulls = new Counter({ name: 'fleetq_pulls_total', help: 'ensure-image jobs by outcome (present, pulled, failed)', labelNames: ['host', 'outcome'], registers: [this.registry] });
  readonly bytes = new Counter({ name: 'fleetq_bytes_downloaded_total', help: 'image bytes received by pulls (upstream and peers; fleetq_pull_bytes_total splits them)', labelNames: ['host'], registers: [this.registry] });
  /** Bytes received by pulls by source (upstream, peer) and digest ("unpinned" for an unpinned pull): the fleet's saving. */
  readonly pullBytes = new Counter({ name: 'fleetq_pull_bytes_total', help: 'image bytes received by pulls, by source (upstream, peer) and digest', labelNames: ['host', 'source', 'digest'], registers: [this.registry] });
  /** A peer skipped for a digest, by peer host and reason (wrong-bytes, died, refused, not-found, timeout). */
  readonly peerErrors = new Counter({ name: 'fleetq_peer_errors_total', help: 'peers skipped by a pull, by peer and reason (wrong-bytes, died, refused, not-found, timeout)', labelNames: ['host', 'peer', 'reason'], registers: [this.registry] });
  /** Pulls that waited for a holder because the back-to-source permits of their digest were taken. */
  readonly peerBusy = new Counter({ name: 'fleetq_peer_busy_total', help: 'peers that answered 503 busy (all FLEETQ_PEER_MAX_STREAMS slots taken) to a pull, by peer; not failures: the pull tried another holder', labelNames: ['host', 'peer'], registers: [this.registry] });
  readonly backToSourceWait = new Histogram({ name: 'fleetq_back_to_source_wait_seconds', help: 'time a pull waited for a peer or a back-to-source permit (FLEETQ_UPSTREAM_PER_DIGEST)', labelNames: ['host'], buckets: WAIT_BUCKETS, registers: [this.registry] });
  readonly lockWait = new Histogram({ name: 'fleetq_lock_wait_seconds', help: 'time a pull waited for the per-digest lock or its leader', labelNames: ['host'], buckets: WAIT_BUCKETS, registers: [this.registry] });
  readonly pullDuration = new Histogram({ name: 'fleetq_pull_duration_seconds', help: 'ensure-image job duration by outcome', labelNames: ['host', 'outcome'], buckets: DURATION_BUCKETS, registers: [this.registry] });
  readonly restores = new Counter({ name: 'fleetq_restores_total', help: 'restore jobs by kind and result', labelNames: ['host', 'kind', 'result'], registers: [this.registry] });
  readonly restoreDuration = new Histogram({ name: 'fleetq_restore_duration_seconds', help: 'restore job duration (including cocoon) by kind and result', labelNames: ['host', 'kind', 'result'], buckets: DURATION_BUCKETS, registers: [this.registry] });
  /**
   * Redis refusing or failing a command, by what it cost: `job` (a job attempt failed on it, and used up one of
   * the job's attempts), `queue` (BullMQ's own bookkeeping: moving a job, renewing a lock), `dead-letter`
   * (recording a dead letter; retried, then left to the sweep).
   */
  readonly redisErrors = new Counter({ name: 'fleetq_redis_errors_total', help: 'Redis errors (OOM, READONLY, connection…) by operation: job, queue, dead-letter', labelNames: ['host', 'op'], registers: [this.registry] });
  readonly deadLetters = new Counter({ name: 'fleetq_dead_letters_total', help: 'dead letters recorded, by path: event (when the job failed) or sweep (found later in the failed set)', labelNames: ['host', 'via'], registers: [this.registry] });
  readonly deadLetterRecordFailures = new Counter({ name: 'fleetq_dead_letter_record_failures_total', help: 'failed tries to record a dead letter (each is retried; the sweep records what is left)', labelNames: ['host'], registers: [this.registry] });

  constructor(readonly host: string) {
    // Zero the pull outcomes so every series exists from the start.
    for (const outcome of ['present', 'pulled', 'failed']) this.pulls.inc({ host, outcome }, 0);
    this.bytes.inc({ host }, 0);
    for (const op of REDIS_OPS) this.redisErrors.inc({ host, op }, 0);
    for (const via of ['event', 'sweep']) this.deadLetters.inc({ host, via }, 0);
    this.deadLetterRecordFailures.inc({ host }, 0);
  }

  /** Label-bound children for one host, made once (a label object per call costs on the hot path). */
  forHost(host: string) {
    const outcomes = ['present', 'pulled', 'failed'] as const;
    const pulls = Object.fromEntries(outcomes.map((o) => [o, this.pulls.labels({ host, outcome: o })])) as Record<(typeof outcomes)[number], ReturnType<Counter['labels']>>;
    const pullDuration = Object.fromEntries(outcomes.map((o) => [o, this.pullDuration.labels({ host, outcome: o })])) as Record<(typeof outcomes)[number], ReturnType<Histogram['labels']>>;
    const redisErrors = Object.fromEntries(REDIS_OPS.map((op) => [op, this.redisErrors.labels({ host, op })])) as Record<(typeof REDIS_OPS)[number], ReturnType<Counter['labels']>>;
    const deadLetters = { event: this.deadLetters.labels({ host, via: 'event' }), sweep: this.deadLetters.labels({ host, via: 'sweep' }) };
    return {
      pulls,
      pullDuration,
      bytes: this.bytes.labels({ host }),
      lockWait: this.lockWait.labels({ host }),
      redisErrors,
      deadLetters,
      deadLetterRecordFailures: this.deadLetterRecordFailures.labels({ host }),
    };
  }

  /** What a pull reports about its sources (peer/fleet.ts PullMetrics). */
  pullMetrics(host: string): PullMetrics {
    const wait = this.backToSourceWait.labels({ host });
    return {
      bytes: (source, digest, n) => this.pullBytes.inc({ host, source, digest }, n),
      peerError: (peer, reason) => this.peerErrors.inc({ host, peer, reason }),
      peerBusy: (peer) => this.peerBusy.inc({ host, peer }),
      backToSourceWait: (seconds) => wait.observe(seconds),
    };
  }

  async snapshot(): Promise<string> {
    return JSON.stringify(await this.registry.getMetricsAsJSON());
  }
}
