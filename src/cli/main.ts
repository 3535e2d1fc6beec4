#!/usr/bin/env node
/**
 * fleetq command line. Exit codes (one table for every command, see
 * exit-codes.ts): 0 ok, 1 failure (job failed, runtime error, declined),
 * 2 usage (bad input, missing --yes off a terminal), 3 wait timeout, 4 not found.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../lib/errors.js';
import { messageWithSettings } from '../config/setting-hint.js';
import { VERSION } from '../version.js';
import { registerEnqueue } from './commands/enqueue.js';
import { registerWorker } from './commands/worker.js';
import { registerBoard } from './commands/board.js';
import { registerDlq } from './commands/dlq.js';
import { registerHosts } from './commands/hosts.js';
import { registerJobs } from './commands/jobs.js';
import { registerMaintenance } from './commands/maintenance.js';
import { registerMigrate } from './commands/migrate.js';
import { registerPrewarm } from './commands/prewarm.js';
import { registerReroute } from './commands/reroute.js';
import { registerRetry } from './commands/retry.js';
import { CliError, EXIT } from './exit-codes.js';
import { quietOnEpipe } from './output.js';
import { commanderMessage } from './usage-error.js';
import { redactUrl } from '../lib/redact.js';

/** Commander prints help itself (stderr when it is an error); its error lines are ours to write. */
const OUTPUT = { outputError: () => {} };

export function buildProgram(): Command {
  const program = new Command('fleetq')
    .description('job-queue worker fleet that gets microVM hosts ready to restore VMs')
    .version(VERSION)
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput(OUTPUT)
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 failed (job failed, runtime error, declined), 2 usage (bad flag, missing --yes),\n3 timeout (--wait --timeout), 4 not found (no such job id).',
    );
  registerWorker(program);
  registerEnqueue(program);
  registerHosts(program);
  registerJobs(program);
  registerRetry(program);
  registerDlq(program);
  registerReroute(program);
  registerMaintenance(program);
  registerMigrate(program);
  registerPrewarm(program);
  registerBoard(program);
  for (const cmd of allCommands(program)) cmd.exitOverride().configureOutput(OUTPUT);
  return program;
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}

function fail(message: string, code: number): void {
  try {
    process.stderr.write(`fleetq: ${redactUrl(message)}\n`);
  } catch {
    // stderr gone too: the exit code still says it
  }
  process.exitCode = code;
}

export async function main(argv = process.argv): Promise<void> {
  quietOnEpipe(process.stdout);
  quietOnEpipe(process.stderr);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return;
      // `fleetq` or `fleetq jobs` alone: commander printed the help on stderr; a command is missing.
      if (err.code === 'commander.help') return void (process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
      if (err.exitCode === 0) return;
      return fail(commanderMessage(err), EXIT.USAGE);
    }
    const cause = (err as { cause?: unknown }).cause;
    const cli = err instanceof CliError ? err : cause instanceof CliError ? cause : undefined;
    if (cli) return fail(cli.message, cli.exitCode);
    if (err instanceof ConfigError) return fail(messageWithSettings(err), EXIT.USAGE);
    fail(err instanceof Error ? messageWithSettings(err) : String(err), EXIT.FAILED);
  }
}

await main();
