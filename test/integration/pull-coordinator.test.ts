/**
 * The pull lock against a real redis-server: followers are woken by the
 * leader's release notification (not by polling or the TTL), a crashed
 * leader's lock expires by TTL, and a lost lock aborts the leader's work.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pullLockRedisKey } from '../../src/lock/keys.js';
import { Digest } from '../../src/lib/digest.js';
import { loadConfig } from '../../src/config/load.js';
import { connectRedis, type RedisClient } from '../../src/redis/connect.js';
import { LockLostError } from '../../src/lock/lock-errors.js';
import { PullCoordinator } from '../../src/lock/pull-coordinator.js';
import { ReleaseNotifier } from '../../src/lock/release-notifier.js';
import { useTestRedis } from '../helpers/redis.js';

const redis = useTestRedis();
const clients: Array<Redis | RedisClient> = [];
const log = pino({ level: 'silent' });

function coordinator(ttlMs: number, logger = log): PullCoordinator {
  const r = connectRedis(loadConfig({ REDIS_URL: redis.url, FLEETQ_PREFIX: 't' }), 'mutex'); // keyPrefix "t:": the lock lives at t:mutex:pull-lock:…
  const sub = new Redis(redis.url, { maxRetriesPerRequest: null });
  clients.push(r, sub);
  return new PullCoordinator({ redis: r, notifier: new ReleaseNotifier(sub), prefix: 't', host: 'h', ttlMs, log: logger });
}

/** A logger that resolves `parked` when the coordinator says a follower is waiting for the leader. */
function watchingLogger() {
  const parked = deferred();
  const logger = pino({ level: 'debug' }, { write: (line: string) => line.includes('waiting for pull leader') && parked.resolve() });
  return { logger, parked: parked.promise };
}

afterAll(() => {
  for (const c of clients) c.disconnect();
});

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('the lock\'s client', () => {
  it('must carry keyPrefix "<prefix>:" (redis-semaphore always writes mutex:<key>): a plain client is refused', () => {
    const plain = new Redis(redis.url, { lazyConnect: true });
    const sub = new Redis(redis.url, { lazyConnect: true });
    clients.push(plain, sub);
    expect(() => new PullCoordinator({ redis: plain, notifier: new ReleaseNotifier(sub), prefix: 't', host: 'h', ttlMs: 1000, log })).toThrow(/keyPrefix "t:"/);
  });
});

describe('pull coordinator', () => {
  let a: PullCoordinator;
  let b: PullCoordinator;
  let watch: ReturnType<typeof watchingLogger>;
  beforeAll(() => {
    // Two "processes" (separate connections), a long TTL: only a notification can wake a follower quickly.
    a = coordinator(60_000);
    watch = watchingLogger();
    b = coordinator(60_000, watch.logger);
  });

  it('one leader; a follower in another process is woken by the release, not by the TTL', async () => {
    const key = { kind: 'digest' as const, digest: Digest.parse(`sha256:${'1'.repeat(64)}`) };
    let done = false;
    const leaderStarted = deferred();
    const finishLeader = deferred();
    const leader = a.run({
      key,
      recheck: async () => (done ? 'present' : undefined),
      lead: async () => {
        leaderStarted.resolve();
        await finishLeader.promise;
        done = true;
        return 'pulled';
      },
    });
    await leaderStarted.promise;
    let followerLed = false;
    const follower = b.run({
      key,
      recheck: async () => (done ? 'present' : undefined),
      lead: async () => {
        followerLed = true;
        return 'pulled-again';
      },
    });
    await watch.parked; // the follower tried the lock, lost, and is parked on the release channel
    const released = Date.now();
    finishLeader.resolve();
    const [l, f] = await Promise.all([leader, follower]);
    expect(l).toMatchObject({ role: 'leader', result: 'pulled' });
    expect(f).toMatchObject({ role: 'follower', result: 'present' });
    expect(followerLed).toBe(false);
    expect(Date.now() - released).toBeLessThan(2000); // far below the 60 s TTL
  });

  it('in one process, concurrent callers share one flight', async () => {
    const key = { kind: 'url' as const, url: 'http://example.invalid/x' };
    let leads = 0;
    const runs = await Promise.all(
      Array.from({ length: 10 }, () =>
        a.run({
          key,
          recheck: async () => undefined,
          lead: async () => {
            leads++;
            await new Promise((r) => setTimeout(r, 50));
            return 'pulled';
          },
        }),
      ),
    );
    expect(leads).toBe(1);
    expect(runs.filter((r) => r.role === 'leader')).toHaveLength(1);
    expect(runs.every((r) => r.result === 'pulled')).toBe(true);
  });

  it('a crashed leader\'s lock (never released, never refreshed) expires by TTL and a follower takes over', async () => {
    const short = coordinator(1000);
    const key = { kind: 'digest' as const, digest: Digest.parse(`sha256:${'2'.repeat(64)}`) };
    const raw = new Redis(redis.url);
    clients.push(raw);
    await raw.set(pullLockRedisKey('t', 'h', key), 'crashed-holder', 'PX', 1000);
    const t0 = Date.now();
    const r = await short.run({ key, recheck: async () => undefined, lead: async () => 'pulled' });
    expect(r.role).toBe('leader');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it('a lost lock aborts the leader\'s work with LockLostError', async () => {
    const short = coordinator(1000);
    const key = { kind: 'digest' as const, digest: Digest.parse(`sha256:${'3'.repeat(64)}`) };
    const raw = new Redis(redis.url);
    clients.push(raw);
    const err = await short
      .run({
        key,
        recheck: async () => undefined,
        lead: async (signal) => {
          await raw.set(pullLockRedisKey('t', 'h', key), 'someone-else', 'PX', 5000); // stolen
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, 5000);
            signal.addEventListener('abort', () => {
              clearTimeout(t);
              reject(signal.reason);
            });
          });
          return 'pulled';
        },
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LockLostError);
    expect((err as Error).message).toMatch(/lost the pull lock/);
    // Our release must not delete someone else's lock.
    expect(await raw.get(pullLockRedisKey('t', 'h', key))).toBe('someone-else');
  });
});
