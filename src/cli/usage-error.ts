/** Bad command-line input: one line naming the flag, exit code 2, nothing touched. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/** A flag-value parser for commander that throws a UsageError naming the flag. */
export function flagParser<T>(flag: string, parse: (v: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message}`);
    }
  };
}

export function positiveIntFlag(flag: string) {
  return flagParser(flag, (v) => {
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`must be a whole number ≥ 1 (got ${JSON.stringify(v)})`);
    return Number(v);
  });
}
