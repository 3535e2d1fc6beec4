/**
 * The pull lock's own Redis client: ioredis `keyPrefix` = `<prefix>:`, so the
 * keys redis-semaphore writes (`mutex:…`) land under fleetq's prefix
 * (`fleetq:mutex:pull-lock:…`). Never hand this client to BullMQ (it refuses
 * a keyPrefix), and never use it for keys that already carry the prefix.
 */
import type { Redis, RedisOptions } from 'ioredis';
import { workerConnection } from '../queues/connection.js';
import { lockKeyPrefix } from './keys.js';

export function lockConnection(url: string, prefix: string, extra: RedisOptions = {}): Redis {
  return workerConnection(url, { ...extra, keyPrefix: lockKeyPrefix(prefix) });
}

/** Refuse a client whose keyPrefix is not `<prefix>:`: its locks would live outside the prefix (or twice under it). */
export function assertLockClient(redis: Redis, prefix: string): void {
  const have = redis.options.keyPrefix ?? '';
  if (have !== lockKeyPrefix(prefix)) {
    throw new Error(`the pull lock needs its own Redis client with keyPrefix ${JSON.stringify(lockKeyPrefix(prefix))} (see lock/lock-connection.ts); got ${JSON.stringify(have)}`);
  }
}
