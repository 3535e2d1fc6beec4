/**
 * A worker's four Redis clients, each with one job, ready before anything
 * uses them, and closed together (all from redis/connect.ts, so the same on a
 * single Redis, Sentinel and Cluster):
 *   - queue: the BullMQ Workers and the restore side's image-queue producer;
 *   - lock: registry heartbeat, metrics snapshots, dead letters;
 *   - mutex: the pull lock's own client, keyPrefix "<prefix>:" so that
 *     redis-semaphore's "mutex:" keys stay under the prefix;
 *   - subscriber: pub/sub of lock releases (a subscribed client does nothing else).
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { connectRedis, type RedisClient, waitReady } from '../redis/connect.js';
import type { RedisConfig } from '../redis/target.js';

export interface WorkerConnections {
  queue: RedisClient;
  lock: RedisClient;
  mutex: RedisClient;
  subscriber: RedisClient;
  /** QUIT all four (errors ignored: the worker is stopping). */
  close(): Promise<void>;
}

export async function openConnections(cfg: RedisConfig & Pick<Config, 'prefix'>, log: Logger): Promise<WorkerConnections> {
  const queue = connectRedis(cfg, 'worker');
  const lock = connectRedis(cfg, 'worker');
  const mutex = connectRedis(cfg, 'mutex');
  const subscriber = connectRedis(cfg, 'subscriber');
  const all = [queue, lock, mutex, subscriber];
  for (const c of all) c.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  try {
    await Promise.all(all.map((c) => waitReady(c, cfg)));
  } catch (err) {
    for (const c of all) c.disconnect();
    throw err;
  }
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
