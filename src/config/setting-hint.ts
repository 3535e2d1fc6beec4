/**
 * What an operator can set about an error. Low-level modules (store, fetch,
 * restore…) name the configuration keys involved (`AppError.settings`), never
 * the environment variables: this is where the keys become variables, for
 * the worker (job failed reasons, job logs) and the CLI (stderr).
 */
import { AppError } from '../lib/errors.js';
import { type Config, ENV_VARS } from './schema.js';

/** The environment variables of an error's settings: `['FLEETQ_MIN_RATE', 'FLEETQ_RATE_WINDOW']`. */
export function settingVariables(err: unknown): string[] {
  if (!(err instanceof AppError) || !err.settings) return [];
  return err.settings.map((key) => (Object.hasOwn(ENV_VARS, key) ? ENV_VARS[key as keyof Config] : key));
}

/** The error's message, followed by its settings' variables: `… over the 2.0 MiB cap (FLEETQ_MAX_IMAGE_SIZE)`. */
export function messageWithSettings(err: Error): string {
  const vars = settingVariables(err);
  return vars.length ? `${err.message} (${vars.join(' / ')})` : err.message;
}
