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
import { registryKeys } from '../registry/keys.js';

const STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed', 'completed'] as const;

export function createMetricsRenderer(fleet: Fleet) {
  const own = new Registry();
  collectProcessMetrics(own, 'fleetq_board_');
  registerBuildInfo(own);

  return async (): Promise<{ contentType: string; body: string }> => {
    const snapshots: Array<Array<MetricObjectWithValues<MetricValue<string>>>> = [];
    let cursor = '0';
    do {
      const [next, keys] = await fleet.redis.scan(cursor, 'MATCH', registryKeys(fleet.cfg.prefix).metricsPattern, 'COUNT', 200);
      cursor = next;
      if (keys.length) {
        for (const v of await fleet.redis.mget(...keys)) if (v) snapshots.push(JSON.parse(v));
      }
    } while (cursor !== '0');
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
    const hosts = await fleet.hosts();
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
