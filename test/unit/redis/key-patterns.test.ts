/**
 * The documented key layout (redis/key-patterns.ts): the key builders produce
 * keys of the documented patterns, keys used together share a Cluster slot,
 * the slot function agrees with Redis's CLUSTER KEYSLOT, and
 * docs/ARCHITECTURE.md's table is this list.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest.js';
import { lockKeyPrefix, mutexRedisKey, pullLockRedisKey, pullReleasedChannel } from '../../../src/lock/keys.js';
import { legacyQueueName, queueName } from '../../../src/queues/names.js';
import { hashTagOf, KEY_PATTERNS, keySlot, matchKeyPattern } from '../../../src/redis/key-patterns.js';
import { hostKeys, legacyRegistryKeys, peerKeys, registryKeys } from '../../../src/registry/keys.js';

const D = Digest.parse(`sha256:${'ab'.repeat(32)}`);
const P = 'fleetq';

/** Every key and channel fleetq builds, for host `host`. */
function built(host: string) {
  const reg = registryKeys(P);
  const hk = hostKeys(P, host);
  const peers = peerKeys(P);
  return {
    queue: ['wait', 'meta', 'events', 'marker', 'job-1', 'job-1:lock', 'job-1:dependencies', 'de:abc', 'repeat'].flatMap((s) => [`${P}:${queueName('images', host)}:${s}`, `${P}:${queueName('restores', host)}:${s}`]),
    host: [hk.dlqEntries, hk.dlqIndex, hk.dlqSwept, hk.metricsIndex, hk.metrics('123-0a1b2c3d'), pullLockRedisKey(P, host, { kind: 'digest', digest: D }), pullLockRedisKey(P, host, { kind: 'url', url: 'https://x/y' })],
    registry: [reg.hosts, reg.host(host), reg.dlqHosts, peers.peerLoad],
    digest: [peers.holders(D.hex), lockKeyPrefix(P) + `semaphore:${peers.b2sLockKey(D.hex)}`],
    channels: [pullReleasedChannel(P, host, { kind: 'digest', digest: D }), pullReleasedChannel(P, host, { kind: 'url', url: 'https://x/y' }), peers.holdersChanged(D.hex)],
  };
}

describe('slots', () => {
  it('keySlot is CLUSTER KEYSLOT (CRC16/XMODEM of the hash tag, mod 16384)', () => {
    // Redis's documented examples, and what a real cluster answered (shared/reference/redis-ha.md §1).
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('somekey')).toBe(11058);
    expect(keySlot('fleetq:images-{h1}:wait')).toBe(9457);
    expect(keySlot('fleetq:restores-{h1}:wait')).toBe(9457);
    expect(keySlot('{fleetq}:restores-h1:wait')).toBe(16169);
  });

  it('only the first non-empty {…} counts', () => {
    expect(hashTagOf('a{b}c{d}')).toBe('b');
    expect(hashTagOf('a{}b{c}')).toBe('a{}b{c}');
    expect(hashTagOf('{fq}:images-{h1}:wait')).toBe('fq');
    expect(hashTagOf('plain')).toBe('plain');
  });

  it("a host's keys (queues, dead letters, metrics, locks) share its queues' slot; hosts spread", () => {
    for (const host of ['h1', 'kvm-07.eu_2', 'registry']) {
      const b = built(host);
      const slot = keySlot(`{${host}}`);
      for (const k of [...b.queue, ...b.host]) expect(keySlot(k), k).toBe(slot);
    }
    expect(new Set(['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((h) => keySlot(hostKeys(P, h).dlqIndex))).size).toBeGreaterThan(3);
  });

  it('the registry is one slot; a digest\'s holders and back-to-source semaphore are one slot', () => {
    const slots = new Set([...built('h1').registry, ...built('h2').registry].map(keySlot));
    expect(slots).toEqual(new Set([keySlot('{registry}')]));
    expect(new Set(built('h1').digest.map(keySlot))).toEqual(new Set([keySlot(`{${D.hex}}`)]));
  });

  it('the old layout did not (that is why `fleetq migrate` moves it)', () => {
    const old = legacyRegistryKeys(P);
    expect(keySlot(old.hosts)).not.toBe(keySlot(old.host('h1')));
    expect(keySlot(old.dlqEntries)).not.toBe(keySlot(`${P}:${queueName('images', 'h1')}:failed`));
    expect(keySlot(`${P}:${legacyQueueName('images', 'h9')}:wait`)).not.toBe(keySlot(`${P}:${legacyQueueName('restores', 'h9')}:wait`));
  });
});

describe('patterns', () => {
  it('every key and channel the builders make matches a documented pattern, naming its host or digest', () => {
    const b = built('kvm-07.eu_2');
    for (const k of [...b.queue, ...b.host]) expect(matchKeyPattern(P, k), k).toMatchObject({ subject: 'kvm-07.eu_2', pattern: { slot: 'host' } });
    for (const k of b.registry) expect(matchKeyPattern(P, k)?.pattern.slot, k).toBe('registry');
    for (const k of b.digest) expect(matchKeyPattern(P, k), k).toMatchObject({ subject: D.hex, pattern: { slot: 'digest' } });
    for (const c of b.channels) expect(matchKeyPattern(P, c, { channel: true })?.pattern.kind, c).toBe('channel');
    // …and a key is not a channel, nor the other way round.
    expect(matchKeyPattern(P, b.channels[0]!)).toBeUndefined();
    expect(matchKeyPattern(P, b.host[0]!, { channel: true })).toBeUndefined();
  });

  it('every documented pattern is made by some builder (no stale row)', () => {
    const b = built('h1');
    const hit = new Set([...b.queue, ...b.host, ...b.registry, ...b.digest].map((k) => matchKeyPattern(P, k)?.pattern.pattern));
    for (const c of b.channels) hit.add(matchKeyPattern(P, c, { channel: true })?.pattern.pattern);
    expect([...hit].sort()).toEqual(KEY_PATTERNS.map((p) => p.pattern).sort());
  });

  it('keys of the old layout, foreign keys and other prefixes match nothing', () => {
    const old = legacyRegistryKeys(P);
    for (const k of [old.hosts, old.host('h1'), old.dlqEntries, old.dlqIndex, old.dlqSwept, `${P}:metrics:h1:123-0a1b2c3d`, `${P}:mutex:pull-lock:h1:digest:${D.hex}`, `${P}:${legacyQueueName('images', 'h1')}:wait`, 'bull:x:wait', `other:${queueName('images', 'h1')}:wait`, `${P}:{h1}:dlq:entries:x`]) {
      expect(matchKeyPattern(P, k), k).toBeUndefined();
    }
  });

  it('mutexRedisKey + the lock client prefix is the documented lock key', () => {
    expect(lockKeyPrefix(P) + mutexRedisKey(`pull-lock:{h1}:digest:${D.hex}`)).toBe(pullLockRedisKey(P, 'h1', { kind: 'digest', digest: D }));
  });
});

describe('docs/ARCHITECTURE.md, "Redis keys"', () => {
  it('its table lists exactly these patterns, with their type and slot rule', () => {
    const doc = readFileSync(new URL('../../../docs/ARCHITECTURE.md', import.meta.url), 'utf8');
    const start = doc.indexOf('\n## Redis keys');
    expect(start).toBeGreaterThan(0);
    const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
    const rows = [...section.matchAll(/^\| `([^`]+)` \| (\w+) \| ([^|]+) \| ([^|]+) \|$/gm)].map((m) => ({ pattern: m[1], kind: m[2], slot: m[3]!.trim(), what: m[4]!.trim() }));
    const SLOT = { host: '`{<host>}`', registry: '`{registry}`', digest: '`{<hex>}`', channel: '— (pub/sub)' };
    expect(rows.map(({ pattern, kind, slot }) => ({ pattern, kind, slot }))).toEqual(KEY_PATTERNS.map((p) => ({ pattern: p.pattern, kind: p.kind, slot: SLOT[p.slot] })));
    // The descriptions too (planned keys marked): the table is this list, rendered.
    expect(rows.map((r) => r.what)).toEqual(KEY_PATTERNS.map((p) => `${p.planned ? '**planned (issue 13):** ' : ''}${p.what}`));
  });
});
