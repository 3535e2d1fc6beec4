/**
 * The host's BullMQ Workers and what their processors need: the pull lock
 * coordinator and the ensure-image dependencies for `images-{<host>}`, the
 * cocoon client and an image-queue producer for `restores-{<host>}` (a restore
 * whose base is missing adds an ensure-image job), each per FLEETQ_QUEUES.
 * Closing lets running jobs finish for a grace period, then aborts them.
 */
import { type Job, Queue, Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { Config } from '../config/schema.js';
import type { EnsureDeps } from '../ensure/ensure-image.js';
import { errorMessage } from '../lib/errors.js';
import { sleep } from '../lib/shutdown.js';
import { PullCoordinator } from '../lock/pull-coordinator.js';
import { ReleaseNotifier } from '../lock/release-notifier.js';
import { FleetPeers } from '../peer/fleet.js';
import type { LocalBlobs } from '../peer/local-blobs.js';
import { isRedisError, type WorkerMetrics } from '../metrics/worker-metrics.js';
import { imageQueueName, type QueueKind, restoreQueueName } from '../queues/names.js';
import { queueOptions } from '../queues/queue-options.js';
import { CocoonCli } from '../restore/cocoon-cli.js';
import { IndexReferences } from '../store/image-index.js';
import type { StorePaths } from '../store/paths.js';
import { VERSION } from '../version.js';
import type { WorkerConnections } from './connections.js';
import { createImageProcessor } from './image-processor.js';
import { pausePullsWhileFull } from './pause-pulls.js';
import { createRestoreProcessor } from './restore-processor.js';
import type { StoreHealth } from './store-health.js';

export interface ProcessorDeps {
  cfg: Config;
  log: Logger;
  connections: WorkerConnections;
  paths: StorePaths;
  dispatcher: EnsureDeps['dispatcher'];
  imageAuth: EnsureDeps['imageAuth'];
  metrics: WorkerMetrics;
  health: StoreHealth;
  /** Peer fetching (a fleet token), and what this host serves (FLEETQ_PEER_LISTEN). */
  peers?: { token: string; dispatcher: Dispatcher; local: LocalBlobs | undefined; serves: boolean } | undefined;
}

export interface Processors {
  workers: Array<{ kind: QueueKind; queue: Worker }>;
  /** Stop taking jobs, let running ones finish for up to `graceMs`, then abort them. */
  close(graceMs: number): Promise<void>;
}

export function startProcessors(d: ProcessorDeps): Processors {
  const { cfg, log, connections, paths, metrics, health } = d;
  const workerOpts = (concurrency: number) => ({
    connection: connections.queue,
    prefix: cfg.prefix,
    concurrency,
    lockDuration: cfg.jobLockMs,
    stalledInterval: cfg.stalledIntervalMs,
    maxStalledCount: 2,
  });
  const workers: Processors['workers'] = [];
  const producers: Queue[] = [];
  // Image jobs take no per-job AbortSignal (see createImageProcessor: it costs a cache hit ~12 µs): this one cancels their pulls.
  const shutdown = new AbortController();
  if (cfg.queues.includes('images')) {
    const notifier = new ReleaseNotifier(connections.subscriber);
    const coordinator = new PullCoordinator({
      redis: connections.mutex,
      notifier,
      prefix: cfg.prefix,
      host: cfg.host,
      ttlMs: cfg.lockTtlMs,
      log,
    });
    const ensureDeps: EnsureDeps = {
      paths,
      references: new IndexReferences(),
      dispatcher: d.dispatcher,
      coordinator,
      qemuImg: cfg.qemuImg,
      maxImageSize: cfg.maxImageSize,
      downloadTimeoutMs: cfg.downloadTimeoutMs,
      minRate: cfg.minRate,
      rateWindowMs: cfg.rateWindowMs,
      userAgent: `fleetq/${VERSION}`,
      policy: { trustUrlCacheOverPin: cfg.unsafeLegacyUrlCache },
      imageAuth: d.imageAuth,
      pullMetrics: metrics.pullMetrics(cfg.host),
      local: d.peers?.local,
      fleet: d.peers
        ? new FleetPeers({
            redis: connections.lock,
            mutex: connections.mutex,
            notifier,
            prefix: cfg.prefix,
            host: cfg.host,
            token: d.peers.token,
            dispatcher: d.peers.dispatcher,
            upstreamPerDigest: cfg.upstreamPerDigest,
            lockTtlMs: cfg.lockTtlMs,
            downAfterMs: cfg.hostDownAfterMs,
            serves: d.peers.serves,
            log,
            metrics: metrics.pullMetrics(cfg.host),
          })
        : undefined,
    };
    if (cfg.unsafeLegacyUrlCache) log.warn('FLEETQ_UNSAFE_LEGACY_URL_CACHE is on: pinned digests may be answered from a stale URL cache (cocoon#37). Tests only.');
    const processor = createImageProcessor({ ...ensureDeps, host: cfg.host, log, metrics, health, storeFullRetryMs: cfg.storeFullRetryMs, shutdown: shutdown.signal });
    const images = new Worker(imageQueueName(cfg.host), processor, workerOpts(cfg.concurrency));
    workers.push({ kind: 'images', queue: images });
    pausePullsWhileFull(images, health, paths, cfg.heartbeatMs, log);
  }
  if (cfg.queues.includes('restores')) {
    // A restore whose base is missing adds an ensure-image job to this host's images queue.
    const images = new Queue(imageQueueName(cfg.host), { connection: connections.queue, ...queueOptions(cfg.prefix) });
    producers.push(images);
    const restoreProcessor = createRestoreProcessor({
      host: cfg.host,
      log,
      images,
      retry: { attempts: cfg.attempts, backoffMs: cfg.backoffMs },
      paths,
      qemuImg: cfg.qemuImg,
      cocoonTimeoutMs: cfg.cocoonTimeoutMs,
      cocoon: new CocoonCli({
        bin: cfg.cocoonBin,
        timeoutMs: cfg.cocoonTimeoutMs,
        globals: { rootDir: cfg.root, config: cfg.cocoonConfig, runDir: cfg.cocoonRunDir, logDir: cfg.cocoonLogDir },
      }),
      metrics,
    });
    workers.push({ kind: 'restores', queue: new Worker(restoreQueueName(cfg.host), restoreProcessor, workerOpts(cfg.restoreConcurrency)) });
  }

  return {
    workers,
    async close(graceMs) {
      const all = workers.map((w) => w.queue);
      const closed = Promise.all(all.map((w) => w.close())).then(() => true);
      const inTime = await Promise.race([closed, sleep(graceMs).then(() => false)]);
      if (!inTime) {
        log.warn({ graceMs }, 'jobs still running after the grace period: aborting them');
        for (const w of all) w.cancelAllJobs('worker shutting down');
        shutdown.abort('worker shutting down');
        await Promise.race([closed, sleep(10_000)]);
      }
      await Promise.all(producers.map((q) => q.close().catch(() => {})));
    },
  };
}

/**
 * Worker errors and failed attempts: logged and counted; a Redis error that
 * failed an attempt is said loudly (it used one of the job's attempts). Every
 * failure goes to `onFailed` (the dead-letter recorder decides whether it is dead).
 */
export function watchFailures(workers: Worker[], o: { log: Logger; metrics: ReturnType<WorkerMetrics['forHost']>; onFailed: (job: Job, err: Error, w: Worker) => void }): void {
  for (const w of workers) {
    w.on('error', (err) => {
      if (isRedisError(err)) o.metrics.redisErrors.queue.inc();
      o.log.warn({ err: err.message, queue: w.name }, 'worker error');
    });
    w.on('failed', (job, err) => {
      if (!job) return;
      if (isRedisError(err)) {
        // Not the job's fault, but BullMQ has counted the attempt: say so loudly, and count it.
        o.metrics.redisErrors.job.inc();
        o.log.error(
          { err: errorMessage(err), jobId: job.id, queue: w.name, attemptsMade: job.attemptsMade, attempts: job.opts.attempts ?? 1 },
          'job attempt failed on a Redis error (it used one of the job\'s attempts; if it is dead now, `fleetq dlq requeue` puts it back)',
        );
      }
      o.onFailed(job, err, w);
    });
  }
}
