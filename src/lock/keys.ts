/** Every Redis key and channel the lock module uses is built here. Pure. */
import { createHash } from 'node:crypto';

export interface PullKey {
  kind: 'digest' | 'url';
  value: string;
  /**
   * For a digest key: the URL this job fetches from. It does not change the
   * Redis lock (one download per (host, digest) at a time) but it does split
   * in-process flights: a digest mismatch is a verdict on (URL, digest), so a
   * job whose URL serves the right bytes must not share another URL's failure.
   */
  url?: string | undefined;
}

const urlHash = (url: string) => createHash('sha256').update(url).digest('hex');

function keyPart(key: PullKey): string {
  return key.kind === 'digest' ? `digest:${key.value.slice('sha256:'.length)}` : `url:${urlHash(key.value)}`;
}

/** The mutex key (redis-semaphore prepends "mutex:"). */
export function pullLockKey(prefix: string, host: string, key: PullKey): string {
  return `${prefix}:pull-lock:${host}:${keyPart(key)}`;
}

/** Pub/sub channel on which a leader announces that it released the lock. */
export function pullReleasedChannel(prefix: string, host: string, key: PullKey): string {
  return `${prefix}:pull-released:${host}:${keyPart(key)}`;
}

/** In-process singleflight key: per digest and URL (see PullKey.url). */
export function flightKey(host: string, key: PullKey): string {
  return key.kind === 'digest' && key.url ? `${host}|${keyPart(key)}|u:${urlHash(key.url)}` : `${host}|${keyPart(key)}`;
}

/** The key redis-semaphore's Mutex actually sets (it prepends "mutex:"). */
export function mutexRedisKey(lockKey: string): string {
  return `mutex:${lockKey}`;
}
