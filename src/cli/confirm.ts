/**
 * Confirmation for destructive commands (clean, dlq purge, dlq requeue,
 * retry, reroute): they show what they would do and then
 *   - with --yes: go ahead;
 *   - on a terminal: ask "[y/N]" on stderr, and go ahead only on "y"/"yes"
 *     (anything else: exit 1, nothing changed);
 *   - not on a terminal, without --yes: refuse (exit 2, nothing changed).
 * Refusing is the safe default off a terminal: a script or cron job that
 * forgot --yes fails loudly instead of deleting; `--yes` makes the intent
 * explicit in the script. --dry-run never asks and never changes anything.
 */
import { createInterface } from 'node:readline';
import { redactUrl } from '../lib/redact.js';
import { DeclinedError } from './exit-codes.js';
import { interactive } from './output.js';
import { UsageError } from './usage-error.js';

export interface ConfirmFlags {
  yes?: boolean;
  dryRun?: boolean;
}

/** Read one line from stdin (a terminal): the answer to a question written on stderr. */
async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await new Promise<string>((resolve) => {
      rl.once('close', () => resolve(''));
      rl.question(redactUrl(question), resolve);
    });
  } finally {
    rl.close();
  }
}

/**
 * Ask before doing `action` (e.g. "remove 6 completed jobs older than 7d from
 * images-h1"). Resolves when the command may go ahead; throws otherwise.
 * Call only when there is something to do, and never under --dry-run.
 */
export async function confirm(action: string, flags: ConfirmFlags, isInteractive = interactive()): Promise<void> {
  if (flags.yes) return;
  if (!isInteractive) {
    throw new UsageError(`--yes: required to ${action} when not on a terminal (nothing was changed; --dry-run shows what would change)`);
  }
  const answer = (await ask(`${action}? [y/N] `)).trim().toLowerCase();
  if (answer !== 'y' && answer !== 'yes') throw new DeclinedError();
}

/** The options every destructive command takes. */
export function addConfirmFlags<C extends { option(flags: string, description: string): C }>(cmd: C, what: string): C {
  return cmd.option('--dry-run', `print what would ${what} and change nothing`).option('-y, --yes', 'do it without asking (required when not on a terminal)');
}
