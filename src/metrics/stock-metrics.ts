/**
 * Metrics every fleetq process exposes about itself: prom-client's process and
 * Node.js metrics, and `fleetq_build_info`.
 *
 * prom-client also exports `nodejs_active_handles_total`,
 * `nodejs_active_requests_total` and `nodejs_active_resources_total`: gauges
 * whose names end in `_total`, which `promtool check metrics` rejects
 * ("non-counter metrics should not have "_total" suffix"). Each is the sum
 * over `type` of the gauge of the same name without `_total`
 * (`sum(nodejs_active_handles)`), so fleetq leaves them out.
 */
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';
import { VERSION } from '../version.js';

/** The stock gauges promtool rejects (see above), without their prefix. */
export const DROPPED_STOCK_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/** Process and Node.js metrics into `registry`, names prefixed with `prefix` (the board: `fleetq_board_`; a worker: none). */
export function collectProcessMetrics(registry: Registry, prefix = ''): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of DROPPED_STOCK_METRICS) registry.removeSingleMetric(prefix + name);
}

/** `fleetq_build_info{version,node} 1`: which fleetq and which Node.js this process runs. */
export function registerBuildInfo(registry: Registry): void {
  const g = new Gauge({ name: 'fleetq_build_info', help: 'always 1; labels: the fleetq version and the Node.js version of this process', labelNames: ['version', 'node'], registers: [registry] });
  g.set({ version: VERSION, node: process.version }, 1);
}
