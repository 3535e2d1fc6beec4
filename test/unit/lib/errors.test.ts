/**
 * Errors in one place: every error class fleetq defines derives from AppError
 * (a stable E_ code, permanent or not), and low-level errors name config keys
 * that only the worker and the CLI turn into environment variables.
 */
import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import * as exitCodes from '../../../src/cli/exit-codes.js';
import * as usage from '../../../src/cli/usage-error.js';
import { messageWithSettings, settingVariables } from '../../../src/config/setting-hint.js';
import * as fetchErrors from '../../../src/fetch/fetch-errors.js';
import * as libErrors from '../../../src/lib/errors.js';
import { AppError, errorKind } from '../../../src/lib/errors.js';
import * as lockErrors from '../../../src/lock/lock-errors.js';
import * as fleet from '../../../src/ops/fleet.js';
import * as placement from '../../../src/placement/place-restore.js';
import * as redisServer from '../../../src/redis/redis-server.js';
import * as restoreErrors from '../../../src/restore/restore-errors.js';
import * as storeErrors from '../../../src/store/store-errors.js';
import { failureLine, toBullmqError } from '../../../src/worker/to-bullmq-error.js';

const modules = { exitCodes, usage, fetchErrors, libErrors, lockErrors, fleet, placement, redisServer, restoreErrors, storeErrors };
const errorClasses = Object.entries(modules).flatMap(([m, exports]) =>
  Object.entries(exports as Record<string, unknown>)
    .filter(([, v]) => v !== AppError && typeof v === 'function' && (v as { prototype?: unknown }).prototype instanceof Error)
    .map(([name, v]) => [`${m}.${name}`, v as abstract new (...args: never[]) => Error] as const),
);

describe('every error class', () => {
  it('is found (the check below is not vacuous)', () => {
    expect(errorClasses.length).toBeGreaterThanOrEqual(30);
    expect(errorClasses.map(([n]) => n)).toEqual(expect.arrayContaining(['exitCodes.CliError', 'usage.UsageError', 'fleet.UnknownHostError', 'placement.NoPlacementError', 'redisServer.RedisServerMissingError']));
  });

  it.each(errorClasses)('%s derives from AppError', (_name, cls) => {
    expect(cls.prototype).toBeInstanceOf(AppError);
  });

  it('a CLI error keeps its exit code and gets a code', () => {
    expect(new usage.UsageError('--x: bad')).toMatchObject({ code: 'E_USAGE', exitCode: 2, permanent: true, name: 'UsageError' });
    expect(new exitCodes.NotFoundError('no job 7')).toMatchObject({ code: 'E_NOT_FOUND', exitCode: 4 });
    expect(new exitCodes.DeclinedError()).toMatchObject({ code: 'E_DECLINED', exitCode: 1, message: 'aborted: nothing was changed' });
  });

  it('errorKind: the code, the permanence and the class name', () => {
    class Example extends errorKind('E_EXAMPLE', false) {}
    const e = new Example('boom', { cause: 1 });
    expect(e).toBeInstanceOf(AppError);
    expect(e).toMatchObject({ code: 'E_EXAMPLE', permanent: false, name: 'Example', message: 'boom', cause: 1, settings: undefined });
    expect(new fetchErrors.NetworkError('x')).toMatchObject({ code: 'E_NETWORK', permanent: false, name: 'NetworkError' });
  });
});

describe('settings: low-level errors name config keys; the worker and the CLI show the variables', () => {
  const capped = new storeErrors.BodyRejectedError('image at https://h/x is 3.0 MiB, over the 2.0 MiB cap', { settings: ['maxImageSize'] });
  const stalled = new fetchErrors.DownloadStalledError('download of https://h/x moved 1 B in 30s, under the minimum 64.0 KiB: stalled', { settings: ['minRate', 'rateWindowMs'] });

  it('the message itself names no variable', () => {
    expect(capped.message).not.toContain('FLEETQ_');
    expect(settingVariables(stalled)).toEqual(['FLEETQ_MIN_RATE', 'FLEETQ_RATE_WINDOW']);
    expect(settingVariables(new Error('plain'))).toEqual([]);
  });

  it('messageWithSettings appends them; an error without settings is its message', () => {
    expect(messageWithSettings(capped)).toBe('image at https://h/x is 3.0 MiB, over the 2.0 MiB cap (FLEETQ_MAX_IMAGE_SIZE)');
    expect(messageWithSettings(stalled)).toMatch(/stalled \(FLEETQ_MIN_RATE \/ FLEETQ_RATE_WINDOW\)$/);
    expect(messageWithSettings(new fetchErrors.NetworkError('reset'))).toBe('reset');
  });

  it("the job's failed reason, stack and job-log line carry the variable", () => {
    const out = toBullmqError(capped);
    expect(out).toBeInstanceOf(UnrecoverableError);
    expect(out.message).toBe(messageWithSettings(capped));
    expect(out.stack).toBe(`E_BODY_REJECTED: ${messageWithSettings(capped)}`);
    expect(failureLine(capped, { attemptsMade: 0, opts: { attempts: 5 } })).toBe(`error: E_BODY_REJECTED: ${messageWithSettings(capped)} (attempt 1/5; permanent: not retried)`);
    expect(toBullmqError(stalled).message).toMatch(/\(FLEETQ_MIN_RATE \/ FLEETQ_RATE_WINDOW\)$/);
  });

  it('the store names the root, not FLEETQ_ROOT', () => {
    const full = storeErrors.storeFsError(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }), 'writing x');
    expect(full).toBeInstanceOf(storeErrors.StoreFullError);
    expect((full as Error).message).not.toContain('FLEETQ_');
    expect(messageWithSettings(full as Error)).toMatch(/\(FLEETQ_ROOT\)$/);
  });
});
