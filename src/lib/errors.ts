/**
 * One error base for the whole project. Every error carries a stable `code`
 * and says whether retrying can help (`permanent`). Only the worker boundary
 * (src/worker/) turns these into BullMQ's UnrecoverableError.
 *
 * Errors that only one module throws live in that module (`store/store-errors.ts`,
 * `fetch/fetch-errors.ts`, `lock/lock-errors.ts`, `restore/restore-errors.ts`,
 * `cli/exit-codes.ts`); the shared ones are here.
 */
export interface AppErrorOptions extends ErrorOptions {
  /**
   * The configuration keys (`config/schema.ts`) an operator can change about
   * this failure, e.g. `['maxImageSize']`. Low-level modules name the key and
   * never the environment variable: the layer that knows the configuration
   * (worker, CLI) shows the variable (`config/setting-hint.ts`).
   */
  settings?: readonly string[] | undefined;
}

export abstract class AppError extends Error {
  abstract readonly code: `E_${string}`;
  /** true when retrying the same job cannot succeed (bad input, 404, digest mismatch…). */
  abstract readonly permanent: boolean;
  /** See `AppErrorOptions.settings`. */
  readonly settings: readonly string[] | undefined;
  constructor(message: string, options?: AppErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.settings = options?.settings;
  }
}

/**
 * The base of an error class with a fixed code and permanence:
 * `export class NetworkError extends errorKind('E_NETWORK', false) {}`.
 */
export function errorKind<C extends `E_${string}`>(code: C, permanent: boolean) {
  return class extends AppError {
    readonly code: C = code;
    readonly permanent: boolean = permanent;
  };
}

/** A job payload or CLI argument failed validation. */
export class InvalidInputError extends errorKind('E_INVALID_INPUT', true) {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
  }
}

/**
 * A configuration value is wrong; the process must not start. `variable` is
 * the environment variable or flag, when the thrower knows it (config/);
 * a lower module names the key in `settings` instead.
 */
export class ConfigError extends errorKind('E_CONFIG', true) {
  constructor(
    message: string,
    readonly variable?: string | undefined,
    options?: AppErrorOptions,
  ) {
    super(message, options);
  }
}

/** Something went wrong with no more specific class; treated as transient. */
export class InternalError extends errorKind('E_INTERNAL', false) {}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Normalise anything thrown into an Error, keeping the original as `cause`. */
export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new InternalError(String(err), { cause: err });
}
