/** The one place where our errors become BullMQ control flow: permanent → UnrecoverableError (no retries). */
import { UnrecoverableError } from 'bullmq';
import { AppError, coerceError } from '../lib/errors.js';

export function isPermanent(err: unknown): boolean {
  return err instanceof AppError && err.permanent;
}

export function toBullmqError(err: unknown): Error {
  const e = coerceError(err);
  if (isPermanent(e)) {
    const u = new UnrecoverableError(e.message);
    (u as { cause?: unknown }).cause = e;
    return u;
  }
  return e;
}

export function errorCode(err: unknown): string | undefined {
  return err instanceof AppError ? err.code : (err as { code?: string })?.code;
}
