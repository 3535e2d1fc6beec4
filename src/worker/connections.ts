/**
 * A worker's four Redis clients, each with one job, ready before anything
 * uses them, and closed together:
 *   - queue: the BullMQ Workers and the restore side's image-queue producer;
 *   - lock: registry heartbeat, metrics snapshots, dead letters;
 *   - mutex: the pull lock's own client, keyPrefix "<prefix>:" so that
 *     redis-semaphore's "mutex:" keys stay under the prefix;
 *   - subscriber: pub/sub of lock releases (a subscribed client does nothing else).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { lockConnection } from '../lock/lock-connection.js';
import { waitReady, workerConnection } from '../queues/connection.js';

export interface WorkerConnections {
  queue: Redis;
  lock: Redis;
  mutex: Redis;
  subscriber: Redis;
  /** QUIT all four (errors ignored: the worker is stopping). */
  close(): Promise<void>;
}

export async function openConnections(cfg: Pick<Config, 'redisUrl' | 'prefix'>, log: Logger): Promise<WorkerConnections> {
  const queue = workerConnection(cfg.redisUrl);
  const lock = workerConnection(cfg.redisUrl);
  const mutex = lockConnection(cfg.redisUrl, cfg.prefix);
  const subscriber = workerConnection(cfg.redisUrl);
  const all = [queue, lock, mutex, subscriber];
  for (const c of all) c.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  await Promise.all(all.map((c) => waitReady(c, cfg.redisUrl)));
  return {
    queue,
    lock,
    mutex,
    subscriber,
    async close() {
      await Promise.all(all.map((c) => c.quit().catch(() => {})));
    },
  };
}
