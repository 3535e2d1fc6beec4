/**
 * What the board shows of a failed attempt (BullMQ stores err.message and
 * err.stack), a pull's progress object, and the stock metrics fleetq exposes.
 */
import { UnrecoverableError } from 'bullmq';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { NetworkError } from '../../../src/fetch/fetch-errors.js';
import { progressReport } from '../../../src/fetch/fetch-image.js';
import { InvalidInputError } from '../../../src/lib/errors.js';
import { Digest } from '../../../src/lib/digest.js';
import { collectProcessMetrics, DROPPED_STOCK_METRICS, registerBuildInfo } from '../../../src/metrics/stock-metrics.js';
import { isRedisError } from '../../../src/metrics/worker-metrics.js';
import { DigestMismatchError } from '../../../src/store/store-errors.js';
import { attemptLabel, failureLine, toBullmqError } from '../../../src/worker/to-bullmq-error.js';

describe('toBullmqError: what BullMQ stores, hence what the board shows', () => {
  it('a permanent AppError: UnrecoverableError (no retry) whose stack is just "<code>: <message>"', () => {
    const err = new DigestMismatchError(Digest.parse(`sha256:${'a'.repeat(64)}`), Digest.parse(`sha256:${'b'.repeat(64)}`), 'https://h/x.img?token=REDACTED');
    const out = toBullmqError(err);
    expect(out).toBeInstanceOf(UnrecoverableError);
    expect(out.name).toBe('UnrecoverableError');
    expect(out.message).toBe(err.message);
    expect(out.stack).toBe(`E_DIGEST_MISMATCH: ${err.message}`);
    expect((out as { code?: string }).code).toBe('E_DIGEST_MISMATCH');
    expect(out.cause).toBe(err);
  });

  it('a transient AppError: retried (not Unrecoverable), its name kept, the same one-line stack', () => {
    const err = new NetworkError('network error fetching https://h/x.img: ECONNRESET');
    const out = toBullmqError(err);
    expect(out).not.toBeInstanceOf(UnrecoverableError);
    expect(out.name).toBe('NetworkError');
    expect(out.stack).toBe(`E_NETWORK: ${err.message}`);
    expect(out.stack).not.toMatch(/\n\s+at /);
  });

  it('an unexpected error keeps its real stack, with secrets redacted; a Redis error is still recognised', () => {
    const err = new TypeError('cannot read x of https://u:pw@h/x?token=SECRET');
    const out = toBullmqError(err);
    expect(out.name).toBe('TypeError');
    expect(out.message).toBe('cannot read x of https://REDACTED@h/x?token=REDACTED');
    expect(out.stack).toMatch(/^TypeError: cannot read x of https:\/\/REDACTED@h\/x\?token=REDACTED\n\s+at /);
    expect(out.stack).not.toContain('SECRET');
    expect(out.stack).not.toContain('pw@');
    const reply = Object.assign(new Error('OOM command not allowed when used memory > maxmemory'), { name: 'ReplyError' });
    expect(isRedisError(toBullmqError(reply))).toBe(true);
    expect(toBullmqError('a string').stack).toBe('E_INTERNAL: a string');
  });

  it('the job-log line of a failure says the code, the attempt, and what happens next', () => {
    const job = (attemptsMade: number, attempts: number) => ({ attemptsMade, opts: { attempts } });
    expect(attemptLabel(job(1, 5))).toBe('attempt 2/5');
    expect(failureLine(new NetworkError('reset'), job(0, 3))).toBe('error: E_NETWORK: reset (attempt 1/3; will be retried)');
    expect(failureLine(new NetworkError('reset'), job(2, 3))).toBe('error: E_NETWORK: reset (attempt 3/3; no attempts left)');
    expect(failureLine(new InvalidInputError('bad', 'image'), job(0, 3))).toBe('error: E_INVALID_INPUT: bad (attempt 1/3; permanent: not retried)');
    expect(failureLine(new Error('GET https://h/?token=SECRET'), job(0, 1))).toBe('error: GET https://h/?token=REDACTED (attempt 1/1; no attempts left)');
  });
});

describe("a pull's progress: {progress, bytes, total, rate}", () => {
  it('progress is the whole percent of a known total (Bull Board draws its ring from it)', () => {
    expect(progressReport(0, 1000, 10)).toEqual({ progress: 0, bytes: 0, total: 1000, rate: 0 });
    expect(progressReport(999, 1000, 1000)).toEqual({ progress: 99, bytes: 999, total: 1000, rate: 999 });
    expect(progressReport(1000, 1000, 500)).toEqual({ progress: 100, bytes: 1000, total: 1000, rate: 2000 });
    expect(progressReport(2000, 1000, 1000).progress).toBe(100);
    expect(progressReport(0, 0, 0).progress).toBe(100);
  });

  it('an unknown total keeps progress at 0 while bytes and rate move', () => {
    expect(progressReport(4096, null, 2000)).toEqual({ progress: 0, bytes: 4096, total: null, rate: 2048 });
  });
});

describe('stock metrics', () => {
  it('process and Node.js metrics without the three `_total` gauges promtool rejects; build info', async () => {
    for (const prefix of ['', 'fleetq_board_']) {
      const r = new Registry();
      collectProcessMetrics(r, prefix);
      registerBuildInfo(r);
      const text = await r.metrics();
      expect(text).toMatch(new RegExp(`^${prefix}process_cpu_user_seconds_total \\d`, 'm'));
      expect(text).toMatch(new RegExp(`^${prefix}nodejs_active_handles\\{`, 'm'));
      for (const name of DROPPED_STOCK_METRICS) expect(text).not.toContain(`${prefix}${name}`);
      // Every gauge named *_total would be flagged; none is left.
      const gauges = [...text.matchAll(/^# TYPE (\S+) gauge$/gm)].map((m) => m[1]!);
      expect(gauges.filter((g) => g.endsWith('_total'))).toEqual([]);
      expect(text).toMatch(new RegExp(`^fleetq_build_info\\{version="[^"]+",node="${process.version.replace(/\./g, '\\.')}"\\} 1$`, 'm'));
    }
  });
});
