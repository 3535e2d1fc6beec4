/**
 * fleetq's exit codes: one table, the same in every command (README, "CLI
 * reference"). Commands never pick numbers themselves: they throw one of the
 * errors below, or set `process.exitCode` from `EXIT`.
 *
 * | code | meaning                                                                 |
 * |------|-------------------------------------------------------------------------|
 * | 0    | success (also: `--dry-run`, nothing matched, output cut short by a pipe) |
 * | 1    | failure: the waited-for job failed, an item of a batch failed, the      |
 * |      | operation was declined at the prompt, or a runtime error (Redis down)   |
 * | 2    | usage: a bad flag or value, a missing `--yes` off a terminal,            |
 * |      | `--require-live-host` with no live worker; nothing was changed           |
 * | 3    | timeout: `--wait --timeout` elapsed (the job carries on)                 |
 * | 4    | not found: a job id named on the command line does not exist            |
 */
import { AppError } from '../lib/errors.js';

export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  TIMEOUT: 3,
  NOT_FOUND: 4,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that ends the command with one line on stderr and a given exit code. */
export class CliError extends AppError {
  readonly permanent = true;
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    readonly code: `E_${string}` = 'E_CLI',
  ) {
    super(message);
  }
}

/** A job id (or other object named on the command line) does not exist: exit 4. */
export class NotFoundError extends CliError {
  constructor(message: string) {
    super(message, EXIT.NOT_FOUND, 'E_NOT_FOUND');
  }
}

/** The operator answered "no" at a confirmation prompt: exit 1, nothing changed. */
export class DeclinedError extends CliError {
  constructor(message = 'aborted: nothing was changed') {
    super(message, EXIT.FAILED, 'E_DECLINED');
  }
}
