/**
 * The metrics a worker process records (prom-client). Each worker pushes a
 * JSON snapshot of its registry to Redis with every heartbeat; the board
 * merges them (prom-client's AggregatorRegistry.aggregate) into /metrics.
 */
import { Counter, Histogram, Registry } from 'prom-client';

const DURATION_BUCKETS = [0.005, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800];
const WAIT_BUCKETS = [0.001, 0.01, 0.05, 0.25, 1, 5, 30, 120, 600];

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly pulls = new Counter({ name: 'fleetq_pulls_total', help: 'ensure-image jobs by outcome (present, pulled, failed)', labelNames: ['host', 'outcome'], registers: [this.registry] });
  readonly bytes = new Counter({ name: 'fleetq_bytes_downloaded_total', help: 'image bytes downloaded from upstream', labelNames: ['host'], registers: [this.registry] });
  readonly lockWait = new Histogram({ name: 'fleetq_lock_wait_seconds', help: 'time a pull waited for the per-digest lock or its leader', labelNames: ['host'], buckets: WAIT_BUCKETS, registers: [this.registry] });
  readonly pullDuration = new Histogram({ name: 'fleetq_pull_duration_seconds', help: 'ensure-image job duration by outcome', labelNames: ['host', 'outcome'], buckets: DURATION_BUCKETS, registers: [this.registry] });
  readonly restores = new Counter({ name: 'fleetq_restores_total', help: 'restore jobs by kind and result', labelNames: ['host', 'kind', 'result'], registers: [this.registry] });
  readonly restoreDuration = new Histogram({ name: 'fleetq_restore_duration_seconds', help: 'restore job duration (including cocoon) by kind and result', labelNames: ['host', 'kind', 'result'], buckets: DURATION_BUCKETS, registers: [this.registry] });

  constructor(readonly host: string) {
    // Zero the pull outcomes so every series exists from the start.
    for (const outcome of ['present', 'pulled', 'failed']) this.pulls.inc({ host, outcome }, 0);
    this.bytes.inc({ host }, 0);
  }

  /** Label-bound children for one host, made once (a label object per call costs on the hot path). */
  forHost(host: string) {
    const outcomes = ['present', 'pulled', 'failed'] as const;
    const pulls = Object.fromEntries(outcomes.map((o) => [o, this.pulls.labels({ host, outcome: o })])) as Record<(typeof outcomes)[number], ReturnType<Counter['labels']>>;
    const pullDuration = Object.fromEntries(outcomes.map((o) => [o, this.pullDuration.labels({ host, outcome: o })])) as Record<(typeof outcomes)[number], ReturnType<Histogram['labels']>>;
    return { pulls, pullDuration, bytes: this.bytes.labels({ host }), lockWait: this.lockWait.labels({ host }) };
  }

  async snapshot(): Promise<string> {
    return JSON.stringify(await this.registry.getMetricsAsJSON());
  }
}
