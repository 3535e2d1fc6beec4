/**
 * Composition root of a host worker: checks that need nothing open (HTTP
 * client and destination policy, credential store, metrics port), the store
 * layout, then connections, processors, dead-letter recorder, heartbeat and
 * the /metrics endpoint, and their orderly shutdown in reverse.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { parseDestinationPolicy } from '../fetch/destination-policy.js';
import { createHttpClient } from '../fetch/http-client.js';
import { loadImageAuthFile } from '../fetch/image-auth.js';
import type { Digest } from '../lib/digest.js';
import { startWorkerEndpoint } from '../metrics/metrics-server.js';
import { WorkerMetrics } from '../metrics/worker-metrics.js';
import { redisAnnouncer, servingLoadReporter, slotFreedPublisher } from '../peer/announcer.js';
import { LocalBlobs } from '../peer/local-blobs.js';
import { createPeerClient } from '../peer/peer-client.js';
import { fleetToken } from '../peer/peer-token.js';
import { startPeerServer } from '../peer/start-peer.js';
import { newInstanceId } from '../registry/host-registry.js';
import { loadRedisSecrets } from '../redis/credentials.js';
import { describeRedisTarget, redisEndpoints, redisTarget } from '../redis/target.js';
import { ensureLayout, sweepTemp } from '../store/blob-store.js';
import { storePaths } from '../store/paths.js';
import { VERSION } from '../version.js';
import { openConnections } from './connections.js';
import { DeadLetterRecorder } from './dead-letter-recorder.js';
import { startHeartbeat } from './heartbeat.js';
import { startProcessors, watchFailures } from './processors.js';
import { CocoonCli } from '../restore/cocoon-cli.js';
import { startSnapshotPublisher } from './snapshot-publisher.js';
import { StoreHealth } from './store-health.js';

/** The fleet's certificate (FLEETQ_PEER_TLS_CERT), trusted for https peers too; read at start (start-peer reports a bad file). */
function peerCa(certFile: string | undefined): Buffer | undefined {
  if (!certFile) return undefined;
  try {
    return readFileSync(certFile);
  } catch {
    return undefined;
  }
}

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
  // The fleet token (FLEETQ_PEER_TOKEN[_FILE]) turns peer fetching on; a bad token file is a ConfigError here, before Redis.
  const token = fleetToken(cfg.peerToken, cfg.peerTokenFile);
  const instance = newInstanceId();
  // FLEETQ_PEER_LISTEN: serve verified blobs and downloads in progress to peers (TLS and a busy port are ConfigErrors here).
  const { peerListen } = cfg;
  const local = peerListen ? new LocalBlobs(paths, log) : undefined;
  let reportLoad: ((open: number) => void) | undefined;
  let reportFreed: ((digest: Digest) => void) | undefined;
  const peer =
    peerListen && local
      ? await startPeerServer({ ...cfg, peerListen }, paths, log, { source: local.source(), token, onLoad: (n) => reportLoad?.(n), onFreed: (d) => reportFreed?.(d) })
      : undefined;

  const connections = await openConnections(cfg, log).catch(async (err: unknown) => {
    await peer?.close();
    throw err;
  });
  const metrics = new WorkerMetrics(cfg.host);
  const health = new StoreHealth();
  if (local && peer) {
    local.attach(redisAnnouncer({ redis: connections.lock, prefix: cfg.prefix, host: cfg.host, instance, peerUrl: peer.advertisedUrl, maxStreams: cfg.peerMaxStreams }));
    reportLoad = servingLoadReporter(connections.lock, cfg.prefix, cfg.host, log);
    reportFreed = slotFreedPublisher(connections.lock, cfg.prefix, cfg.host, log);
    reportLoad(0);
  }
  // Peer fetching: on with a fleet token (a host without FLEETQ_PEER_LISTEN still fetches from peers).
  const peerClient = token ? createPeerClient({ idleTimeoutMs: cfg.downloadIdleTimeoutMs, redis: redisEndpoints(redis), ca: peerCa(cfg.peerTlsCert) }) : undefined;
  const processors = startProcessors({
    cfg,
    log,
    connections,
    paths,
    dispatcher,
    imageAuth,
    metrics,
    health,
    peers: token && peerClient ? { token, dispatcher: peerClient, local, serves: peer !== undefined } : undefined,
  });
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

  const heartbeat = await startHeartbeat({ cfg, redis: connections.lock, queues, metrics, health, log, peerUrl: peer?.advertisedUrl, instance });
  // Placement (`--host auto`) needs to know which snapshots this host has: only a worker that runs restores lists them.
  const restoreWorker = processors.workers.find((w) => w.kind === 'restores')?.queue;
  const snapshots = restoreWorker
    ? startSnapshotPublisher({
        redis: connections.lock,
        prefix: cfg.prefix,
        host: cfg.host,
        cocoon: new CocoonCli({
          bin: cfg.cocoonBin,
          timeoutMs: cfg.cocoonTimeoutMs,
          globals: { rootDir: cfg.root, config: cfg.cocoonConfig, runDir: cfg.cocoonRunDir, logDir: cfg.cocoonLogDir },
        }),
        intervalMs: cfg.snapshotRefreshMs,
        log,
      })
    : undefined;
  // A restore that found no such snapshot: the published list may be stale.
  restoreWorker?.on('failed', (_job, err) => {
    if ((err as { code?: unknown }).code === 'E_COCOON_SNAPSHOT_NOT_FOUND') snapshots?.refreshSoon();
  });
  endpoint?.attach({ host: cfg.host, metrics, health, paths, redis: connections.queue, queues: processors.workers });
  log.info(
    { queues, concurrency: cfg.concurrency, restoreConcurrency: cfg.restoreConcurrency, root: cfg.root, redis: describeRedisTarget(redis), prefix: cfg.prefix, version: VERSION, metrics: endpoint?.url, peer: peer?.advertisedUrl, peerFetch: token !== undefined, instance },
    'worker started',
  );

  let closing: Promise<void> | undefined;
  const close = (graceMs = cfg.shutdownGraceMs) =>
    (closing ??= (async () => {
      await processors.close(graceMs);
      await deadLetters.close();
      await snapshots?.stop();
      await heartbeat.stop();
      await dispatcher.close().catch(() => {});
      await peerClient?.close().catch(() => {});
      await endpoint?.close().catch(() => {});
      await peer?.close().catch(() => {});
      await connections.close();
      log.info('worker stopped');
    })());
  return { close, queues };
}
