/**
 * A worker's own HTTP endpoint (FLEETQ_METRICS_PORT on FLEETQ_METRICS_BIND,
 * 127.0.0.1 by default), for Prometheus and for container healthchecks:
 *
 *   GET /metrics  this process: prom-client's process and Node.js metrics
 *                 (unprefixed: process_*, nodejs_*), fleetq_build_info, the
 *                 worker's job metrics (the same series it pushes to Redis for
 *                 the board), and fleetq_queue_oldest_waiting_seconds for its
 *                 own queues, read at scrape time;
 *   GET /healthz  200 {"status":"ok"} when its Redis connection is ready (a
 *                 PING answers within 1 s) and its store is writable (no
 *                 disk-full or unwritable state, and a probe file can be created
 *                 in temp/); else 503 with what is wrong. 503 {"status":
 *                 "starting"} until the worker is up.
 *
 * Nothing else is served (404), and nothing but GET and HEAD (405). The server
 * is unref'd: if the worker fails to start, it does not keep the process alive.
 */
import { open, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { RedisClient } from '../redis/connect.js';
import type { Logger } from 'pino';
import { Gauge, Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import { ConfigError, errorMessage } from '../lib/errors.js';
import type { StorePaths } from '../store/paths.js';
import type { StoreHealth } from '../worker/store-health.js';
import { oldestWaitingSeconds, type QueueKeysLike } from './queue-age.js';
import { collectProcessMetrics, registerBuildInfo } from './stock-metrics.js';
import type { WorkerMetrics } from './worker-metrics.js';

export interface Rendered {
  contentType: string;
  body: string;
}

export interface Health {
  ok: boolean;
  body: Record<string, unknown>;
}

export interface MetricsServerOptions {
  port: number;
  bind: string;
  metrics(): Promise<Rendered>;
  health(): Promise<Health>;
  log: Pick<Logger, 'warn'>;
}

export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics' && path !== '/healthz') return send(res, 404, 'text/plain', 'not found: this port serves /metrics and /healthz\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, 'text/plain', 'method not allowed\n');
    }
    if (path === '/healthz') {
      const h = await o.health();
      return send(res, h.ok ? 200 : 503, 'application/json', `${JSON.stringify(h.body)}\n`);
    }
    const m = await o.metrics();
    return send(res, 200, m.contentType, m.body);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      o.log.warn({ err: errorMessage(err), path: req.url?.slice(0, 100) }, 'metrics endpoint: request failed');
      if (!res.headersSent) send(res, 503, 'text/plain', `unavailable: ${errorMessage(err)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL'
          ? new ConfigError(`invalid FLEETQ_METRICS_PORT / FLEETQ_METRICS_BIND: cannot listen on ${o.bind}:${o.port}: ${err.code}`, 'FLEETQ_METRICS_PORT')
          : err,
      );
    });
    server.listen(o.port, o.bind, () => resolve());
  });
  server.unref();
  const port = (server.address() as AddressInfo).port;
  const host = o.bind.includes(':') ? `[${o.bind}]` : o.bind;
  return {
    url: `http://${host}:${port}/metrics`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

// ───────────── a worker's endpoint ─────────────

/** What the endpoint reads once the worker is up. */
export interface WorkerEndpointSources {
  host: string;
  metrics: WorkerMetrics;
  health: StoreHealth;
  paths: StorePaths;
  /** BullMQ's connection (no keyPrefix). */
  redis: RedisClient;
  queues: Array<{ kind: string; queue: QueueKeysLike }>;
}

export interface WorkerEndpoint extends MetricsServer {
  attach(sources: WorkerEndpointSources): void;
}

const PROBE_TIMEOUT_MS = 1000;

/** The worker's endpoint when FLEETQ_METRICS_PORT is set (else undefined). Listening before any connection is opened. */
export async function startWorkerEndpoint(cfg: Pick<Config, 'metricsPort' | 'metricsBind'>, log: Pick<Logger, 'warn'>): Promise<WorkerEndpoint | undefined> {
  if (cfg.metricsPort === undefined) return undefined;
  let src: WorkerEndpointSources | undefined;
  const local = new Registry();
  collectProcessMetrics(local);
  registerBuildInfo(local);
  new Gauge({
    name: 'fleetq_queue_oldest_waiting_seconds',
    help: 'age of the oldest job waiting to run (wait list and prioritized), per queue, read from Redis at scrape time',
    labelNames: ['host', 'queue'],
    registers: [local],
    async collect() {
      this.reset();
      if (!src) return;
      const now = Date.now();
      for (const { kind, queue } of src.queues) {
        try {
          this.set({ host: src.host, queue: kind }, await withTimeout(oldestWaitingSeconds(src.redis, queue, now), PROBE_TIMEOUT_MS, 'queue age'));
        } catch {
          // Redis unavailable: the series is absent from this scrape (/healthz says why).
        }
      }
    },
  });

  const server = await startMetricsServer({
    port: cfg.metricsPort,
    bind: cfg.metricsBind,
    log,
    async metrics() {
      // Two registries, distinct names: their texts concatenate into one valid exposition.
      const own = await local.metrics();
      const jobs = src ? await src.metrics.registry.metrics() : '';
      return { contentType: local.contentType, body: `${own}${own.endsWith('\n') ? '' : '\n'}${jobs}` };
    },
    async health() {
      if (!src) return { ok: false, body: { status: 'starting' } };
      const [redis, store] = await Promise.all([redisState(src.redis), storeState(src)]);
      const ok = redis === 'ok' && store === 'ok';
      return { ok, body: { status: ok ? 'ok' : 'unavailable', redis, store } };
    },
  });
  return {
    ...server,
    attach(sources) {
      src = sources;
    },
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms}ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function redisState(redis: RedisClient): Promise<string> {
  if (redis.status !== 'ready') return `connection ${redis.status}`;
  try {
    await withTimeout(redis.ping(), PROBE_TIMEOUT_MS, 'PING');
    return 'ok';
  } catch (err) {
    return errorMessage(err);
  }
}

async function storeState(src: WorkerEndpointSources): Promise<string> {
  if (src.health.state !== 'ok') return `${src.health.state}${src.health.detail ? `: ${src.health.detail}` : ''}`;
  const probe = join(src.paths.temp, `.fleetq-healthz-${process.pid}`);
  try {
    await withTimeout(
      (async () => {
        const fh = await open(probe, 'w', 0o600);
        await fh.close();
        await unlink(probe);
      })(),
      PROBE_TIMEOUT_MS,
      'store probe',
    );
    return 'ok';
  } catch (err) {
    return `not writable: ${errorMessage(err)}`;
  }
}
