/**
 * Composition root of a host worker: checks that need nothing open (HTTP
 * client and destination policy, credential store, metrics port), the store
 * layout, then connections, processors, dead-letter recorder, heartbeat and
 * the /metrics endpoint, and their orderly shutdown in reverse.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { parseDestinationPolicy } from '../fetch/destination-policy.js';
import { createHttpClient } from '../fetch/http-client.js';
import { loadImageAuthFile } from '../fetch/image-auth.js';
import { startWorkerEndpoint } from '../metrics/metrics-server.js';
import { WorkerMetrics } from '../metrics/worker-metrics.js';
import { startPeerServer } from '../peer/start-peer.js';
import { loadRedisSecrets } from '../redis/credentials.js';
import { describeRedisTarget, redisEndpoints, redisTarget } from '../redis/target.js';
import { ensureLayout, sweepTemp } from '../store/blob-store.js';
import { storePaths } from '../store/paths.js';
import { VERSION } from '../version.js';
import { openConnections } from './connections.js';
import { DeadLetterRecorder } from './dead-letter-recorder.js';
import { startHeartbeat } from './heartbeat.js';
import { startProcessors, watchFailures } from './processors.js';
import { StoreHealth } from './store-health.js';

export interface RunningWorker {
  /** Stop taking jobs, let running ones finish for up to `graceMs`, then abort them. */
  close(graceMs?: number): Promise<void>;
  readonly queues: string[];
}

export async function runWorker(cfg: Config, log: Logger): Promise<RunningWorker> {
  // First: a bad FLEETQ_IMAGE_ALLOW is a ConfigError before anything is opened (open Redis connections would keep the process alive).
  const redis = redisTarget(cfg);
  const dispatcher = createHttpClient({
    idleTimeoutMs: cfg.downloadIdleTimeoutMs,
    maxRedirects: cfg.maxRedirects,
    policy: parseDestinationPolicy(cfg.imageAllow, { redis: redisEndpoints(redis) }),
  });
  const imageAuth = loadImageAuthFile(cfg.imageAuthFile); // FLEETQ_IMAGE_AUTH_FILE: a ConfigError (0600, valid JSON) before anything is opened
  loadRedisSecrets(cfg); // FLEETQ_REDIS_PASSWORD_FILE (0600), FLEETQ_REDIS_TLS_CA_FILE…: ConfigErrors before anything is opened
  // FLEETQ_METRICS_PORT: /metrics and /healthz (503 "starting" until attached below); a port in use is a ConfigError here.
  const endpoint = await startWorkerEndpoint(cfg, log);
  const paths = storePaths(cfg.root);
  await ensureLayout(paths);
  const swept = await sweepTemp(paths, cfg.tempMaxAgeMs);
  if (swept.length) log.info({ count: swept.length }, 'removed stale temp files');
  // FLEETQ_PEER_LISTEN: serve committed blobs to peers (token, TLS and a busy port are ConfigErrors here, before Redis).
  const { peerListen } = cfg;
  const peer = peerListen ? await startPeerServer({ ...cfg, peerListen }, paths, log) : undefined;

  const connections = await openConnections(cfg, log).catch(async (err: unknown) => {
    await peer?.close();
    throw err;
  });
  const metrics = new WorkerMetrics(cfg.host);
  const health = new StoreHealth();
  const processors = startProcessors({ cfg, log, connections, paths, dispatcher, imageAuth, metrics, health });
  const workers = processors.workers.map((w) => w.queue);

  // Dead letters: jobs that end in `failed` (retries exhausted or permanent), recorded when BullMQ reports them
  // (retried with backoff) and by a sweep of the failed sets (at start, every minute, soon after an error), so
  // a Redis refusal (OOM) or a crash in between loses none. See dead-letter-recorder.ts.
  const hostMetrics = metrics.forHost(cfg.host);
  const deadLetters = new DeadLetterRecorder({
    redis: connections.lock,
    prefix: cfg.prefix,
    maxAgeMs: cfg.dlqMaxAgeMs,
    host: cfg.host,
    queues: workers,
    log,
    onRecorded: (via) => hostMetrics.deadLetters[via].inc(),
    onRecordError: () => {
      hostMetrics.deadLetterRecordFailures.inc();
      hostMetrics.redisErrors['dead-letter'].inc();
    },
  });
  watchFailures(workers, { log, metrics: hostMetrics, onFailed: (job, err, w) => void deadLetters.record(job, err, w) });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  deadLetters.start();
  const queues = workers.map((w) => w.name);

  const heartbeat = await startHeartbeat({ cfg, redis: connections.lock, queues, metrics, health, log, peerUrl: peer?.advertisedUrl });
  endpoint?.attach({ host: cfg.host, metrics, health, paths, redis: connections.queue, queues: processors.workers });
  log.info(
    { queues, concurrency: cfg.concurrency, restoreConcurrency: cfg.restoreConcurrency, root: cfg.root, redis: describeRedisTarget(redis), prefix: cfg.prefix, version: VERSION, metrics: endpoint?.url, peer: peer?.advertisedUrl },
    'worker started',
  );

  let closing: Promise<void> | undefined;
  const close = (graceMs = cfg.shutdownGraceMs) =>
    (closing ??= (async () => {
      await processors.close(graceMs);
      await deadLetters.close();
      await heartbeat.stop();
      await dispatcher.close().catch(() => {});
      await endpoint?.close().catch(() => {});
      await peer?.close().catch(() => {});
      await connections.close();
      log.info('worker stopped');
    })());
  return { close, queues };
}
