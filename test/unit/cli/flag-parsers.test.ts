/** src/cli/flags.ts: the flag parsers commands share, and payload errors turned into flag errors. Pure. */
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../../src/cli/exit-codes.js';
import { asUsageError, durationFlag, flagOf, hostFlag, hostFlagFor, hostListFlag, jobIdFlag, priorityFlag, usageMessage } from '../../../src/cli/flags.js';
import { UsageError } from '../../../src/cli/usage-error.js';
import { InvalidInputError } from '../../../src/lib/errors.js';

/** The UsageError a parser throws (exit 2), or a failure if it returns. */
function refused(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.USAGE);
    return err as UsageError;
  }
  throw new Error('accepted');
}

describe('flagOf: payload field → the flag that sets it', () => {
  it('the fields whose flag is not their kebab-case name', () => {
    expect(flagOf('imageDigest')).toBe('--digest');
    expect(flagOf('image')).toBe('--image');
    expect(flagOf('imageType')).toBe('--image-type');
    expect(flagOf('onDemand')).toBe('--on-demand');
  });
  it('anything else: kebab-case', () => {
    expect(flagOf('name')).toBe('--name');
    expect(flagOf('queueSize')).toBe('--queue-size');
    expect(flagOf('diskQueueSize')).toBe('--disk-queue-size');
  });
});

describe('usageMessage', () => {
  it('drops the "invalid <kind> payload:" prefix and the field, and names the flag', () => {
    const err = new InvalidInputError('invalid ensure-image payload: imageDigest must be "sha256:" and 64 hex digits (got "sha256:xyz")', 'imageDigest');
    expect(usageMessage(err)).toBe('--digest: must be "sha256:" and 64 hex digits (got "sha256:xyz")');
  });
  it('keeps a value the user typed into one flag, not a whole object or list', () => {
    expect(usageMessage(new InvalidInputError('invalid restore payload: cpu must be at least 1 (got "0")', 'cpu'))).toBe('--cpu: must be at least 1 (got "0")');
    expect(usageMessage(new InvalidInputError('invalid restore payload: nics must be a list (got "[1,2]")', 'nics'))).toBe('--nics: must be a list');
  });
});

describe('asUsageError', () => {
  it('passes a result through', () => {
    expect(asUsageError(() => 42)).toBe(42);
  });
  it('turns an InvalidInputError into a UsageError naming the flag', () => {
    const err = refused(() =>
      asUsageError(() => {
        throw new InvalidInputError('invalid restore payload: onDemand must be true or false', 'onDemand');
      }),
    );
    expect(err.message).toBe('--on-demand: must be true or false');
  });
  it('lets any other error through unchanged', () => {
    const boom = new Error('redis is down');
    expect(() =>
      asUsageError(() => {
        throw boom;
      }),
    ).toThrow(boom);
  });
});

describe('host flags', () => {
  it('accept a host id and return it', () => {
    expect(hostFlag('kvm-7')).toBe('kvm-7');
    expect(hostFlagFor('--to-host')('a.b_c-1')).toBe('a.b_c-1');
    expect(hostFlag('x'.repeat(63))).toBe('x'.repeat(63));
  });
  it('refuse anything else, naming their own flag and the value', () => {
    expect(refused(() => hostFlag('-x')).message).toMatch(/^--host: must be 1-63 characters .* \(got "-x"\)$/);
    expect(refused(() => hostFlagFor('--to-host')('a:b')).message).toMatch(/^--to-host: .*\(got "a:b"\)$/);
    expect(refused(() => hostFlag('x'.repeat(64))).message).toMatch(/^--host: must be 1-63 characters/);
    expect(refused(() => hostFlag('')).message).toMatch(/^--host: .*\(got ""\)$/);
  });
  it('cut a long value short in the message', () => {
    const long = `${'a'.repeat(200)} b`;
    const msg = refused(() => hostFlag(long)).message;
    expect(msg).not.toContain(long);
    expect(msg).toMatch(/\(got "a+\.\.\."\)$/);
  });
});

describe('durationFlag', () => {
  it('reads units to milliseconds', () => {
    const f = durationFlag('--older-than');
    expect(f('1500ms')).toBe(1500);
    expect(f('2s')).toBe(2000);
    expect(f('7d')).toBe(7 * 24 * 3600 * 1000);
  });
  it('refuses a bare number or a word, naming the flag', () => {
    expect(refused(() => durationFlag('--since')('yesterday')).message).toMatch(/^--since: "yesterday" is not a duration/);
    expect(refused(() => durationFlag('--every')('5')).message).toMatch(/^--every: "5" has no unit/);
  });
});

describe('priorityFlag', () => {
  it('a whole number 0..2097152 (BullMQ\'s range)', () => {
    expect(priorityFlag('0')).toBe(0);
    expect(priorityFlag('1000')).toBe(1000);
    expect(priorityFlag('2097152')).toBe(2_097_152);
  });
  it.each(['2097153', '-1', '1.5', '1e3', 'high', ''])('refuses %j', (v) => {
    expect(refused(() => priorityFlag(v)).message).toBe(`--priority: must be a whole number 0..2097152 (got ${JSON.stringify(v)})`);
  });
});

describe('jobIdFlag', () => {
  it('accepts ids BullMQ can hold as custom ids', () => {
    for (const id of ['sched-42', 'a', 'A.b_c-1', `x${'9'.repeat(127)}`]) expect(jobIdFlag(id)).toBe(id);
  });
  it.each([
    ['42', 'all digits: BullMQ would take it for one of its own ids'],
    ['a:b', 'a ":" (BullMQ uses it in keys)'],
    ['-x', 'starting with "-"'],
    [`x${'9'.repeat(128)}`, 'over 128 characters'],
    ['', 'empty'],
  ])('refuses %j (%s)', (v) => {
    expect(refused(() => jobIdFlag(v)).message).toMatch(/^--job-id: must be 1-128 letters, digits, "\.", "_" or "-", not all digits, no ":" \(got ".*"\)$/);
  });
});

describe('hostListFlag (--hosts h1,h2)', () => {
  const hosts = hostListFlag('--hosts');
  it('splits, trims and de-duplicates host ids', () => {
    expect(hosts('h1, h2,h1,,h3')).toEqual(['h1', 'h2', 'h3']);
  });
  it('refuses an empty list and a bad id, naming the flag and the id', () => {
    expect(refused(() => hosts(' , ')).message).toBe('--hosts: needs at least one host id (got " , ")');
    expect(refused(() => hosts('h1,-x')).message).toMatch(/^--hosts: host id "-x" must be 1-63 characters of letters, digits/);
    expect(refused(() => hosts('h1,a:b')).message).toMatch(/^--hosts: host id "a:b" /);
  });
});
