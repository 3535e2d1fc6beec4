/**
 * `fleetq migrate [--dry-run] [--json] [--remove-old [--yes]]`: move jobs
 * from the old queue names (`images-<host>`, `restores-<host>`) to the
 * hash-tagged ones (`images-{<host>}`, `restores-{<host>}`). Moving keeps
 * every job whole (queues/migrate-legacy.ts) and is idempotent: running it
 * again moves nothing. Run it after stopping the old workers; new workers may
 * already be running.
 */
import type { Command } from 'commander';
import { migrateLegacyQueues, type MigrationReport, type QueueMigration } from '../../queues/migrate-legacy.js';
import { confirm, type ConfirmFlags } from '../confirm.js';
import { withFleet } from '../fleet-command.js';
import { printErr, printJson, printLine } from '../output.js';

interface MigrateFlags extends ConfirmFlags {
  json?: boolean;
  removeOld?: boolean;
}

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('move waiting, delayed, prioritized and failed jobs from the old queue names (images-<host>) to the current ones (images-{<host>})')
    .option('--dry-run', 'print what would move and change nothing')
    .option('--remove-old', 'then delete each old queue that has only completed jobs left (asks first unless --yes)')
    .option('-y, --yes', 'with --remove-old: do it without asking (required when not on a terminal)')
    .option('--json', 'machine-readable output')
    .action(async (opts: MigrateFlags) => {
      await withFleet(async (fleet) => {
        const prefix = fleet.cfg.prefix;
        const removeOld = Boolean(opts.removeOld) && !opts.dryRun;
        if (removeOld) await confirm('move the jobs, then delete the old queues that have only completed jobs left (their history)', opts);
        const report = await migrateLegacyQueues(fleet.redis, { prefix, dryRun: opts.dryRun, removeOld, downAfterMs: fleet.cfg.hostDownAfterMs });
        if (opts.json) return printJson(report);
        printReport(report);
      });
    });
}

function byState(moved: Record<string, number>): string {
  const parts = Object.entries(moved).map(([state, n]) => `${state} ${n}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

function printQueue(q: QueueMigration, dryRun: boolean): void {
  const n = Object.values(q.moved).reduce((a, b) => a + b, 0);
  const verb = dryRun ? 'would move' : 'moved';
  const notes = q.removed ? [`${q.from} removed${q.completed ? ` with its ${q.completed} completed` : ''}`] : q.completed ? [`${q.completed} completed left in ${q.from}`] : [];
  printLine(`${q.from} → ${q.to}: ${verb} ${n}${byState(q.moved)}${notes.length ? `; ${notes.join('; ')}` : ''}`);
  for (const s of q.skipped) printErr(`  ${q.from} ${s.id} (${s.state}): not moved: ${s.why}`);
}

function printReport(r: MigrationReport): void {
  if (r.queues.length === 0) {
    printLine('nothing to migrate: no queue under the old names');
    return;
  }
  for (const q of r.queues) printQueue(q, r.dryRun);
  const prefix = r.dryRun ? 'dry run: would move' : 'moved';
  printLine(`${prefix} ${r.moved} job${r.moved === 1 ? '' : 's'} from ${r.queues.length} old queue${r.queues.length === 1 ? '' : 's'}${r.skipped ? `; ${r.skipped} left in place (see above)` : ''}`);
}
