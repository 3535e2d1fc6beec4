/** Holder sets against a real redis-server: liveness by heartbeat, partial entries by instance, the weighted pick. */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Digest } from '../../src/lib/digest.js';
import { addHolder, hasFreeSlot, holderKeys, listHolders, pickHolder, removeHolder, setServingLoad } from '../../src/peer/holders.js';
import { announce } from '../../src/registry/host-registry.js';
import { useTestRedis } from '../helpers/redis.js';

const redisSrv = useTestRedis();
const P = 'hq';
const D = Digest.parse(`sha256:${'ab'.repeat(32)}`, 'test');
let redis: Redis;

const announceAt = (host: string, instance: string, now: number) =>
  announce(redis, P, { instance, host, version: 't', pid: 1, concurrency: 1, restoreConcurrency: 1, queues: [], startedAt: now }, now);

beforeAll(async () => {
  redis = new Redis(redisSrv.url);
});
afterAll(async () => {
  await redis.quit();
});

describe('holder sets', () => {
  it('lists live holders only: a silent host, an unparsable entry and a partial entry of a dead instance are ignored', async () => {
    const now = 1_000_000;
    await announceAt('h1', 'i1', now);
    await announceAt('h2', 'i2', now - 60_000); // silent
    await announceAt('h3', 'i3-new', now); // restarted: its partial entry belongs to the dead i3-old
    await announceAt('h4', 'i4', now);
    await addHolder(redis, P, D, 'h1', { state: 'complete', peerUrl: 'http://127.0.0.1:1', instance: 'i1', size: 10, at: now });
    await addHolder(redis, P, D, 'h2', { state: 'complete', peerUrl: 'http://127.0.0.1:2', instance: 'i2', size: 10, at: now });
    await addHolder(redis, P, D, 'h3', { state: 'partial', peerUrl: 'http://127.0.0.1:3', instance: 'i3-old', size: 10, at: now });
    await addHolder(redis, P, D, 'h4', { state: 'partial', peerUrl: 'http://127.0.0.1:4', instance: 'i4', size: 10, at: now });
    await redis.hset(holderKeys(P).holders(D), 'h5', 'not json');
    await setServingLoad(redis, P, 'h4', 3);
    const live = await listHolders(redis, P, D, { downAfterMs: 30_000, now });
    expect(live.map((h) => [h.host, h.state, h.load])).toEqual([
      ['h1', 'complete', 0],
      ['h4', 'partial', 3],
    ]);
  });

  it('adding a holder publishes on the digest channel', async () => {
    const sub = new Redis(redisSrv.url);
    try {
      await sub.subscribe(holderKeys(P).changed(D));
      const got = new Promise<string>((resolve) => sub.on('message', (_c, m) => resolve(m)));
      await addHolder(redis, P, D, 'h9', { state: 'complete', peerUrl: 'http://x:1', instance: 'i9', at: 1 });
      expect(await got).toBe('h9');
    } finally {
      sub.disconnect();
    }
  });

  it('removeHolder with onlyPartialOf leaves a newer complete entry alone', async () => {
    const d = Digest.parse(`sha256:${'cd'.repeat(32)}`, 'test');
    await addHolder(redis, P, d, 'h1', { state: 'complete', peerUrl: 'http://x:1', instance: 'i1', at: 1 });
    await removeHolder(redis, P, d, 'h1', { onlyPartialOf: 'i1' });
    expect(await redis.hexists(holderKeys(P).holders(d), 'h1')).toBe(1);
    await addHolder(redis, P, d, 'h1', { state: 'partial', peerUrl: 'http://x:1', instance: 'i1', at: 1 });
    await removeHolder(redis, P, d, 'h1', { onlyPartialOf: 'other' });
    expect(await redis.hexists(holderKeys(P).holders(d), 'h1')).toBe(1);
    await removeHolder(redis, P, d, 'h1', { onlyPartialOf: 'i1' });
    expect(await redis.hexists(holderKeys(P).holders(d), 'h1')).toBe(0);
  });

  it('removeHolder with unlessPartialOfOther keeps another instance\'s partial entry, drops complete ones and its own', async () => {
    const d = Digest.parse(`sha256:${'ce'.repeat(32)}`, 'test');
    const has = async () => (await redis.hexists(holderKeys(P).holders(d), 'h1')) === 1;
    await addHolder(redis, P, d, 'h1', { state: 'partial', peerUrl: 'http://x:1', instance: 'other', at: 1 });
    await removeHolder(redis, P, d, 'h1', { unlessPartialOfOther: 'me' });
    expect(await has()).toBe(true);
    await addHolder(redis, P, d, 'h1', { state: 'partial', peerUrl: 'http://x:1', instance: 'me', at: 1 });
    await removeHolder(redis, P, d, 'h1', { unlessPartialOfOther: 'me' });
    expect(await has()).toBe(false);
    await addHolder(redis, P, d, 'h1', { state: 'complete', peerUrl: 'http://x:1', instance: 'other', at: 1 });
    await removeHolder(redis, P, d, 'h1', { unlessPartialOfOther: 'me' });
    expect(await has()).toBe(false);
  });
});

describe('pickHolder', () => {
  const h = (host: string, load: number, state: 'complete' | 'partial' = 'complete') => ({ host, load, state, peerUrl: 'http://x:1', instance: 'i', at: 0 });
  it('weights by 1/(1+load), skips excluded hosts, prefers complete holders', () => {
    const holders = [h('a', 0), h('b', 3), h('c', 0, 'partial')];
    const counts = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (let i = 0; i < 1000; i++) counts[pickHolder(holders, new Set(), () => i / 1000)!.host]!++;
    expect(counts.c).toBe(0);
    expect(counts.a).toBe(800); // weights 1 and 1/4 → 80 % / 20 %
    expect(counts.b).toBe(200);
    expect(pickHolder(holders, new Set(['a', 'b']))!.host).toBe('c');
    expect(pickHolder(holders, new Set(['a', 'b', 'c']))).toBeUndefined();
  });

  it('prefers holders with a free stream slot (load below their maxStreams) over full ones, even complete ones; all full: any of them (the 503 decides)', () => {
    const full = { ...h('a', 2), maxStreams: 2 };
    const freePartial = { ...h('b', 1, 'partial'), maxStreams: 2 };
    const unknownLimit = h('c', 5, 'partial');
    for (let i = 0; i < 100; i++) expect(pickHolder([full, freePartial], new Set(), () => i / 100)!.host).toBe('b');
    const picks = new Set(Array.from({ length: 100 }, (_, i) => pickHolder([full, freePartial, unknownLimit], new Set(['b']), () => i / 100)!.host));
    expect(picks).toEqual(new Set(['c'])); // no limit known: counts as free
    expect(pickHolder([full], new Set())!.host).toBe('a');
    expect(hasFreeSlot(full)).toBe(false);
    expect(hasFreeSlot(freePartial)).toBe(true);
  });
});
