/**
 * The one place where our errors become BullMQ control flow: permanent →
 * UnrecoverableError (no retries). Also what the board shows of a failure.
 *
 * BullMQ stores `err.message` as the job's failedReason and `err.stack` in its
 * stacktrace, which Bull Board's Error tab shows instead of the reason. For a
 * classified failure (an AppError) that stack is just `<code>: <message>`: the
 * frames would be fleetq's own (`at toBullmqError (…)`), never what an
 * operator needs. An unexpected error keeps its real stack, redacted.
 * The worker knows the configuration: an error's settings are shown as the
 * variables that set them (`… cap (FLEETQ_MAX_IMAGE_SIZE)`).
 */
import { UnrecoverableError } from 'bullmq';
import { messageWithSettings } from '../config/setting-hint.js';
import { AppError, coerceError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';

export function isPermanent(err: unknown): boolean {
  return err instanceof AppError && err.permanent;
}

export function toBullmqError(err: unknown): Error {
  const e = coerceError(err);
  if (e instanceof AppError) {
    // Its message shows URLs redacted already (by construction; redacting twice can eat a ":" after a parameter).
    const message = messageWithSettings(e);
    const out = e.permanent ? new UnrecoverableError(message) : new Error(message);
    if (!e.permanent) out.name = e.name;
    Object.assign(out, { code: e.code, cause: e });
    out.stack = `${e.code}: ${message}`;
    return out;
  }
  // Unexpected: the real stack is worth having, without secrets. Name and message kept (Redis errors are told by them).
  const out = new Error(redactUrl(e.message), { cause: e });
  out.name = e.name;
  const code = (e as { code?: unknown }).code;
  if (code !== undefined) Object.assign(out, { code });
  out.stack = redactUrl(e.stack ?? `${e.name}: ${e.message}`);
  return out;
}

export function errorCode(err: unknown): string | undefined {
  return err instanceof AppError ? err.code : (err as { code?: string })?.code;
}

/** "attempt 2/5" (after a manual retry the count may pass the total). */
export function attemptLabel(job: { attemptsMade: number; opts: { attempts?: number | undefined } }): string {
  return `attempt ${job.attemptsMade + 1}/${job.opts.attempts ?? 1}`;
}

/**
 * The job-log line of a failed attempt: `error: <code>: <message> (attempt 2/5; will be retried)`.
 * Bull Board colours a line that starts with "error:".
 */
export function failureLine(err: unknown, job: { attemptsMade: number; opts: { attempts?: number | undefined } }): string {
  const e = coerceError(err);
  const code = errorCode(e);
  const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  const next = isPermanent(e) ? 'permanent: not retried' : last ? 'no attempts left' : 'will be retried';
  return `error: ${code ? `${code}: ` : ''}${e instanceof AppError ? messageWithSettings(e) : redactUrl(e.message)} (${attemptLabel(job)}; ${next})`;
}
