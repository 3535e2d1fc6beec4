/** The --wait reporters, fed with job snapshots as the waiter would read them from Redis. */
import { describe, expect, it } from 'vitest';
import { describeTransfer, finalMessage, finalReason, type JobSnapshot, LineReporter, readProgress, statusLine } from '../../../src/cli/progress.js';

const MiB = 1024 ** 2;
const snap = (s: Partial<JobSnapshot>): JobSnapshot => ({ id: 'j1', state: 'waiting', attemptsMade: 0, attempts: 3, ...s });

describe('job progress in every shape fleetq writes', () => {
  it('reads {progress, bytes, total, rate}, the older {bytes, total, rate}, {phase, startedAt} and a number', () => {
    expect(readProgress({ progress: 40, bytes: 40 * MiB, total: 100 * MiB, rate: 10 * MiB })).toEqual({ percent: 40, bytes: 40 * MiB, total: 100 * MiB, rate: 10 * MiB });
    expect(readProgress({ bytes: 25 * MiB, total: 100 * MiB, rate: MiB })).toMatchObject({ percent: 25 });
    expect(readProgress({ bytes: 25 * MiB, total: null, rate: MiB })).toEqual({ bytes: 25 * MiB, rate: MiB }); // no length: no percent
    expect(readProgress({ phase: 'cloning', startedAt: 1000 })).toEqual({ phase: 'cloning', startedAt: 1000 });
    expect(readProgress(55)).toEqual({ percent: 55 });
    expect(readProgress(0)).toEqual({ percent: 0 });
    expect(readProgress(undefined)).toEqual({});
    expect(describeTransfer({ bytes: 40 * MiB, total: 100 * MiB, rate: 10 * MiB })).toBe('40.0 MiB of 100.0 MiB, 10.0 MiB/s, ETA 6s');
  });
});

describe('one line per change when stderr is not a terminal', () => {
  it('active attempt n/N, progress as it passes 25/50/75 %, a failed attempt with its backoff, the next attempt; nothing at the end (stdout says it)', () => {
    const now = 100_000;
    const r = new LineReporter(() => now);
    const lines = [
      snap({}),
      snap({ state: 'active' }),
      snap({ state: 'active', progress: { progress: 10, bytes: 10 * MiB, total: 100 * MiB, rate: 5 * MiB } }),
      snap({ state: 'active', progress: { progress: 30, bytes: 30 * MiB, total: 100 * MiB, rate: 5 * MiB } }),
      snap({ state: 'delayed', attemptsMade: 1, failedReason: 'GET http://u/x answered HTTP 500 (upstream server error)', dueAt: now + 4_000 }),
      snap({ state: 'waiting', attemptsMade: 1 }),
      snap({ state: 'active', attemptsMade: 1 }),
      snap({ state: 'active', attemptsMade: 1, progress: { bytes: 80 * MiB, total: 100 * MiB, rate: 5 * MiB } }), // old shape, jumps past 3 marks
      snap({ state: 'active', attemptsMade: 1, progress: { bytes: 90 * MiB, total: 100 * MiB, rate: 5 * MiB } }),
      snap({ state: 'completed', attemptsMade: 2, returnvalue: { outcome: 'pulled', digest: 'sha256:ab' } }),
    ].flatMap((s) => r.update(s));
    expect(lines).toEqual([
      'active (attempt 1/3)',
      '30% (30.0 MiB of 100.0 MiB, 5.0 MiB/s, ETA 14s)',
      'attempt 1/3 failed: GET http://u/x answered HTTP 500 (upstream server error); retrying in 4s',
      'waiting for a worker',
      'active (attempt 2/3)',
      '80% (80.0 MiB of 100.0 MiB, 5.0 MiB/s, ETA 4s)', // one line for the marks it passed at once
    ]);
  });

  it('an attempt that failed and was retried at once, between two looks, is still reported', () => {
    const r = new LineReporter();
    r.update(snap({ state: 'active' }));
    expect(r.update(snap({ state: 'active', attemptsMade: 1, failedReason: 'boom' }))).toEqual(['attempt 1/3 failed: boom; retrying now', 'active (attempt 2/3)']);
  });

  it("a restore's phases and its base image's pull", () => {
    const r = new LineReporter();
    const child = { id: 'r1.image.0', state: 'active', attemptsMade: 0, attempts: 5 };
    const lines = [
      snap({ id: 'r1', state: 'active', progress: { phase: 'inspecting', startedAt: 1 } }),
      snap({ id: 'r1', state: 'waiting-children', progress: { phase: 'ensuring-image', startedAt: 1 }, child: { ...child, progress: { progress: 50, bytes: 5, total: 10, rate: 1 } } }),
      snap({ id: 'r1', state: 'active', progress: { phase: 'cloning', startedAt: 1 } }),
    ].flatMap((s) => r.update(s));
    expect(lines).toEqual([
      'active (attempt 1/3)',
      'phase: inspecting',
      'waiting for its base image (job r1.image.0)',
      'base image job r1.image.0: active (attempt 1/5)',
      'base image 50% (5 B of 10 B, 1 B/s, ETA 5s)',
      'active (attempt 1/3)',
      'phase: cloning',
    ]);
  });
});

describe('the final message', () => {
  it('never says "will retry" after the last attempt, and says how many attempts were used', () => {
    const old = 'GET http://u/x answered HTTP 500 (upstream error: will retry)';
    const m = finalMessage(snap({ state: 'failed', attemptsMade: 5, attempts: 5, failedReason: old }));
    expect(m).toBe('j1 failed after 5 attempts (all of 5): GET http://u/x answered HTTP 500 (upstream server error)');
    expect(m).not.toMatch(/will retry/);
    expect(finalReason('boom, will be retried')).toBe('boom');
  });
  it('a permanent failure says it was not retried; one attempt with no retries says so', () => {
    expect(finalMessage(snap({ state: 'failed', attemptsMade: 1, attempts: 5, failedReason: 'HTTP 404' }))).toBe('j1 failed on attempt 1 of 5, not retried (permanent error): HTTP 404');
    expect(finalMessage(snap({ state: 'failed', attemptsMade: 1, attempts: 1, failedReason: 'x' }))).toBe('j1 failed (1 attempt, no retries configured): x');
  });
  it('a completion names the outcome and the attempt when it took more than one', () => {
    expect(finalMessage(snap({ state: 'completed', attemptsMade: 1, returnvalue: { outcome: 'present', digest: 'sha256:ab' } }))).toBe('j1 completed: present sha256:ab');
    expect(finalMessage(snap({ state: 'completed', attemptsMade: 3, returnvalue: { outcome: 'pulled' } }))).toBe('j1 completed: pulled (attempt 3 of 3)');
  });
});

describe('the terminal status line', () => {
  it('a pull: bar, percent, bytes, rate, ETA, attempt n/N', () => {
    const line = statusLine(snap({ state: 'active', attemptsMade: 1, progress: { progress: 50, bytes: 50 * MiB, total: 100 * MiB, rate: 10 * MiB } }), 0, 0);
    expect(line).toBe('job j1  attempt 2/3  [##########..........] 50%  50.0 MiB of 100.0 MiB, 10.0 MiB/s, ETA 5s');
  });
  it('the backoff between attempts counts down', () => {
    expect(statusLine(snap({ state: 'delayed', attemptsMade: 1, dueAt: 10_000 }), 7_000, 0)).toBe('job j1  attempt 1/3 failed; retrying in 3s (attempt 2/3)');
    expect(statusLine(snap({ state: 'delayed', dueAt: 70_000 }), 10_000, 0)).toBe('job j1  delayed: starts in 1m');
  });
  it('a restore shows its phase and elapsed time, and its base image while it waits for it', () => {
    expect(statusLine(snap({ state: 'active', progress: { phase: 'cloning', startedAt: 1_000 } }), 13_000, 0)).toBe('job j1  attempt 1/3  cloning 12s');
    const child = { id: 'j1.image.0', state: 'active', attemptsMade: 0, attempts: 5, progress: { bytes: MiB, total: 4 * MiB, rate: MiB } };
    expect(statusLine(snap({ state: 'waiting-children', child }), 0, 0)).toBe('job j1  base image attempt 1/5  [#####...............] 25%  1.0 MiB of 4.0 MiB, 1.0 MiB/s, ETA 3s');
  });
  it('waiting shows for how long; a long id (a UUID) is cut so the line fits', () => {
    expect(statusLine(snap({}), 65_000, 0)).toBe('job j1  queued, waiting for a worker 1m5s');
    expect(statusLine(snap({ id: '497820b9-e99d-448f-b551-15a9e7c47d61', state: 'active', progress: 0 }), 3_000, 0)).toBe('job 497820b9…  attempt 1/3  starting 3s');
  });
});
