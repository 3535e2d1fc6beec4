/**
 * The pull lock's own Redis client is `connectRedis(cfg, 'mutex')`
 * (redis/connect.ts): ioredis `keyPrefix` = `<prefix>:`, so the keys
 * redis-semaphore writes (`mutex:…`) land under fleetq's prefix
 * (`fleetq:mutex:pull-lock:{<host>}:…`), on a single Redis, a Sentinel master
 * or a Cluster alike. Never hand that client to BullMQ (it refuses a
 * keyPrefix), and never use it for keys that already carry the prefix.
 */
import type { RedisClient } from '../redis/connect.js';
import { lockKeyPrefix } from './keys.js';

/** Refuse a client whose keyPrefix is not `<prefix>:`: its locks would live outside the prefix (or twice under it). */
export function assertLockClient(redis: RedisClient, prefix: string): void {
  const have = redis.options.keyPrefix ?? '';
  if (have !== lockKeyPrefix(prefix)) {
    throw new Error(`the pull lock needs its own Redis client with keyPrefix ${JSON.stringify(lockKeyPrefix(prefix))} (connectRedis(cfg, 'mutex')); got ${JSON.stringify(have)}`);
  }
}
