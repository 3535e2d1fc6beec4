/** The pure parts of the peer server: Range decisions, the shared rate budget, the token check. */
import { describe, expect, it } from 'vitest';
import { tokenChecker } from '../../../src/peer/peer-token.js';
import { decideRange } from '../../../src/peer/range.js';
import { RateLimiter } from '../../../src/peer/rate-limiter.js';

describe('decideRange', () => {
  it.each([
    [undefined, { kind: 'full' }],
    ['bytes=0-99', { kind: 'partial', start: 0, end: 99 }],
    ['bytes=10-', { kind: 'partial', start: 10, end: 999 }],
    ['bytes=-100', { kind: 'partial', start: 900, end: 999 }],
    ['bytes=-5000', { kind: 'partial', start: 0, end: 999 }],
    ['bytes=990-5000', { kind: 'partial', start: 990, end: 999 }],
    ['bytes=1000-', { kind: 'unsatisfiable' }],
    ['bytes=1000-1001', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=5-1', { kind: 'full' }], // invalid: ignored
    ['bytes=0-1,4-5', { kind: 'full' }], // several ranges: ignored
    ['items=0-1', { kind: 'full' }],
    ['bytes=-', { kind: 'full' }],
    ['bytes=x-1', { kind: 'full' }],
    ['bytes=99999999999999999999-', { kind: 'full' }],
  ])('%s of 1000 bytes', (header, want) => {
    expect(decideRange(header, 1000)).toEqual(want);
  });
});

describe('RateLimiter', () => {
  it('books bytes on one clock for all callers: waits grow with the bytes past the burst', () => {
    let now = 1000;
    const r = new RateLimiter(1000, 100, () => now); // 1000 B/s, 100 B burst
    expect(r.reserve(100)).toBe(0); // the burst
    expect(r.reserve(100)).toBe(100); // 100 B more: 100 ms
    expect(r.reserve(500)).toBe(600); // another caller queues behind
    now += 600;
    expect(r.reserve(0)).toBe(0);
    now += 10_000; // idle: the budget refills to the burst, not beyond
    expect(r.reserve(100)).toBe(0);
    expect(r.reserve(200)).toBe(200);
  });
});

describe('tokenChecker', () => {
  const ok = tokenChecker('the-fleet-token-123');
  it.each([
    ['Bearer the-fleet-token-123', true],
    ['bearer the-fleet-token-123', true],
    ['Bearer the-fleet-token-124', false],
    ['Bearer the-fleet-token-12', false],
    ['Bearer ', false],
    ['Basic the-fleet-token-123', false],
    ['the-fleet-token-123', false],
    [undefined, false],
  ])('%s → %s', (header, want) => {
    expect(ok(header)).toBe(want);
  });
});
