/**
 * /metrics: the workers' prom-client snapshots (pushed to Redis with each
 * heartbeat) merged with prom-client's AggregatorRegistry, plus what the board
 * reads from Redis at scrape time: jobs by queue and state, the oldest waiting
 * job's age per queue, hosts up/down; and the board's own process metrics
 * (prefixed `fleetq_board_`) and `fleetq_build_info`. Each worker also serves
 * its own /metrics (FLEETQ_METRICS_PORT; metrics/metrics-server.ts).
 */
import { AggregatorRegistry, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { oldestWaitingSeconds } from '../metrics/queue-age.js';
import { collectProcessMetrics, registerBuildInfo } from '../metrics/stock-metrics.js';
import type { Fleet } from '../ops/fleet.js';
import { readMetricsSnapshots } from '../registry/metrics-snapshots.js';

const STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed', 'completed'] as const;

export function createMetricsRenderer(fleet: Fleet) {
  const own = new Registry();
  collectProcessMetrics(own, 'fleetq_board_');
  registerBuildInfo(own);

  return async (): Promise<{ contentType: string; body: string }> => {
    const hosts = await fleet.hosts();
    // Per host, from its snapshot index (no SCAN: on a Cluster it would see one node).
    const snapshots = (await readMetricsSnapshots(fleet.redis, fleet.cfg.prefix, hosts.map((h) => h.host))) as Array<Array<MetricObjectWithValues<MetricValue<string>>>>;
    const aggregated = AggregatorRegistry.aggregate(snapshots as never);

    const scrape = new Registry();
    const jobs = new Gauge({ name: 'fleetq_jobs', help: 'jobs by queue and state', labelNames: ['host', 'queue', 'state'], registers: [scrape] });
    const hostsGauge = new Gauge({ name: 'fleetq_hosts', help: 'registered hosts by state', labelNames: ['state'], registers: [scrape] });
    const hostUp = new Gauge({ name: 'fleetq_host_up', help: '1 when the host has a live heartbeat', labelNames: ['host'], registers: [scrape] });
    const oldest = new Gauge({
      name: 'fleetq_queue_oldest_waiting_seconds',
      help: 'age of the oldest job waiting to run (wait list and prioritized), per queue, read from Redis at scrape time',
      labelNames: ['host', 'queue'],
      registers: [scrape],
    });
    const now = Date.now();
    hostsGauge.set({ state: 'up' }, hosts.filter((h) => h.state === 'up').length);
    hostsGauge.set({ state: 'down' }, hosts.filter((h) => h.state === 'down').length);
    for (const h of hosts) {
      hostUp.set({ host: h.host }, h.state === 'up' ? 1 : 0);
      for (const ref of fleet.queuesFor([h.host])) {
        const counts = await ref.queue.getJobCounts(...STATES);
        for (const s of STATES) jobs.set({ host: h.host, queue: ref.kind, state: s }, counts[s] ?? 0);
        oldest.set({ host: h.host, queue: ref.kind }, await oldestWaitingSeconds(fleet.redis, ref.queue, now));
      }
    }
    const merged = Registry.merge([aggregated as Registry, scrape, own]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  };
}
