/**
 * The Redis side of what this host holds (holders.ts): its holder entries,
 * written under its host id with its worker instance and advertised peer
 * URL, and its serving load (streaming peer responses), sent when it changes,
 * one write at a time (the latest value wins); and a freed stream slot, when
 * someone was turned away for it.
 */
import type { RedisClient as Redis } from '../redis/connect.js';
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import type { Digest } from '../lib/digest.js';
import { addHolder, holderKeys, removeHolder, setServingLoad } from './holders.js';
import type { HolderAnnouncer } from './local-blobs.js';

export interface AnnouncerOptions {
  redis: Redis;
  prefix: string;
  host: string;
  instance: string;
  peerUrl: string;
  /** FLEETQ_PEER_MAX_STREAMS, put into every entry (receivers prefer holders with a free slot). */
  maxStreams?: number | undefined;
}

export function redisAnnouncer(o: AnnouncerOptions): HolderAnnouncer {
  const { redis, prefix, host, instance, peerUrl } = o;
  const limit = o.maxStreams === undefined ? {} : { maxStreams: o.maxStreams };
  return {
    complete: (digest, size) => addHolder(redis, prefix, digest, host, { state: 'complete', peerUrl, instance, size, at: Date.now(), ...limit }),
    partial: (digest, size, chain) => addHolder(redis, prefix, digest, host, { state: 'partial', peerUrl, instance, size, at: Date.now(), chain: chain.slice(0, 64), ...limit }),
    removePartial: (digest) => removeHolder(redis, prefix, digest, host, { onlyPartialOf: instance }),
    // A second worker process of this host may be downloading it right now: its partial entry stays.
    remove: (digest) => removeHolder(redis, prefix, digest, host, { unlessPartialOfOther: instance }),
  };
}

/** A callback for the blob server's open-response count: coalesced writes of this host's serving load. */
export function servingLoadReporter(redis: Redis, prefix: string, host: string, log: Logger): (open: number) => void {
  let latest = 0;
  let sent = -1; // the first report is always sent (a restarted worker resets its old load)
  let busy = false;
  const flush = async () => {
    busy = true;
    try {
      while (sent !== latest) {
        const n = latest;
        await setServingLoad(redis, prefix, host, n);
        sent = n;
      }
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'peer: serving load not recorded');
    } finally {
      busy = false;
    }
  };
  return (open) => {
    latest = open;
    if (!busy) void flush();
  };
}

/**
 * The blob server's `onFreed`: a stream slot freed after a request for the
 * digest was turned away (busy), so the hosts waiting for a free holder are
 * told on the digest's holders-changed channel (a hint, like every message
 * there: they also look again when their busy marks expire).
 */
export function slotFreedPublisher(redis: Redis, prefix: string, host: string, log: Logger): (digest: Digest) => void {
  return (digest) => {
    redis.publish(holderKeys(prefix).changed(digest), host).catch((err: unknown) => log.debug({ digest: digest.value, err: errorMessage(err) }, 'peer: freed slot not published'));
  };
}
