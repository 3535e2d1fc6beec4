/**
 * Composition root of a host worker: connections, lock coordinator, HTTP
 * client, the BullMQ worker(s), and orderly shutdown.
 */
import { Queue, Worker } from 'bullmq';
import { errorMessage } from '../lib/errors.js';
import { isRedisError, WorkerMetrics } from '../metrics/worker-metrics.js';
import { DeadLetterRecorder } from '../ops/dead-letters.js';
import { announce, newInstanceId, withdraw } from '../registry/host-registry.js';
import { registryKeys } from '../registry/keys.js';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createHttpClient } from '../fetch/http-client.js';
import { parseDestinationPolicy } from '../fetch/destination-policy.js';
import { loadImageAuthFile } from '../fetch/image-auth.js';
import { lockConnection } from '../lock/lock-connection.js';
import { PullCoordinator } from '../lock/pull-coordinator.js';
import { ReleaseNotifier } from '../lock/release-notifier.js';
import { sleep } from '../lib/shutdown.js';
import { workerConnection, waitReady, redactRedisUrl } from '../queues/connection.js';
import { imageQueueName, restoreQueueName } from '../queues/names.js';
import type { EnsureDeps } from '../ensure/ensure-image.js';
import { createRestoreProcessor } from './restore-processor.js';
import { ensureLayout, sweepTemp } from '../store/blob-store.js';
import { type StorePaths, storePaths } from '../store/paths.js';
import { StoreHealth, storeAcceptsWrites } from './store-health.js';
import { VERSION } from '../version.js';
import { createImageProcessor } from './image-processor.js';
import { startWorkerEndpoint } from '../metrics/metrics-server.js';
import { CocoonCli } from '../restore/cocoon-cli.js';
import { queueOptions } from '../queues/queue-options.js';
import { IndexReferences } from '../store/image-index.js';

export interface RunningWorker {
  /** Stop taking jobs, let running ones finish for up to `graceMs`, then abort them. */
  close(graceMs?: number): Promise<void>;
  readonly queues: string[];
}

export async function runWorker(cfg: Config, log: Logger): Promise<RunningWorker> {
  // First: a bad FLEETQ_IMAGE_ALLOW is a ConfigError before anything is opened (open Redis connections would keep the process alive).
  const dispatcher = createHttpClient({
    idleTimeoutMs: cfg.downloadIdleTimeoutMs,
    maxRedirects: cfg.maxRedirects,
    policy: parseDestinationPolicy(cfg.imageAllow, { redisUrl: cfg.redisUrl }),
  });
  const imageAuth = loadImageAuthFile(cfg.imageAuthFile); // FLEETQ_IMAGE_AUTH_FILE: a ConfigError (0600, valid JSON) before anything is opened
  // FLEETQ_METRICS_PORT: /metrics and /healthz (503 "starting" until attached below); a port in use is a ConfigError here.
  const endpoint = await startWorkerEndpoint(cfg, log);
  const paths = storePaths(cfg.root);
  await ensureLayout(paths);
  const swept = await sweepTemp(paths, cfg.tempMaxAgeMs);
  if (swept.length) log.info({ count: swept.length }, 'removed stale temp files');

  const connection = workerConnection(cfg.redisUrl);
  const lockRedis = workerConnection(cfg.redisUrl);
  const mutexRedis = lockConnection(cfg.redisUrl, cfg.prefix); // the pull lock's own client: keyPrefix "<prefix>:" keeps redis-semaphore's "mutex:" keys under the prefix
  const subscriber = workerConnection(cfg.redisUrl);
  for (const c of [connection, lockRedis, mutexRedis, subscriber]) c.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  await Promise.all([waitReady(connection, cfg.redisUrl), waitReady(lockRedis, cfg.redisUrl), waitReady(mutexRedis, cfg.redisUrl), waitReady(subscriber, cfg.redisUrl)]);

  const coordinator = new PullCoordinator({
    redis: mutexRedis,
    notifier: new ReleaseNotifier(subscriber),
    prefix: cfg.prefix,
    host: cfg.host,
    ttlMs: cfg.lockTtlMs,
    log,
  });

  const ensureDeps: EnsureDeps = {
    paths,
    references: new IndexReferences(),
    dispatcher,
    coordinator,
    qemuImg: cfg.qemuImg,
    maxImageSize: cfg.maxImageSize,
    downloadTimeoutMs: cfg.downloadTimeoutMs,
    minRate: cfg.minRate,
    rateWindowMs: cfg.rateWindowMs,
    userAgent: `fleetq/${VERSION}`,
    policy: { trustUrlCacheOverPin: cfg.unsafeLegacyUrlCache },
    imageAuth,
  };
  if (cfg.unsafeLegacyUrlCache) log.warn('FLEETQ_UNSAFE_LEGACY_URL_CACHE is on: pinned digests may be answered from a stale URL cache (cocoon#37). Tests only.');

  const metrics = new WorkerMetrics(cfg.host);
  const health = new StoreHealth();
  const workerOpts = (concurrency: number) => ({
    connection,
    prefix: cfg.prefix,
    concurrency,
    lockDuration: cfg.jobLockMs,
    stalledInterval: cfg.stalledIntervalMs,
    maxStalledCount: 2,
  });
  const workers: Worker[] = [];
  const producers: Queue[] = [];
  const shutdown = new AbortController(); // image jobs take no per-job signal (see createImageProcessor): this one cancels their pulls
  if (cfg.queues.includes('images')) {
    const images = new Worker(imageQueueName(cfg.host), createImageProcessor({ ...ensureDeps, host: cfg.host, log, metrics, health, storeFullRetryMs: cfg.storeFullRetryMs, shutdown: shutdown.signal }), workerOpts(cfg.concurrency));
    workers.push(images);
    pausePullsWhileFull(images, health, paths, cfg.heartbeatMs, log);
  }
  if (cfg.queues.includes('restores')) {
    // A restore whose base is missing adds an ensure-image job to this host's images queue.
    const images = new Queue(imageQueueName(cfg.host), { connection, ...queueOptions(cfg.prefix) });
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
    workers.push(new Worker(restoreQueueName(cfg.host), restoreProcessor, workerOpts(cfg.restoreConcurrency)));
  }
  // Dead letters: jobs that end in `failed` (retries exhausted or permanent), recorded when BullMQ reports them
  // (retried with backoff) and by a sweep of the failed sets (at start, every minute, soon after an error), so
  // a Redis refusal (OOM) or a crash in between loses none. See ops/dead-letters.ts.
  const hostMetrics = metrics.forHost(cfg.host);
  const deadLetters = new DeadLetterRecorder({
    redis: lockRedis,
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
  for (const w of workers) {
    w.on('error', (err) => {
      if (isRedisError(err)) hostMetrics.redisErrors.queue.inc();
      log.warn({ err: err.message, queue: w.name }, 'worker error');
    });
    w.on('failed', (job, err) => {
      if (!job) return;
      if (isRedisError(err)) {
        // Not the job's fault, but BullMQ has counted the attempt: say so loudly, and count it.
        hostMetrics.redisErrors.job.inc();
        log.error(
          { err: errorMessage(err), jobId: job.id, queue: w.name, attemptsMade: job.attemptsMade, attempts: job.opts.attempts ?? 1 },
          'job attempt failed on a Redis error (it used one of the job\'s attempts; if it is dead now, `fleetq dlq requeue` puts it back)',
        );
      }
      void deadLetters.record(job, err, w);
    });
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  deadLetters.start();
  const queues = workers.map((w) => w.name);

  // Host registry heartbeat and metrics snapshot.
  const instance = newInstanceId();
  const startedAt = Date.now();
  const beat = async () => {
    await announce(lockRedis, cfg.prefix, {
      instance,
      host: cfg.host,
      version: VERSION,
      pid: process.pid,
      concurrency: cfg.concurrency,
      restoreConcurrency: cfg.restoreConcurrency,
      queues,
      startedAt,
      health: health.state,
      healthDetail: health.detail,
    });
    await lockRedis.set(registryKeys(cfg.prefix).metrics(cfg.host, instance), await metrics.snapshot(), 'PX', Math.max(3_600_000, cfg.hostDownAfterMs * 10));
  };
  await beat();
  endpoint?.attach({
    host: cfg.host,
    metrics,
    health,
    paths,
    redis: connection,
    queues: workers.map((w) => ({ kind: w.name === imageQueueName(cfg.host) ? 'images' : 'restores', queue: w })),
  });
  const heartbeat = setInterval(() => {
    beat().catch((err) => log.warn({ err: errorMessage(err) }, 'heartbeat failed'));
  }, cfg.heartbeatMs);
  heartbeat.unref();
  log.info(
    { queues, concurrency: cfg.concurrency, restoreConcurrency: cfg.restoreConcurrency, root: cfg.root, redis: redactRedisUrl(cfg.redisUrl), prefix: cfg.prefix, version: VERSION, metrics: endpoint?.url },
    'worker started',
  );

  let closing: Promise<void> | undefined;
  const close = (graceMs = cfg.shutdownGraceMs) =>
    (closing ??= (async () => {
      const closed = Promise.all(workers.map((w) => w.close())).then(() => true);
      const inTime = await Promise.race([closed, sleep(graceMs).then(() => false)]);
      if (!inTime) {
        log.warn({ graceMs }, 'jobs still running after the grace period: aborting them');
        for (const w of workers) w.cancelAllJobs('worker shutting down');
        shutdown.abort('worker shutting down');
        await Promise.race([closed, sleep(10_000)]);
      }
      await Promise.all(producers.map((q) => q.close().catch(() => {})));
      await deadLetters.close();
      clearInterval(heartbeat);
      await beat().catch(() => {}); // final metrics
      await withdraw(lockRedis, cfg.prefix, cfg.host, instance).catch(() => {});
      await dispatcher.close().catch(() => {});
      await endpoint?.close().catch(() => {});
      await Promise.all([lockRedis.quit(), mutexRedis.quit(), subscriber.quit(), connection.quit()].map((p) => p.catch(() => {})));
      log.info('worker stopped');
    })());
  return { close, queues };
}

/**
 * Disk full: stop taking pull jobs (restores of present images go on), probe
 * the store every `everyMs`, and resume once a probe write succeeds.
 */
function pausePullsWhileFull(images: Worker, health: StoreHealth, paths: StorePaths, everyMs: number, log: Logger): void {
  let probing: NodeJS.Timeout | undefined;
  health.onChange((state) => {
    if (state !== 'disk-full' || probing) return;
    images.pause(true).catch(() => {});
    log.warn('store full: pulls paused until space is back');
    probing = setInterval(() => {
      void storeAcceptsWrites(paths, health.needBytes).then((ok) => {
        if (!ok || !probing) return;
        clearInterval(probing);
        probing = undefined;
        health.set('ok');
        images.resume();
        log.info('store has space again: pulls resumed');
      });
    }, everyMs);
    probing.unref();
  });
}
