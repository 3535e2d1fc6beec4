/**
 * src/lock/keys.ts: the pull lock's keys and channels. Pure. The integration
 * tests (keys-and-names, pull-coordinator) check them against Redis; here, the
 * shapes, and which keys may and may not coincide.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest.js';
import { flightKey, lockKeyPrefix, mutexRedisKey, type PullKey, pullLockKey, pullLockRedisKey, pullReleasedChannel } from '../../../src/lock/keys.js';

const D = Digest.parse(`sha256:${'0f'.repeat(32)}`);
const E = Digest.parse(`sha256:${'e1'.repeat(32)}`);
const URL_A = 'https://images.example/a.img';
const URL_B = 'https://mirror.example/a.img';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

const byDigest = (digest: Digest, url?: string): PullKey => ({ kind: 'digest', digest, url });
const byUrl = (url: string): PullKey => ({ kind: 'url', url });

describe('pull lock keys', () => {
  it('a digest key names the hex; a URL key the sha256 of the URL (never the URL, which may carry a signature)', () => {
    expect(pullLockKey('h1', byDigest(D))).toBe(`pull-lock:{h1}:digest:${D.hex}`); // {h1}: the Cluster slot of the host's queues
    expect(pullLockKey('h1', byUrl(URL_A))).toBe(`pull-lock:{h1}:url:${sha(URL_A)}`);
    const signed = 'https://b.example/x.img?X-Amz-Signature=secret';
    expect(pullLockKey('h1', byUrl(signed))).not.toContain('secret');
  });

  it('the lock client prefix, the Mutex key and the stored key fit together', () => {
    expect(lockKeyPrefix('fleetq')).toBe('fleetq:');
    expect(mutexRedisKey('pull-lock:h1:x')).toBe('mutex:pull-lock:h1:x');
    expect(pullLockRedisKey('fq', 'h1', byDigest(D))).toBe(`fq:mutex:pull-lock:{h1}:digest:${D.hex}`);
    expect(pullLockRedisKey('fq', 'h1', byDigest(D))).toBe(lockKeyPrefix('fq') + mutexRedisKey(pullLockKey('h1', byDigest(D))));
  });

  it('the release channel carries the prefix itself (ioredis does not prefix channels)', () => {
    expect(pullReleasedChannel('fq', 'h1', byDigest(D))).toBe(`fq:pull-released:h1:digest:${D.hex}`);
    expect(pullReleasedChannel('fq', 'h1', byUrl(URL_A))).toBe(`fq:pull-released:h1:url:${sha(URL_A)}`);
  });

  it('one lock per (host, digest): the URL a pinned job fetches from does not split it', () => {
    expect(pullLockKey('h1', byDigest(D, URL_A))).toBe(pullLockKey('h1', byDigest(D, URL_B)));
    expect(pullLockKey('h1', byDigest(D, URL_A))).toBe(pullLockKey('h1', byDigest(D)));
    expect(pullReleasedChannel('p', 'h1', byDigest(D, URL_A))).toBe(pullReleasedChannel('p', 'h1', byDigest(D, URL_B)));
  });

  it('different hosts, digests, URLs or kinds never share a lock', () => {
    const keys = [
      pullLockKey('h1', byDigest(D)),
      pullLockKey('h2', byDigest(D)),
      pullLockKey('h1', byDigest(E)),
      pullLockKey('h1', byUrl(URL_A)),
      pullLockKey('h1', byUrl(URL_B)),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('a digest key is the same for every parse of the same digest', () => {
    expect(pullLockKey('h1', byDigest(Digest.parse(D.value)))).toBe(pullLockKey('h1', byDigest(D)));
  });
});

describe('flight keys (in-process singleflight)', () => {
  it('per (host, digest, URL): a mismatch through one URL is not shared with a job fetching from another', () => {
    expect(flightKey('h1', byDigest(D, URL_A))).not.toBe(flightKey('h1', byDigest(D, URL_B)));
    expect(flightKey('h1', byDigest(D, URL_A))).toBe(flightKey('h1', byDigest(Digest.parse(D.value), URL_A)));
    expect(flightKey('h1', byDigest(D, URL_A))).toBe(`h1|digest:${D.hex}|u:${sha(URL_A)}`);
  });

  it('a URL key, or a digest key without URL, is per (host, key)', () => {
    expect(flightKey('h1', byUrl(URL_A))).toBe(`h1|url:${sha(URL_A)}`);
    expect(flightKey('h1', byDigest(D))).toBe(`h1|digest:${D.hex}`);
    expect(flightKey('h2', byUrl(URL_A))).not.toBe(flightKey('h1', byUrl(URL_A)));
  });
});
