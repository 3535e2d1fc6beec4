/**
 * Every Redis key and channel the lock module uses is built here. Pure.
 *
 * The pull lock is a redis-semaphore Mutex, which always stores its key as
 * `mutex:<key>` and has no prefix option. To keep it under fleetq's prefix
 * (an ACL of `~fleetq:*` must cover every key), the Mutex runs on a client of
 * its own whose ioredis `keyPrefix` is `<prefix>:` (lock-connection.ts;
 * never a BullMQ connection: BullMQ refuses a keyPrefix). So:
 *   - `pullLockKey(host, key)` is what the Mutex is given: `pull-lock:{<host>}:digest:<hex>`;
 *   - `mutexRedisKey(…)` is what redis-semaphore asks Redis for, before the client's keyPrefix;
 *   - `pullLockRedisKey(prefix, host, key)` is the key as stored: `<prefix>:mutex:pull-lock:{<host>}:digest:<hex>`.
 * The `{<host>}` hash tag puts a host's locks in the Cluster slot of its
 * queues (a lock is one key, so any slot would do; this one lives and fails
 * over with the host's jobs).
 * The release channel is not a key (ioredis does not prefix channels): it
 * carries the prefix itself, `<prefix>:pull-released:<host>:…`. Classic
 * PUBLISH/SUBSCRIBE: on a Cluster a message reaches every node, so a follower
 * connected to any node hears it (sharded pub/sub is not used: with ioredis 5
 * a subscription dies silently on a failover); the TTL wait stays the
 * fallback for a message lost in a failover.
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../lib/digest.js';

/** What a pull is serialised on: the pinned digest, else the URL. */
export type PullKey =
  | {
      kind: 'digest';
      digest: Digest;
      /**
       * The URL this job fetches from. It does not change the Redis lock (one
       * download per (host, digest) at a time) but it does split in-process
       * flights: a digest mismatch is a verdict on (URL, digest), so a job
       * whose URL serves the right bytes must not share another URL's failure.
       */
      url?: string | undefined;
    }
  | { kind: 'url'; url: string };

const urlHash = (url: string) => createHash('sha256').update(url).digest('hex');

function keyPart(key: PullKey): string {
  return key.kind === 'digest' ? `digest:${key.digest.hex}` : `url:${urlHash(key.url)}`;
}

/** The ioredis `keyPrefix` of the lock client: `<prefix>:`. */
export function lockKeyPrefix(prefix: string): string {
  return `${prefix}:`;
}

/** The Mutex's key, relative to the lock client's keyPrefix (redis-semaphore prepends "mutex:"). */
export function pullLockKey(host: string, key: PullKey): string {
  return `pull-lock:{${host}}:${keyPart(key)}`;
}

/** The key redis-semaphore's Mutex sends (it prepends "mutex:"), before the client's keyPrefix. */
export function mutexRedisKey(lockKey: string): string {
  return `mutex:${lockKey}`;
}

/** The pull lock's key as stored in Redis: `<prefix>:mutex:pull-lock:{<host>}:…` (read it with a plain client). */
export function pullLockRedisKey(prefix: string, host: string, key: PullKey): string {
  return `${lockKeyPrefix(prefix)}${mutexRedisKey(pullLockKey(host, key))}`;
}

/** Pub/sub channel on which a leader announces that it released the lock. */
export function pullReleasedChannel(prefix: string, host: string, key: PullKey): string {
  return `${prefix}:pull-released:${host}:${keyPart(key)}`;
}

/** In-process singleflight key: per digest and URL (see PullKey.url). */
export function flightKey(host: string, key: PullKey): string {
  return key.kind === 'digest' && key.url ? `${host}|${keyPart(key)}|u:${urlHash(key.url)}` : `${host}|${keyPart(key)}`;
}
