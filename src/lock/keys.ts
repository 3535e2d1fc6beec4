/** Every Redis key and channel the lock module uses is built here. Pure. */
import { createHash } from 'node:crypto';

export interface PullKey {
  kind: 'digest' | 'url';
  value: string;
}

function keyPart(key: PullKey): string {
  return key.kind === 'digest' ? `digest:${key.value.slice('sha256:'.length)}` : `url:${createHash('sha256').update(key.value).digest('hex')}`;
}

/** The mutex key (redis-semaphore prepends "mutex:"). */
export function pullLockKey(prefix: string, host: string, key: PullKey): string {
  return `${prefix}:pull-lock:${host}:${keyPart(key)}`;
}

/** Pub/sub channel on which a leader announces that it released the lock. */
export function pullReleasedChannel(prefix: string, host: string, key: PullKey): string {
  return `${prefix}:pull-released:${host}:${keyPart(key)}`;
}

/** In-process singleflight key. */
export function flightKey(host: string, key: PullKey): string {
  return `${host}|${keyPart(key)}`;
}
