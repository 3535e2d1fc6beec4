/** src/ops/job-filter.ts: the filters `jobs ls`, `retry`, `reroute`… share. Pure. */
import { describe, expect, it } from 'vitest';
import { bullStates, type JobLike, lastActivity, matches, parseQueueKind, parseRegex, parseStates, USER_STATES } from '../../../src/ops/job-filter.js';

const job = (j: Partial<JobLike> = {}): JobLike => ({ name: 'ensure-image', timestamp: 1_000, ...j });

describe('states', () => {
  it('"waiting" covers every BullMQ state a job waits in; the others map to themselves', () => {
    expect(bullStates('waiting')).toEqual(['wait', 'prioritized', 'waiting-children']);
    for (const s of USER_STATES.filter((x) => x !== 'waiting')) expect(bullStates(s)).toEqual([s]);
  });

  it('parses a comma list, trimmed and without repeats, in the order given', () => {
    expect(parseStates('failed')).toEqual(['failed']);
    expect(parseStates(' delayed , failed,delayed ,')).toEqual(['delayed', 'failed']);
    expect(parseStates(USER_STATES.join(','))).toEqual([...USER_STATES]);
  });

  it('an unknown or empty state names the flag, the bad word and the choices', () => {
    const choices = `(expected ${USER_STATES.join(', ')})`;
    expect(() => parseStates('failed,exploded')).toThrow(`--state: unknown state "exploded" ${choices}`);
    expect(() => parseStates('wait', '--from-state')).toThrow(`--from-state: unknown state "wait" ${choices}`);
    expect(() => parseStates(' , ')).toThrow(`--state: unknown state " , " ${choices}`);
    expect(() => parseStates('')).toThrow(`--state: unknown state "" ${choices}`);
  });
});

describe('queue kind', () => {
  it('"images" or "restores", nothing else (not even a different case)', () => {
    expect(parseQueueKind('images')).toBe('images');
    expect(parseQueueKind('restores')).toBe('restores');
    for (const bad of ['Images', 'image', 'restore', '', 'images ']) {
      expect(() => parseQueueKind(bad)).toThrow(`--queue: must be "images" or "restores" (got ${JSON.stringify(bad)})`);
    }
  });
});

describe('reason pattern', () => {
  it('is a case-insensitive regular expression', () => {
    const re = parseRegex('http 50[0-9]');
    expect(re.flags).toBe('i');
    expect(re.test('GET … answered HTTP 503 (upstream server error)')).toBe(true);
    expect(re.test('HTTP 404')).toBe(false);
  });

  it('an invalid one names the flag and says why', () => {
    expect(() => parseRegex('(unclosed')).toThrow(/^--reason: not a valid regular expression: .*unterminated group/i);
    expect(() => parseRegex('[', '--grep')).toThrow(/^--grep: not a valid regular expression: /);
  });
});

describe('matching', () => {
  it('last activity: finished, else processed, else created', () => {
    expect(lastActivity(job({ timestamp: 1, processedOn: 2, finishedOn: 3 }))).toBe(3);
    expect(lastActivity(job({ timestamp: 1, processedOn: 2 }))).toBe(2);
    expect(lastActivity(job({ timestamp: 1 }))).toBe(1);
  });

  it('an empty filter matches every job', () => {
    expect(matches(job(), {})).toBe(true);
    expect(matches(job({ name: 'restore', failedReason: 'x' }), { name: undefined, reason: undefined, sinceTs: undefined })).toBe(true);
  });

  it('name is exact', () => {
    expect(matches(job({ name: 'restore' }), { name: 'restore' })).toBe(true);
    expect(matches(job({ name: 'restore' }), { name: 'restor' })).toBe(false);
  });

  it('reason tests the failed reason; a job without one matches only a pattern that accepts ""', () => {
    const failed = job({ failedReason: 'GET x answered HTTP 404 (image not found: check the URL)' });
    expect(matches(failed, { reason: parseRegex('http 404') })).toBe(true);
    expect(matches(failed, { reason: parseRegex('HTTP 500') })).toBe(false);
    expect(matches(job(), { reason: parseRegex('HTTP') })).toBe(false);
    expect(matches(job(), { reason: parseRegex('^$') })).toBe(true);
  });

  it('since keeps jobs whose last activity is at or after it', () => {
    const j = job({ timestamp: 100, processedOn: 200, finishedOn: 300 });
    expect(matches(j, { sinceTs: 300 })).toBe(true);
    expect(matches(j, { sinceTs: 301 })).toBe(false);
    // An old job that finished recently counts as recent.
    expect(matches(j, { sinceTs: 250 })).toBe(true);
  });

  it('every condition must hold', () => {
    const j = job({ name: 'restore', failedReason: 'E_COCOON_NETWORK', finishedOn: 500 });
    expect(matches(j, { name: 'restore', reason: /network/i, sinceTs: 400 })).toBe(true);
    expect(matches(j, { name: 'ensure-image', reason: /network/i, sinceTs: 400 })).toBe(false);
    expect(matches(j, { name: 'restore', reason: /disk/i, sinceTs: 400 })).toBe(false);
    expect(matches(j, { name: 'restore', reason: /network/i, sinceTs: 600 })).toBe(false);
  });
});
