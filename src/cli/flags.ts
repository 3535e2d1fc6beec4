/** Flag parsers shared by commands; each failure names its flag (exit 2 via UsageError). */
import { HostId } from '../config/schema.js';
import { InvalidInputError } from '../lib/errors.js';
import { parseDuration } from '../lib/units.js';
import { flagMessage, flagParser, shown, UsageError } from './usage-error.js';

/** Payload field → the flag that sets it, so errors name what the user typed. */
const FLAG_OF: Record<string, string> = { image: '--image', imageDigest: '--digest', imageType: '--image-type', onDemand: '--on-demand' };

/** `imageDigest` → `--digest`, `onDemand` → `--on-demand`. */
export function flagOf(field: string): string {
  return FLAG_OF[field] ?? `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * An InvalidInputError's message, for the command line: the field becomes
 * its flag, and a value that is a whole object or list is not echoed (only
 * what the user typed into one flag is worth showing back).
 */
export function usageMessage(err: InvalidInputError): string {
  const fields = err.field.split(/,\s*/).filter((f) => f && f !== '(root)');
  const flags = fields.map(flagOf).join(', ');
  let problem = err.message.replace(/^invalid [\w-]+ payload: /, '');
  if (problem.startsWith(`${err.field} `)) problem = problem.slice(err.field.length + 1);
  problem = problem.replace(/ \(got "[[{].*\)$/, '');
  return flags ? flagMessage(flags, problem) : `invalid input: ${problem}`;
}

/** Run a payload validation; an InvalidInputError becomes a UsageError naming the flag. */
export function asUsageError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidInputError) throw new UsageError(usageMessage(err));
    throw err;
  }
}

/** A host id flag, errors naming `flag` (`--from-host`, `--to-host`…). */
export const hostFlagFor = (flag: string) =>
  flagParser(flag, (v) => {
    const r = HostId.safeParse(v);
    if (!r.success) throw new Error(`${r.error.issues[0]?.message} (got ${shown(v)})`);
    return v;
  });

export const hostFlag = hostFlagFor('--host');

/** A comma-separated list of host ids (`--hosts h1,h2`), each checked, errors naming `flag`; at least one. */
export const hostListFlag = (flag: string) =>
  flagParser(flag, (v) => {
    const hosts = [...new Set(v.split(',').map((x) => x.trim()).filter(Boolean))];
    if (hosts.length === 0) throw new Error(`needs at least one host id (got ${shown(v)})`);
    for (const h of hosts) {
      const r = HostId.safeParse(h);
      if (!r.success) throw new Error(`host id ${shown(h)} ${r.error.issues[0]?.message}`);
    }
    return hosts;
  });

/** A duration flag: a unit is required (`7d`, `90m`, `1500ms`); a bare number is an error naming the flag. */
export const durationFlag = (flag: string) => flagParser(flag, parseDuration);

export const priorityFlag = flagParser('--priority', (v) => {
  if (!/^\d+$/.test(v) || Number(v) > 2_097_152) throw new Error(`must be a whole number 0..2097152 (got ${shown(v)})`);
  return Number(v);
});

export const jobIdFlag = flagParser('--job-id', (v) => {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(v) || /^\d+$/.test(v)) {
    throw new Error(`must be 1-128 letters, digits, ".", "_" or "-", not all digits, no ":" (got ${shown(v)})`);
  }
  return v;
});
