/**
 * Who downloads? One leader per (host, digest-or-URL):
 *   - inside a process, concurrent callers with the same key share one flight;
 *   - across processes, a redis-semaphore Mutex elects the leader; its TTL is
 *     refreshed while the work runs and a lost lock aborts the work;
 *   - followers do not spin: they subscribe to a "released" channel, sleep
 *     until the leader publishes (or the TTL passes, for a crashed leader), then
 *     re-check the store.
 */
import type { RedisClient } from '../redis/connect.js';
import type { Logger } from 'pino';
import { Mutex } from 'redis-semaphore';
import { errorMessage } from '../lib/errors.js';
import { flightKey, mutexRedisKey, type PullKey, pullLockKey, pullReleasedChannel } from './keys.js';
import { assertLockClient } from './lock-connection.js';
import { LockLostError } from './lock-errors.js';
import type { ReleaseNotifier } from './release-notifier.js';

export interface CoordinatorOptions {
  /**
   * The lock's own client, with ioredis keyPrefix `<prefix>:` (`lockConnection`):
   * the Mutex, its fence GET and the release PUBLISH all go through it, so the
   * lock key is `<prefix>:mutex:pull-lock:…`. Checked at construction.
   */
  redis: RedisClient;
  notifier: ReleaseNotifier;
  prefix: string;
  host: string;
  ttlMs: number;
  log: Logger;
}

export interface RunSpec<R> {
  key: PullKey;
  /** Returns a result when the work is already done (by someone else). */
  recheck: () => Promise<R | undefined>;
  /**
   * The work, run only by the leader while it holds the lock. `fence()` says,
   * with a Redis round trip, whether the lock is still this leader's: call it
   * inside the critical section of a write that must not land after a newer
   * leader's (a leader paused past the TTL may not notice in time otherwise).
   */
  lead: (signal: AbortSignal, fence: () => Promise<boolean>) => Promise<R>;
  signal?: AbortSignal | undefined;
}

export interface RunOutcome<R> {
  result: R;
  role: 'leader' | 'follower';
  lockWaitMs: number;
}

export class PullCoordinator {
  private readonly flights = new Map<string, Promise<RunOutcome<unknown>>>();

  constructor(private readonly opts: CoordinatorOptions) {
    assertLockClient(opts.redis, opts.prefix);
  }

  async run<R>(spec: RunSpec<R>): Promise<RunOutcome<R>> {
    const fk = flightKey(this.opts.host, spec.key);
    const existing = this.flights.get(fk) as Promise<RunOutcome<R>> | undefined;
    if (existing) {
      const started = Date.now();
      const shared = await existing;
      return { result: shared.result, role: 'follower', lockWaitMs: Date.now() - started };
    }
    const flight = this.runAcrossProcesses(spec);
    this.flights.set(fk, flight);
    try {
      return await flight;
    } finally {
      this.flights.delete(fk);
    }
  }

  private async runAcrossProcesses<R>(spec: RunSpec<R>): Promise<RunOutcome<R>> {
    const { redis, notifier, prefix, host, ttlMs, log } = this.opts;
    const lockKey = pullLockKey(host, spec.key); // stored as <prefix>:mutex:<lockKey> (the client's keyPrefix)
    const channel = pullReleasedChannel(prefix, host, spec.key);
    const started = Date.now();
    for (;;) {
      spec.signal?.throwIfAborted();
      const waiter = notifier.wait(channel);
      try {
        await waiter.ready;
        const lost = new AbortController();
        const mutex = new Mutex(redis, lockKey, {
          lockTimeout: ttlMs,
          refreshInterval: Math.max(100, Math.floor(ttlMs / 3)),
          acquireAttemptsLimit: 1,
          onLockLost: (err) => lost.abort(new LockLostError(`lost the pull lock ${lockKey}: ${err.message}`, { cause: err })),
        });
        if (await mutex.tryAcquire()) {
          waiter.cancel();
          const lockWaitMs = Date.now() - started;
          try {
            const done = await spec.recheck();
            if (done !== undefined) return { result: done, role: 'follower', lockWaitMs };
            const signal = spec.signal ? AbortSignal.any([spec.signal, lost.signal]) : lost.signal;
            // Same client, same keyPrefix as the Mutex: reads <prefix>:mutex:<lockKey>.
            const fence = async () => !lost.signal.aborted && (await redis.get(mutexRedisKey(lockKey))) === mutex.identifier;
            const result = await spec.lead(signal, fence);
            return { result, role: 'leader', lockWaitMs };
          } finally {
            await mutex.release().catch((err) => log.warn({ err: errorMessage(err), lockKey }, 'pull lock release failed'));
            await notifier.publish(redis, channel).catch((err) => log.warn({ err: errorMessage(err), channel }, 'release publish failed'));
          }
        }
        // Follower: sleep until the leader announces its release, or the TTL
        // passes (a crashed leader's lock expires by TTL and publishes nothing).
        log.debug({ lockKey }, 'waiting for pull leader');
        await waitOrTimeout(waiter.released, ttlMs, spec.signal);
      } finally {
        waiter.cancel();
      }
      const done = await spec.recheck();
      if (done !== undefined) return { result: done, role: 'follower', lockWaitMs: Date.now() - started };
    }
  }
}

function waitOrTimeout(p: Promise<void>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      cleanup();
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      cleanup();
      resolve();
    }, ms);
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      cleanup();
      resolve();
    });
  });
}
