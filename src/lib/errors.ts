/**
 * One error base for the whole project. Every error carries a stable `code`
 * and says whether retrying can help (`permanent`). Only the worker boundary
 * (src/worker/) turns these into BullMQ's UnrecoverableError.
 */
export abstract class AppError extends Error {
  abstract readonly code: `E_${string}`;
  /** true when retrying the same job cannot succeed (bad input, 404, digest mismatch…). */
  abstract readonly permanent: boolean;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A job payload or CLI argument failed validation. */
export class InvalidInputError extends AppError {
  readonly code = 'E_INVALID_INPUT' as const;
  readonly permanent = true;
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

/** A configuration value is wrong; the process must not start. */
export class ConfigError extends AppError {
  readonly code = 'E_CONFIG' as const;
  readonly permanent = true;
  constructor(
    message: string,
    readonly variable: string,
  ) {
    super(message);
  }
}

/** Something went wrong with no more specific class; treated as transient. */
export class InternalError extends AppError {
  readonly code = 'E_INTERNAL' as const;
  readonly permanent = false;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Normalise anything thrown into an Error, keeping the original as `cause`. */
export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new InternalError(String(err), { cause: err });
}
