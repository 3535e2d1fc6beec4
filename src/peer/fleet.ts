/**
 * Fetching from the fleet: who holds a pinned digest, the fleet-wide
 * back-to-source cap, and what a peer that failed is reported as.
 *
 *   - holders: the live holder entries (holders.ts) this host may use — not
 *     itself, not a peer that failed for this pull, not a partial holder
 *     whose bytes come through this host — picked at random weighted by
 *     serving load, those with a free stream slot first, then complete ones
 *     (`pickHolder`); one that answered 503 (busy) is skipped for a moment,
 *     never excluded, and counted apart from failures;
 *   - back to source: a redis-semaphore `Semaphore` with
 *     FLEETQ_UPSTREAM_PER_DIGEST permits on `<prefix>:semaphore:b2s:<hex>`
 *     (through the pull lock's client, whose keyPrefix is `<prefix>:`),
 *     refreshed while held; a lost permit aborts the upstream download.
 *     Releasing one publishes on the digest's holders-changed channel, so
 *     hosts waiting for a holder try for the permit again;
 *   - waiting: on the holders-changed channel (subscribed before looking, so
 *     nothing published after the look is missed), and at least once per lock
 *     TTL anyway: pub/sub drops messages on failover.
 *
 * Only hosts that serve blobs (FLEETQ_PEER_LISTEN) take part in the cap: a
 * host that cannot serve what it downloads would make the others wait for
 * nothing, so it fetches from a holder when there is one and otherwise goes
 * upstream on its own.
 */
import type { RedisClient as Redis } from '../redis/connect.js';
import type { Logger } from 'pino';
import { Semaphore } from 'redis-semaphore';
import type { Dispatcher } from 'undici';
import { DestinationRefusedError, DownloadStalledError, DownloadTimeoutError, HttpStatusError, NetworkError, RangeResponseError, TruncatedBodyError } from '../fetch/fetch-errors.js';
import type { Digest } from '../lib/digest.js';
import { errorMessage } from '../lib/errors.js';
import { backToSourceKey } from '../lock/keys.js';
import { LockLostError } from '../lock/lock-errors.js';
import type { ReleaseNotifier, ReleaseWaiter } from '../lock/release-notifier.js';
import { type Holder, holderKeys, listHolders, pickHolder, usableBy } from './holders.js';

/** Why a peer was skipped (the `reason` label of fleetq_peer_errors_total). */
export const PEER_ERROR_REASONS = ['wrong-bytes', 'died', 'refused', 'not-found', 'timeout'] as const;
export type PeerErrorReason = (typeof PEER_ERROR_REASONS)[number];

/** What the pull reports about its sources (worker-metrics.ts implements it). */
export interface PullMetrics {
  bytes(source: 'upstream' | 'peer', digest: string, n: number): void;
  peerError(peer: string, reason: PeerErrorReason): void;
  /** A peer answered 503 (busy: all its stream slots taken); not a failure, the pull tries another holder. */
  peerBusy(peer: string): void;
  /** A pull waited for a holder or a back-to-source permit this long. */
  backToSourceWait(seconds: number): void;
}

export interface FleetOptions {
  /** Plain client: holder lists, publishes. */
  redis: Redis;
  /** The pull lock's client (keyPrefix `<prefix>:`): the back-to-source Semaphore. */
  mutex: Redis;
  /** Subscriptions to holders-changed channels. */
  notifier: ReleaseNotifier;
  prefix: string;
  host: string;
  /** The fleet token, sent as `Authorization: Bearer …`. */
  token: string;
  /** The peer client (peer-client.ts): no redirects. */
  dispatcher: Dispatcher;
  /** FLEETQ_UPSTREAM_PER_DIGEST. */
  upstreamPerDigest: number;
  /** FLEETQ_LOCK_TTL: the permit's TTL, and how often a waiting host looks again without a message. */
  lockTtlMs: number;
  /** FLEETQ_HOST_DOWN_AFTER: holders silent for longer are ignored. */
  downAfterMs: number;
  /** This host serves blobs (FLEETQ_PEER_LISTEN): it takes part in the back-to-source cap. */
  serves: boolean;
  log: Logger;
  metrics?: PullMetrics | undefined;
}

export interface Permit {
  /** Aborted (with a LockLostError) when the permit is lost. */
  signal: AbortSignal;
  release(): Promise<void>;
}

export class FleetPeers {
  readonly authHeaders: Readonly<Record<string, string>>;

  constructor(readonly o: FleetOptions) {
    this.authHeaders = Object.freeze({ authorization: `Bearer ${o.token}` });
  }

  get dispatcher(): Dispatcher {
    return this.o.dispatcher;
  }

  get serves(): boolean {
    return this.o.serves;
  }

  get perDigest(): number {
    return this.o.upstreamPerDigest;
  }

  get host(): string {
    return this.o.host;
  }

  blobUrl(holder: Holder, digest: Digest): string {
    return peerBlobUrl(holder.peerUrl, digest)!;
  }

  /** A live holder this host may fetch from, or undefined. A Redis error counts as none (the pull goes on upstream). */
  async pick(digest: Digest, excluded: ReadonlySet<string>): Promise<Holder | undefined> {
    return (await this.look(digest, excluded)).holder;
  }

  /**
   * A live holder this host may fetch from, skipping `excluded` (failed for
   * this pull) and `busy` (said 503 a moment ago); `busy` in the answer: how
   * many usable holders were skipped only for being busy (then the pull waits
   * for one rather than going upstream). A Redis error counts as no holder.
   */
  async look(digest: Digest, excluded: ReadonlySet<string>, busy: ReadonlySet<string> = new Set()): Promise<{ holder: Holder | undefined; busy: number }> {
    try {
      const holders = await listHolders(this.o.redis, this.o.prefix, digest, { downAfterMs: this.o.downAfterMs });
      // An entry whose address is not a plain http(s) origin is never sent the token.
      const usable = usableBy(holders, this.o.host).filter((h) => !excluded.has(h.host) && peerBlobUrl(h.peerUrl, digest) !== undefined);
      return { holder: pickHolder(usable, busy), busy: usable.filter((h) => busy.has(h.host)).length };
    } catch (err) {
      this.o.log.warn({ digest: digest.value, err: errorMessage(err) }, 'peer: holders could not be listed');
      return { holder: undefined, busy: 0 };
    }
  }

  /** A peer said busy: counted (not a failure), logged at debug. */
  reportBusy(peer: string, digest: Digest): void {
    this.o.metrics?.peerBusy(peer);
    this.o.log.debug({ peer, digest: digest.value }, `peer ${peer} busy for ${digest.value}: trying another holder`);
  }

  /** Subscribe to the digest's holders-changed channel (await `ready` before looking). */
  watch(digest: Digest): ReleaseWaiter {
    return this.o.notifier.wait(holderKeys(this.o.prefix).changed(digest));
  }

  /** One of the digest's back-to-source permits, if one is free. */
  async tryPermit(digest: Digest): Promise<Permit | undefined> {
    const { mutex, redis, prefix, lockTtlMs, upstreamPerDigest, log } = this.o;
    const key = backToSourceKey(digest);
    const lost = new AbortController();
    const sem = new Semaphore(mutex, key, upstreamPerDigest, {
      lockTimeout: lockTtlMs,
      refreshInterval: Math.max(100, Math.floor(lockTtlMs / 3)),
      acquireAttemptsLimit: 1,
      onLockLost: (err) => lost.abort(new LockLostError(`lost the back-to-source permit ${key}: ${err.message}`, { cause: err })),
    });
    if (!(await sem.tryAcquire())) return undefined;
    let released = false;
    return {
      signal: lost.signal,
      release: async () => {
        if (released) return;
        released = true;
        await sem.release().catch((err) => log.warn({ err: errorMessage(err), key }, 'back-to-source permit release failed'));
        await redis.publish(holderKeys(prefix).changed(digest), 'released').catch(() => {});
      },
    };
  }

  /** Sleep until the channel says something ('changed'), or the lock TTL or `maxMs` passes ('timeout'). */
  waitForChange(waiter: ReleaseWaiter, maxMs: number, signal: AbortSignal): Promise<'changed' | 'timeout'> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        cleanup();
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        cleanup();
        resolve('timeout');
      }, Math.max(0, Math.min(this.o.lockTtlMs, maxMs)));
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      waiter.released.then(() => {
        cleanup();
        resolve('changed');
      });
    });
  }

  /** A peer was skipped for this digest: said loudly (host and digest), and counted. */
  report(peer: string, digest: Digest, reason: PeerErrorReason, detail: string): void {
    this.o.metrics?.peerError(peer, reason);
    this.o.log.warn({ peer, digest: digest.value, reason, detail }, `peer ${peer} skipped for ${digest.value}: ${reason}`);
  }
}

/**
 * `<peerUrl>/blobs/<digest>` when `peerUrl` is an http(s) origin as the
 * registry holds them (`http(s)://host:port`, no credentials, path, query or
 * fragment); undefined for anything else. Pure.
 */
export function peerBlobUrl(peerUrl: string, digest: Digest): string | undefined {
  let u: URL;
  try {
    u = new URL(peerUrl);
  } catch {
    return undefined;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return undefined;
  return `${u.origin}/blobs/${digest.value}`;
}

/**
 * What a failed peer fetch says about the peer, or undefined when it is not
 * the peer's doing (aborted, store errors, bytes that did not verify: those
 * are decided by the pull). `phase`: before the body (connect, status) or in it.
 */
export function peerErrorReason(err: unknown, phase: 'request' | 'body'): PeerErrorReason | undefined {
  if (err instanceof HttpStatusError) return err.statusCode === 404 || err.statusCode === 410 ? 'not-found' : 'refused';
  if (err instanceof RangeResponseError || err instanceof DestinationRefusedError) return 'refused';
  if (err instanceof DownloadTimeoutError || err instanceof DownloadStalledError) return 'timeout';
  if (err instanceof TruncatedBodyError) return 'died';
  if (err instanceof NetworkError) return phase === 'body' ? 'died' : 'refused';
  return undefined;
}

/** The peer answered 503: all its stream slots are taken (blob-server.ts). Not a failure of the peer. */
export function isPeerBusy(err: unknown): boolean {
  return err instanceof HttpStatusError && err.statusCode === 503;
}
