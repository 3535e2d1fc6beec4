/** Flag parsers shared by commands; each failure names its flag (exit 2 via UsageError). */
import { HostId } from '../config/schema.js';
import { InvalidInputError } from '../lib/errors.js';
import { parseDuration } from '../lib/units.js';
import { flagParser, UsageError } from './usage-error.js';

/** Payload field → the flag that sets it, so errors name what the user typed. */
const FLAG_OF: Record<string, string> = { image: '--image', imageDigest: '--digest', imageType: '--image-type' };

/** Run a payload validation; an InvalidInputError becomes a UsageError naming the flag. */
export function asUsageError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidInputError) {
      const flag = FLAG_OF[err.field] ?? `--${err.field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      throw new UsageError(`${flag}: ${err.message.replace(/^invalid [\w-]+ payload: \S+ /, '')}`);
    }
    throw err;
  }
}

export const hostFlag = flagParser('--host', (v) => {
  const r = HostId.safeParse(v);
  if (!r.success) throw new Error(`${r.error.issues[0]?.message} (got ${JSON.stringify(v)})`);
  return v;
});

export const durationFlag = (flag: string) => flagParser(flag, parseDuration);

export const priorityFlag = flagParser('--priority', (v) => {
  if (!/^\d+$/.test(v) || Number(v) > 2_097_152) throw new Error(`must be a whole number 0..2097152 (got ${JSON.stringify(v)})`);
  return Number(v);
});

export const jobIdFlag = flagParser('--job-id', (v) => {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(v) || /^\d+$/.test(v)) {
    throw new Error(`must be 1-128 letters, digits, ".", "_" or "-", not all digits, no ":" (got ${JSON.stringify(v)})`);
  }
  return v;
});
