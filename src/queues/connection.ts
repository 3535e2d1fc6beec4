/** ioredis connections, configured the way BullMQ wants them. */
import { Redis, type RedisOptions } from 'ioredis';

/** For workers and blocking clients: BullMQ requires maxRetriesPerRequest: null. */
export function workerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
}

/** For producers and CLI commands: fail fast instead of queueing commands while Redis is away. */
export function producerConnection(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    connectTimeout: 5_000,
    retryStrategy: (times) => (times > 3 ? null : 200 * times),
    ...extra,
  });
}

/** Wait until the connection is ready or fail with a message naming the URL. */
export async function waitReady(redis: Redis, url: string): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`cannot connect to Redis at ${redactRedisUrl(url)} (set REDIS_URL)`));
    };
    const cleanup = () => {
      redis.off('ready', onReady);
      redis.off('end', onEnd);
    };
    redis.once('ready', onReady);
    redis.once('end', onEnd);
  });
}

export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
