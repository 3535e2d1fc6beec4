/** Error lines name the flag once, say what is wrong, and never echo a whole payload. */
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { EXIT, NotFoundError } from '../../../src/cli/exit-codes.js';
import { asUsageError, durationFlag, hostFlagFor, usageMessage } from '../../../src/cli/flags.js';
import { commanderMessage, flagMessage, flagParser, UsageError } from '../../../src/cli/usage-error.js';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { RESTORE, RestorePayload } from '../../../src/jobs/contracts/restore.js';
import { InvalidInputError } from '../../../src/lib/errors.js';
import { parseQueueKind } from '../../../src/ops/job-filter.js';

const message = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('did not throw');
};

describe('flag errors', () => {
  it('never repeat the prefix (a shared parser already names --queue)', () => {
    expect(message(() => flagParser('--queue', parseQueueKind)('foo'))).toBe('--queue: must be "images" or "restores" (got "foo")');
    expect(flagMessage('--x', '--x: bad')).toBe('--x: bad');
    expect(flagMessage('--x', 'bad')).toBe('--x: bad');
  });

  it('a duration without a unit is an error naming the flag (exit 2)', () => {
    let err: unknown;
    try {
      durationFlag('--older-than')('7');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(EXIT.USAGE);
    expect((err as Error).message).toBe('--older-than: "7" has no unit: write 7ms, 7s, 7m, 7h or 7d');
    expect(durationFlag('--since')('90m')).toBe(90 * 60_000);
  });

  it('host flags name the flag they belong to', () => {
    expect(message(() => hostFlagFor('--from-host')('a b'))).toMatch(/^--from-host: must be 1-63 characters/);
  });

  it('payload errors become flag errors: --name, not "name"; several fields each as a flag', () => {
    expect(message(() => asUsageError(() => parsePayload(RestorePayload, { kind: 'clone', snapshot: 's', name: 'bad name' }, RESTORE)))).toMatch(/^--name: must match/);
    expect(message(() => asUsageError(() => parsePayload(RestorePayload, { kind: 'clone', snapshot: 's', name: 'v', vm: 'x', onDemand: 1 }, RESTORE)))).toMatch(
      /^--vm: is not a known field for kind "clone"$|^--on-demand: must be true or false/,
    );
    expect(usageMessage(new InvalidInputError('invalid restore payload: vm, imageDigest is not a known field', 'vm, imageDigest'))).toBe('--vm, --digest: is not a known field');
  });

  it('a value that is a whole object is not echoed back', () => {
    const err = new InvalidInputError('invalid restore payload: (root) must be an object (got "{\\"kind\\":\\"clone\\",\\"snapshot\\":\\"s\\"}")', '(root)');
    expect(usageMessage(err)).toBe('invalid input: must be an object');
    const kind = new InvalidInputError('invalid restore payload: kind must be "clone" or "restore" (got "teleport")', 'kind');
    expect(usageMessage(kind)).toBe('--kind: must be "clone" or "restore" (got "teleport")');
  });

  it("commander's errors are put in the same form", () => {
    const e = (code: string, msg: string) => new CommanderError(1, code, msg);
    expect(commanderMessage(e('commander.missingMandatoryOptionValue', "error: required option '--host <id>' not specified"))).toBe('--host: is required');
    expect(commanderMessage(e('commander.optionMissingArgument', "error: option '--host <ids>' argument missing"))).toBe('--host: needs a value');
    expect(commanderMessage(e('commander.unknownOption', "error: unknown option '--hots'\n(Did you mean --host?)"))).toBe('--hots: unknown option (did you mean --host?)');
    expect(commanderMessage(e('commander.unknownCommand', "error: unknown command 'bogus'"))).toBe("unknown command 'bogus'");
  });

  it('not found is its own exit code', () => {
    expect(new NotFoundError('no job "x"').exitCode).toBe(4);
    expect(EXIT).toEqual({ OK: 0, FAILED: 1, USAGE: 2, TIMEOUT: 3, NOT_FOUND: 4 });
  });
});
