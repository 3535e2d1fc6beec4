/**
 * Composition root of a host worker: connections, lock coordinator, HTTP
 * client, the BullMQ worker(s), and orderly shutdown.
 */
import { Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createHttpClient } from '../fetch/http-client.js';
import { PullCoordinator } from '../lock/pull-coordinator.js';
import { ReleaseNotifier } from '../lock/release-notifier.js';
import { sleep } from '../lib/shutdown.js';
import { workerConnection, waitReady, redactRedisUrl } from '../queues/connection.js';
import { imageQueueName } from '../queues/names.js';
import { ensureLayout, sweepTemp } from '../store/blob-store.js';
import { storePaths } from '../store/paths.js';
import { VERSION } from '../version.js';
import { createImageProcessor } from './image-processor.js';

export interface RunningWorker {
  /** Stop taking jobs, let running ones finish for up to `graceMs`, then abort them. */
  close(graceMs?: number): Promise<void>;
  readonly queues: string[];
}

export async function runWorker(cfg: Config, log: Logger): Promise<RunningWorker> {
  const paths = storePaths(cfg.root);
  await ensureLayout(paths);
  const swept = await sweepTemp(paths, cfg.tempMaxAgeMs);
  if (swept.length) log.info({ count: swept.length }, 'removed stale temp files');

  const connection = workerConnection(cfg.redisUrl);
  const lockRedis = workerConnection(cfg.redisUrl);
  const subscriber = workerConnection(cfg.redisUrl);
  for (const c of [connection, lockRedis, subscriber]) c.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  await Promise.all([waitReady(connection, cfg.redisUrl), waitReady(lockRedis, cfg.redisUrl), waitReady(subscriber, cfg.redisUrl)]);

  const dispatcher = createHttpClient({ idleTimeoutMs: cfg.downloadIdleTimeoutMs, maxRedirects: cfg.maxRedirects });
  const coordinator = new PullCoordinator({
    redis: lockRedis,
    notifier: new ReleaseNotifier(subscriber),
    prefix: cfg.prefix,
    host: cfg.host,
    ttlMs: cfg.lockTtlMs,
    log,
  });

  const imageQueue = imageQueueName(cfg.host);
  const imageWorker = new Worker(
    imageQueue,
    createImageProcessor({
      host: cfg.host,
      log,
      paths,
      dispatcher,
      coordinator,
      qemuImg: cfg.qemuImg,
      maxImageSize: cfg.maxImageSize,
      downloadTimeoutMs: cfg.downloadTimeoutMs,
      userAgent: `fleetq/${VERSION}`,
    }),
    {
      connection,
      prefix: cfg.prefix,
      concurrency: cfg.concurrency,
      lockDuration: cfg.jobLockMs,
      stalledInterval: cfg.stalledIntervalMs,
      maxStalledCount: 2,
      autorun: true,
    },
  );
  imageWorker.on('error', (err) => log.warn({ err: err.message }, 'worker error'));
  await imageWorker.waitUntilReady();
  log.info(
    { queue: imageQueue, concurrency: cfg.concurrency, root: cfg.root, redis: redactRedisUrl(cfg.redisUrl), prefix: cfg.prefix, version: VERSION },
    'worker started',
  );

  let closing: Promise<void> | undefined;
  const close = (graceMs = cfg.shutdownGraceMs) =>
    (closing ??= (async () => {
      const workers = [imageWorker];
      const closed = Promise.all(workers.map((w) => w.close())).then(() => true);
      const inTime = await Promise.race([closed, sleep(graceMs).then(() => false)]);
      if (!inTime) {
        log.warn({ graceMs }, 'jobs still running after the grace period: aborting them');
        for (const w of workers) w.cancelAllJobs('worker shutting down');
        await Promise.race([closed, sleep(10_000)]);
      }
      await dispatcher.close().catch(() => {});
      await Promise.all([lockRedis.quit(), subscriber.quit(), connection.quit()].map((p) => p.catch(() => {})));
      log.info('worker stopped');
    })());
  return { close, queues: [imageQueue] };
}
