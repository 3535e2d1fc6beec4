/**
 * The worker's heartbeat: every FLEETQ_HEARTBEAT it announces itself in the
 * host registry (version, queues, concurrency, store health) and pushes its
 * metrics snapshot; on stop, one last snapshot, then it withdraws.
 */
import type { RedisClient } from '../redis/connect.js';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { errorMessage } from '../lib/errors.js';
import type { WorkerMetrics } from '../metrics/worker-metrics.js';
import { announce, newInstanceId, withdraw } from '../registry/host-registry.js';
import { pushMetricsSnapshot } from '../registry/metrics-snapshots.js';
import { VERSION } from '../version.js';
import type { StoreHealth } from './store-health.js';

export interface HeartbeatOptions {
  cfg: Pick<Config, 'prefix' | 'host' | 'concurrency' | 'restoreConcurrency' | 'heartbeatMs' | 'hostDownAfterMs'>;
  redis: RedisClient;
  queues: string[];
  metrics: WorkerMetrics;
  health: StoreHealth;
  log: Logger;
  /** The advertised peer address (src/peer/), when this worker serves blobs. */
  peerUrl?: string | undefined;
}

export interface Heartbeat {
  /** Stop beating: a final metrics snapshot, then withdraw from the registry. */
  stop(): Promise<void>;
}

/** Beats once (awaited: the host is registered when this resolves), then every `heartbeatMs`. */
export async function startHeartbeat(o: HeartbeatOptions): Promise<Heartbeat> {
  const { cfg, redis } = o;
  const instance = newInstanceId();
  const startedAt = Date.now();
  const beat = async () => {
    await announce(redis, cfg.prefix, {
      instance,
      host: cfg.host,
      version: VERSION,
      pid: process.pid,
      concurrency: cfg.concurrency,
      restoreConcurrency: cfg.restoreConcurrency,
      queues: o.queues,
      startedAt,
      health: o.health.state,
      healthDetail: o.health.detail,
      ...(o.peerUrl ? { peerUrl: o.peerUrl } : {}),
    });
    await pushMetricsSnapshot(redis, cfg.prefix, cfg.host, instance, await o.metrics.snapshot(), Math.max(3_600_000, cfg.hostDownAfterMs * 10));
  };
  await beat();
  const timer = setInterval(() => {
    beat().catch((err) => o.log.warn({ err: errorMessage(err) }, 'heartbeat failed'));
  }, cfg.heartbeatMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await beat().catch(() => {}); // final metrics
      await withdraw(redis, cfg.prefix, cfg.host, instance).catch(() => {});
    },
  };
}
