import { flightKey, pullLockKey } from '../../../src/lock/keys.js';
import { Digest } from '../../../src/lib/digest.js';
import { describe, expect, it } from 'vitest';
import { decidePull, pullKey, type StoreView } from '../../../src/policy/pull-policy.js';

const A = Digest.parse(`sha256:${'a'.repeat(64)}`);
const B = Digest.parse(`sha256:${'b'.repeat(64)}`);

const view = (v: Partial<StoreView>): StoreView => ({ pinnedBlobValid: false, urlEntryBlobValid: false, ...v });

describe('pull policy — the seed (cocoon PR #39) cases', () => {
  it('pinned digest missing + stale URL entry with a valid blob → download, bypassing the URL cache, verifying the pin', () => {
    const d = decidePull(view({ pinned: A, urlEntry: { digest: B, size: 10 }, urlEntryBlobValid: true }));
    expect(d).toEqual({ action: 'download', expectDigest: A, reason: 'pinned-missing-url-cache-stale' });
  });

  it('no digest + valid cached blob → present from the URL cache, no download', () => {
    const d = decidePull(view({ urlEntry: { digest: B, size: 10 }, urlEntryBlobValid: true }));
    expect(d).toEqual({ action: 'present', digest: B, via: 'url-cache' });
  });

  it('pinned digest already local → present, whatever the URL cache says', () => {
    expect(decidePull(view({ pinned: A, pinnedBlobValid: true, urlEntry: { digest: B, size: 1 }, urlEntryBlobValid: true }))).toEqual({
      action: 'present',
      digest: A,
      via: 'pinned-blob',
    });
  });
});

describe('pull policy — the rest of the table', () => {
  it('pinned and missing with no URL entry → download with the pin', () => {
    expect(decidePull(view({ pinned: A }))).toEqual({ action: 'download', expectDigest: A, reason: 'pinned-missing' });
  });

  it('pinned and missing, URL entry already names the pin (blob deleted) → download', () => {
    expect(decidePull(view({ pinned: A, urlEntry: { digest: A, size: 1 }, urlEntryBlobValid: false }))).toMatchObject({
      action: 'download',
      reason: 'pinned-missing',
    });
  });

  it('no digest, no entry → download without a pin', () => {
    expect(decidePull(view({}))).toEqual({ action: 'download', reason: 'not-cached' });
  });

  it('no digest, entry whose blob is missing or the wrong size → download', () => {
    expect(decidePull(view({ urlEntry: { digest: B, size: 1 }, urlEntryBlobValid: false }))).toEqual({ action: 'download', reason: 'cached-blob-invalid' });
  });

  it('force → download even when everything is present, still verifying a pin', () => {
    expect(decidePull(view({ pinned: A, pinnedBlobValid: true }), { force: true })).toEqual({ action: 'download', expectDigest: A, reason: 'forced' });
    expect(decidePull(view({ urlEntry: { digest: B, size: 1 }, urlEntryBlobValid: true }), { force: true })).toEqual({
      action: 'download',
      expectDigest: undefined,
      reason: 'forced',
    });
  });

  it('the pre-#39 behaviour is available only behind an explicit switch (used to prove the tests catch the bug)', () => {
    const v = view({ pinned: A, urlEntry: { digest: B, size: 1 }, urlEntryBlobValid: true });
    expect(decidePull(v, { trustUrlCacheOverPin: true })).toEqual({ action: 'present', digest: B, via: 'url-cache' });
    expect(decidePull(v).action).toBe('download');
  });

  it('locks by digest when pinned (carrying the URL, which splits flights but not the lock), by URL otherwise', () => {
    expect(pullKey(A, 'http://x/a')).toEqual({ kind: 'digest', digest: A, url: 'http://x/a' });
    expect(pullKey(undefined, 'http://x/a')).toEqual({ kind: 'url', url: 'http://x/a' });
    const [byA, byB] = [pullKey(A, 'http://x/a'), pullKey(A, 'http://y/b')];
    expect(pullLockKey('h', byA)).toBe(pullLockKey('h', byB));
    expect(flightKey('h', byA)).not.toBe(flightKey('h', byB));
    expect(flightKey('h', byA)).toBe(flightKey('h', pullKey(A, 'http://x/a')));
  });
});
