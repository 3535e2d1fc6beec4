/** ioredis connections, configured the way BullMQ wants them. */
import { Redis, type RedisOptions } from 'ioredis';
import { ConfigError } from '../lib/errors.js';

/**
 * The database index a Redis URL names: `redis://h:6379/3` (or `?db=3`) → 3,
 * none → 0. ioredis selects it on connect, but when SELECT fails (`/99` on a
 * server with 16 databases, `/abc`) it only emits an error and carries on in
 * database 0: so the index is checked here, and selected in `waitReady`,
 * whose failure stops the command instead.
 */
export function redisDbIndex(url: string): number {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`invalid REDIS_URL: not a URL (expected redis://host:port[/db])`, 'REDIS_URL');
  }
  const path = u.pathname.replace(/^\//, '');
  const query = u.searchParams.get('db');
  if (path && query !== null && path !== query) {
    throw new ConfigError(`invalid REDIS_URL: the database is given twice (/${path} and ?db=${query})`, 'REDIS_URL');
  }
  const raw = path || query || '0';
  if (!/^\d{1,9}$/.test(raw)) {
    throw new ConfigError(`invalid REDIS_URL: the database index must be a whole number, as in redis://host:6379/3 (got "/${raw.slice(0, 20)}")`, 'REDIS_URL');
  }
  return Number(raw);
}

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

/**
 * Wait until the connection is ready or fail with a message naming the URL;
 * then make sure it uses the URL's database (a ConfigError when that
 * database does not exist, instead of silently using database 0).
 */
export async function waitReady(redis: Redis, url: string): Promise<void> {
  let db: number;
  try {
    db = redisDbIndex(url);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  if (redis.status !== 'ready') {
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
  if (db !== 0) {
    try {
      // Selected again on purpose: ioredis's own SELECT at connect time swallows its failure.
      await redis.select(db);
    } catch (err) {
      redis.disconnect(); // unusable: it would work in database 0
      throw new ConfigError(`invalid REDIS_URL: Redis at ${redactRedisUrl(url)} refused database ${db} (${(err as Error).message})`, 'REDIS_URL');
    }
  }
}

export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
