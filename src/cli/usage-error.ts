/** Bad command-line input: one line naming the flag, exit code 2, nothing touched. */
import type { CommanderError } from 'commander';
import { CliError, EXIT } from './exit-codes.js';

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE, 'E_USAGE');
  }
}

/**
 * `--flag: problem`, exactly once: parsers shared with other code may already
 * name the flag (`--queue: must be …`), and the prefix must not repeat.
 */
export function flagMessage(flag: string, message: string): string {
  const m = message.replace(/^error: /, '');
  return m.startsWith(`${flag}:`) ? m : `${flag}: ${m}`;
}

/** A flag-value parser for commander that throws a UsageError naming the flag. */
export function flagParser<T>(flag: string, parse: (v: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (err) {
      throw new UsageError(flagMessage(flag, (err as Error).message));
    }
  };
}

/** The value a user typed, quoted and cut short: never a whole payload. */
export function shown(v: string, max = 60): string {
  return JSON.stringify(v.length > max ? `${v.slice(0, max - 3)}...` : v);
}

export function positiveIntFlag(flag: string) {
  return flagParser(flag, (v) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`must be a whole number ≥ 1 (got ${shown(v)})`);
    return Number(v);
  });
}

/** Commander's error text, in fleetq's "--flag: problem" form where it names a flag. */
export function commanderMessage(err: CommanderError): string {
  const m = err.message.replace(/^error: /, '');
  let r: RegExpExecArray | null;
  if ((r = /^required option '(-\S+, )?(--[\w-]+)[^']*' not specified/.exec(m))) return `${r[2]}: is required`;
  if ((r = /^option '(-\S+, )?(--[\w-]+)[^']*' argument missing/.exec(m))) return `${r[2]}: needs a value`;
  if ((r = /^unknown option '([^']+)'(?:\s*\(Did you mean (\S+)\?\))?/.exec(m))) return `${r[1]}: unknown option${r[2] ? ` (did you mean ${r[2]}?)` : ''}`;
  if ((r = /^option '(-\S+, )?(--[\w-]+)[^']*' cannot be used with option '(-\S+, )?(--[\w-]+)/.exec(m))) return `${r[2]}: cannot be used with ${r[4]}`;
  return m.replace(/\n+/g, ' ');
}
