/** Shared plumbing for CLI commands: config from env + flags, a queue handle, clean teardown. */
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadConfig, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { producerConnection, waitReady, workerConnection } from '../queues/connection.js';

export function cliConfig(overrides: ConfigOverrides = {}): Config {
  return loadConfig(process.env, overrides);
}

export interface QueueHandle {
  queue: Queue;
  events?: QueueEvents;
  redis: Redis;
  close(): Promise<void>;
}

export async function openQueue(cfg: Config, name: string, withEvents = false): Promise<QueueHandle> {
  const redis = producerConnection(cfg.redisUrl);
  redis.on('error', () => {});
  await waitReady(redis, cfg.redisUrl);
  const queue = new Queue(name, { connection: redis, prefix: cfg.prefix });
  let events: QueueEvents | undefined;
  let eventsRedis: Redis | undefined;
  if (withEvents) {
    eventsRedis = workerConnection(cfg.redisUrl);
    eventsRedis.on('error', () => {});
    events = new QueueEvents(name, { connection: eventsRedis, prefix: cfg.prefix });
    await events.waitUntilReady();
  }
  return {
    queue,
    events,
    redis,
    async close() {
      await events?.close().catch(() => {});
      await queue.close().catch(() => {});
      await eventsRedis?.quit().catch(() => {});
      await redis.quit().catch(() => {});
    },
  };
}
