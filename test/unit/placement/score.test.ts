/**
 * Placement's decision alone (src/placement/score.ts): who is eligible and why
 * not, kube-scheduler ImageLocality's score (size × presence × spread, clamped
 * to 23–1000 MiB, 0–100), the ranking (score, then restore queue, then host
 * id), the reason line, and the job data's record.
 */
import { describe, expect, it } from 'vitest';
import { RestorePlacement } from '../../../src/jobs/contracts/restore.js';
import { Digest } from '../../../src/lib/digest.js';
import {
  type CandidateFacts,
  candidateSummary,
  decidePlacement,
  type HolderFacts,
  IMAGE_LOCALITY,
  localityScore,
  type PlacementInput,
  placementRecord,
} from '../../../src/placement/score.js';

const MiB = 1024 * 1024;
const D1 = Digest.parse(`sha256:${'1'.repeat(64)}`);
const D2 = Digest.parse(`sha256:${'2'.repeat(64)}`);
const NOW = 10_000_000;

/** A live host with the restores queue, a writable store and snapshot s1 (recording D1), queue 0. */
function host(name: string, o: Partial<CandidateFacts> & { has?: boolean; digest?: Digest | null } = {}): CandidateFacts {
  const { has = true, digest = D1, ...rest } = o;
  return {
    host: name,
    registered: true,
    up: true,
    lastSeen: NOW,
    consumesRestores: true,
    health: 'ok',
    snapshots: { has, digest: digest ?? undefined, count: has ? 1 : 3, listedAt: NOW },
    restoreQueue: 0,
    ...rest,
  };
}

function input(candidates: CandidateFacts[], holders: Record<string, HolderFacts[]> = {}, o: Partial<PlacementInput> = {}): PlacementInput {
  return { snapshot: 's1', candidates, holders: new Map(Object.entries(holders)), liveHosts: candidates.filter((c) => c.up).length, now: NOW, ...o };
}

describe('localityScore (kube-scheduler calculatePriority, one image)', () => {
  it('clamps to 23 MiB..1000 MiB and scales to 0..100, rounding down', () => {
    expect(localityScore(0)).toBe(0);
    expect(localityScore(23 * MiB)).toBe(0);
    expect(localityScore(1000 * MiB)).toBe(100);
    expect(localityScore(20_000 * MiB)).toBe(100);
    // (511.5 − 23) / 977 × 100 = 50.0 → 50; one byte less → 49.
    expect(localityScore(511.5 * MiB)).toBe(50);
    expect(localityScore(511.5 * MiB - 1)).toBe(49);
  });
});

describe('decidePlacement', () => {
  it('the host with the snapshot AND the image beats the host with the snapshot only, even with a longer queue', () => {
    const d = decidePlacement(
      input([host('a', { restoreQueue: 5 }), host('b', { restoreQueue: 0 })], { [D1.value]: [{ host: 'a', state: 'complete', size: 4096 * MiB }] }),
    );
    expect(d.chosen).toMatchObject({ host: 'a', score: expect.any(Number), holding: 'complete', imageBytes: 4096 * MiB, restoreQueue: 5 });
    // spread 1/2 of 4096 MiB = 2048 MiB → clamped at 1000 MiB → 100.
    expect(d.chosen!.score).toBe(100);
    expect(d.verdicts.map((v) => [v.host, v.score])).toEqual([
      ['a', 100],
      ['b', 0],
    ]);
    expect(d.reason).toBe(`has snapshot s1; holds sha256:${'1'.repeat(12)}… (4.0 GiB), locality 100/100; restore queue 5; best locality of 2 eligible hosts`);
  });

  it('weights by image size and by spread (holders / live hosts), as ImageLocality', () => {
    // 256 MiB held by 1 of 4 live hosts: 64 MiB → floor(100 × 41 / 977) = 4.
    const one = decidePlacement(input([host('a'), host('b'), host('c'), host('d')], { [D1.value]: [{ host: 'a', state: 'complete', size: 256 * MiB }] }));
    expect(one.chosen).toMatchObject({ host: 'a', score: 4 });
    // Held by 2 of 4: 128 MiB → floor(100 × 105 / 977) = 10, for both holders.
    const two = decidePlacement(
      input([host('a'), host('b'), host('c'), host('d')], {
        [D1.value]: [
          { host: 'a', state: 'complete', size: 256 * MiB },
          { host: 'b', state: 'complete', size: 256 * MiB },
        ],
      }),
    );
    expect(two.verdicts.slice(0, 2).map((v) => [v.host, v.score])).toEqual([
      ['a', 10],
      ['b', 10],
    ]);
    // A bigger image scores more at the same spread.
    const big = decidePlacement(input([host('a'), host('b'), host('c'), host('d')], { [D1.value]: [{ host: 'a', state: 'complete', size: 1024 * MiB }] }));
    expect(big.chosen!.score).toBeGreaterThan(one.chosen!.score);
    // The spread's denominator is every live host, not only the candidates.
    const wide = decidePlacement(input([host('a'), host('b')], { [D1.value]: [{ host: 'a', state: 'complete', size: 256 * MiB }] }, { liveHosts: 4 }));
    expect(wide.chosen!.score).toBe(4);
  });

  it('a small image held by few hosts scores 0 (under the 23 MiB floor): placement falls back to the queue', () => {
    const d = decidePlacement(input([host('a', { restoreQueue: 3 }), host('b', { restoreQueue: 1 })], { [D1.value]: [{ host: 'a', state: 'complete', size: 30 * MiB }] }));
    expect(d.verdicts.map((v) => [v.host, v.score])).toEqual([
      ['b', 0],
      ['a', 0],
    ]);
    expect(d.reason).toMatch(/; does not hold sha256:1{12}…; restore queue 1 \(shortest\)$/);
  });

  it('a partial holder (downloading) counts half of a complete one', () => {
    const holders = { [D1.value]: [{ host: 'a', state: 'complete', size: 1000 * MiB }, { host: 'b', state: 'partial', size: 1000 * MiB }] as HolderFacts[] };
    const d = decidePlacement(input([host('a', { restoreQueue: 9 }), host('b'), host('c')], holders));
    // spread 2/3: a = 666 MiB → 65; b = 333 MiB → 31; c = 0.
    expect(d.verdicts.map((v) => [v.host, v.score, v.holding])).toEqual([
      ['a', 65, 'complete'],
      ['b', 31, 'partial'],
      ['c', 0, undefined],
    ]);
    expect(IMAGE_LOCALITY.partialWeight).toBe(0.5);
    const partialOnly = decidePlacement(input([host('b'), host('c')], { [D1.value]: [holders[D1.value]![1]!] }));
    expect(partialOnly.reason).toMatch(/^has snapshot s1; is downloading sha256:1{12}… \(1000\.0 MiB\), locality \d+\/100;/);
  });

  it('an image of unknown size counts as 1000 MiB; a size another holder reported is used', () => {
    const unknown = decidePlacement(input([host('a'), host('b')], { [D1.value]: [{ host: 'a', state: 'complete' }] }));
    // 1000 MiB × 1/2 = 500 MiB → floor(100 × 477 / 977) = 48.
    expect(unknown.chosen).toMatchObject({ host: 'a', score: 48, imageBytes: undefined });
    const known = decidePlacement(input([host('a'), host('b'), host('c')], { [D1.value]: [{ host: 'a', state: 'complete' }, { host: 'c', state: 'complete', size: 300 * MiB }] }));
    expect(known.chosen).toMatchObject({ imageBytes: 300 * MiB });
  });

  it('ties go to the shortest restore queue, then to the host id', () => {
    const d = decidePlacement(input([host('c', { restoreQueue: 2 }), host('a', { restoreQueue: 2 }), host('b', { restoreQueue: 1 })]));
    expect(d.verdicts.map((v) => v.host)).toEqual(['b', 'a', 'c']);
    expect(d.reason).toBe(`has snapshot s1; does not hold sha256:${'1'.repeat(12)}… (no eligible host does); restore queue 1 (shortest)`);
    const tie = decidePlacement(input([host('c'), host('a'), host('b')]));
    expect(tie.chosen!.host).toBe('a');
    expect(tie.reason).toMatch(/restore queue 0 \(tied; first by host id\)$/);
    // The same facts in another order give the same answer (stable).
    expect(decidePlacement(input([host('b'), host('c'), host('a')])).chosen!.host).toBe('a');
  });

  it('rejects, saying why: down, unknown, no restores consumer, unwritable store, no snapshot list, a listing that fails, snapshot missing, another base digest, disk full without the image', () => {
    const d = decidePlacement(
      input(
        [
          host('down', { up: false, lastSeen: NOW - 125_000 }),
          { host: 'ghost', registered: false, up: false, consumesRestores: false, health: 'ok' },
          host('images-only', { consumesRestores: false }),
          host('ro', { health: 'store-unwritable' }),
          host('silent', { snapshots: undefined }),
          host('other', { has: false }),
          host('failing', { has: false, snapshots: { has: false, count: 0, error: 'cocoon binary not found: cocoon' } }),
          host('stale', { has: false, snapshots: { has: false, count: 4, listedAt: NOW - 600_000, error: 'cocoon snapshot ls timed out after 60s' } }),
          host('wrong-base', { digest: D2 }),
          host('full', { health: 'disk-full' }),
        ],
        {},
        { jobDigest: D1 },
      ),
    );
    expect(d.chosen).toBeUndefined();
    const why = Object.fromEntries(d.verdicts.map((v) => [v.host, v.rejected]));
    expect(why).toEqual({
      down: 'down (last heartbeat 2m5s ago)',
      ghost: 'not registered (no worker has announced this host id)',
      'images-only': 'no live worker consumes its restores queue (FLEETQ_QUEUES)',
      ro: 'store not writable',
      silent: 'published no snapshot list (no worker with the restores queue has listed its snapshots yet)',
      other: 'does not have snapshot s1 (3 snapshots published)',
      failing: 'cannot list its snapshots: `cocoon snapshot ls` failed: cocoon binary not found: cocoon',
      stale: 'does not have snapshot s1 (4 snapshots published; its last `cocoon snapshot ls` failed: cocoon snapshot ls timed out after 60s)',
      'wrong-base': `its snapshot s1 boots sha256:${'2'.repeat(12)}…, not the job's sha256:${'1'.repeat(12)}…`,
      full: `disk full and does not hold sha256:${'1'.repeat(12)}…`,
    });
    expect(d.reason).toMatch(/^no live host has snapshot s1 and can take the restore \(considered: down: down \(last heartbeat 2m5s ago\); failing: .*; stale: .*; wrong-base: .*\)$/);
    expect(decidePlacement(input([])).reason).toBe('no live host has snapshot s1 and can take the restore (considered: none — no host is registered)');
  });

  it('a disk-full host that holds the image committed is still eligible; a down holder is never chosen', () => {
    const d = decidePlacement(input([host('full', { health: 'disk-full' }), host('b')], { [D1.value]: [{ host: 'full', state: 'complete', size: 2000 * MiB }] }));
    expect(d.chosen!.host).toBe('full');
    const down = decidePlacement(input([host('holder', { up: false, lastSeen: NOW - 60_000 }), host('b', { restoreQueue: 7 })], { [D1.value]: [{ host: 'holder', state: 'complete', size: 2000 * MiB }] }));
    expect(down.chosen!.host).toBe('b');
    expect(down.reason).toMatch(/restore queue 7; the only eligible host$/);
  });

  it("without a pin each host's own snapshot record decides the digest scored; with neither, the image is unknown", () => {
    const d = decidePlacement(input([host('a', { digest: D2 }), host('b', { digest: D1 })], { [D1.value]: [{ host: 'b', state: 'complete', size: 800 * MiB }], [D2.value]: [] }));
    expect(d.chosen).toMatchObject({ host: 'b', digest: D1 });
    expect(d.verdicts[1]).toMatchObject({ host: 'a', digest: D2, score: 0 });
    const none = decidePlacement(input([host('a', { digest: null })]));
    expect(none.reason).toBe('has snapshot s1; base image unknown (the snapshot records no digest and the job pins none); restore queue 0; the only eligible host');
  });

  it('the job-data record passes the restore contract; the summary lists every host', () => {
    const d = decidePlacement(input([host('a', { restoreQueue: 2 }), host('b', { up: false })], { [D1.value]: [{ host: 'a', state: 'complete', size: 256 * MiB }] }));
    const rec = placementRecord({ ...d, chosen: d.chosen! }, NOW);
    expect(RestorePlacement.parse(JSON.parse(JSON.stringify(rec)))).toEqual({ ...rec, digest: D1 });
    expect(JSON.parse(JSON.stringify(rec))).toEqual({ host: 'a', reason: d.reason, at: NOW, score: rec.score, restoreQueue: 2, digest: D1.value, holding: 'complete', imageBytes: 256 * MiB });
    expect(candidateSummary(d)).toEqual([
      { host: 'a', eligible: true, score: rec.score, restoreQueue: 2, holding: 'complete', digest: D1.value },
      { host: 'b', eligible: false, rejected: expect.stringMatching(/^down/) },
    ]);
  });
});
