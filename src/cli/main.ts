#!/usr/bin/env node
/** fleetq command line. Exit codes: 0 ok, 1 failure (job failed, runtime error), 2 bad input, 3 wait timeout. */
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../lib/errors.js';
import { VERSION } from '../version.js';
import { registerEnqueue } from './commands/enqueue.js';
import { registerWorker } from './commands/worker.js';
import { registerBoard } from './commands/board.js';
import { registerDlq } from './commands/dlq.js';
import { registerHosts } from './commands/hosts.js';
import { registerJobs } from './commands/jobs.js';
import { registerMaintenance } from './commands/maintenance.js';
import { registerPrewarm } from './commands/prewarm.js';
import { registerReroute } from './commands/reroute.js';
import { registerRetry } from './commands/retry.js';
import { UsageError } from './usage-error.js';
import { redactUrl } from '../lib/redact.js';

export function buildProgram(): Command {
  const program = new Command('fleetq')
    .description('job-queue worker fleet that gets microVM hosts ready to restore VMs')
    .version(VERSION)
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeErr: () => {} });
  registerWorker(program);
  registerEnqueue(program);
  registerHosts(program);
  registerJobs(program);
  registerRetry(program);
  registerDlq(program);
  registerReroute(program);
  registerMaintenance(program);
  registerPrewarm(program);
  registerBoard(program);
  for (const cmd of allCommands(program)) cmd.exitOverride().configureOutput({ writeErr: () => {} });
  return program;
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}

export async function main(argv = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return;
      if (err.code === 'commander.help') {
        process.exitCode = 0;
        return;
      }
      process.stderr.write(`fleetq: ${redactUrl(err.message.replace(/^error: /, ''))}\n`);
      process.exitCode = 2;
      return;
    }
    const cause = (err as { cause?: unknown }).cause;
    const usage = err instanceof UsageError ? err : cause instanceof UsageError ? cause : undefined;
    if (usage) {
      process.stderr.write(`fleetq: ${redactUrl(usage.message)}\n`);
      process.exitCode = 2;
      return;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`fleetq: ${redactUrl(err.message)}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`fleetq: ${redactUrl((err as Error).message ?? String(err))}\n`);
    process.exitCode = 1;
  }
}

await main();
