/**
 * `fleetq migrate [--dry-run] [--json] [--remove-old [--yes]]`: bring a
 * deployment from fleetq 0.1's Redis layout to the Cluster-ready one:
 *   - the host registry, dead letters and sweep watermarks move to their
 *     tagged keys (queues/migrate-keys.ts);
 *   - jobs move from the old queue names (`images-<host>`, `restores-<host>`)
 *     to the hash-tagged ones (`images-{<host>}`, `restores-{<host>}`), each
 *     whole (queues/migrate-legacy.ts). On a Cluster this part is skipped: old
 *     queues cannot work there (their keys cross slots), so they are migrated
 *     on the single Redis before moving (README, "Scaling Redis").
 * Idempotent: running it again moves nothing. Run it after stopping the old
 * workers; new workers may already be running.
 */
import type { Command } from 'commander';
import { type KeyMigration, migrateLegacyKeys, movedAnything } from '../../queues/migrate-keys.js';
import { migrateLegacyQueues, type MigrationReport, type QueueMigration } from '../../queues/migrate-legacy.js';
import { isCluster } from '../../redis/connect.js';
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
    .description('move waiting, delayed, prioritized and failed jobs from the old queue names (images-<host>) to the current ones (images-{<host>}), and the host registry and dead letters to the Cluster key layout')
    .option('--dry-run', 'print what would move and change nothing')
    .option('--remove-old', 'then delete each old queue that has only completed jobs left (asks first unless --yes)')
    .option('-y, --yes', 'with --remove-old: do it without asking (required when not on a terminal)')
    .option('--json', 'machine-readable output')
    .action(async (opts: MigrateFlags) => {
      await withFleet(async (fleet) => {
        const prefix = fleet.cfg.prefix;
        const removeOld = Boolean(opts.removeOld) && !opts.dryRun;
        if (removeOld) await confirm('move the jobs, then delete the old queues that have only completed jobs left (their history)', opts);
        // Keys first: the registry then lists the hosts whose old queues are looked for.
        const keys = await migrateLegacyKeys(fleet.redis, prefix, { dryRun: opts.dryRun });
        const cluster = isCluster(fleet.redis);
        const report: MigrationReport = cluster
          ? { dryRun: Boolean(opts.dryRun), queues: [], moved: 0, skipped: 0 }
          : await migrateLegacyQueues(fleet.redis, { prefix, dryRun: opts.dryRun, removeOld, downAfterMs: fleet.cfg.hostDownAfterMs });
        if (opts.json) return printJson({ ...report, keys, ...(cluster ? { queuesSkipped: 'Redis Cluster: old queue names are migrated on the single Redis before moving' } : {}) });
        printKeys(keys);
        if (cluster) printLine('Redis Cluster: old queue names (images-<host>) are not looked for here; migrate them on the single Redis before moving (README, "Scaling Redis")');
        else printReport(report);
      });
    });
}

function printKeys(k: KeyMigration): void {
  if (!movedAnything(k)) return;
  const verb = k.dryRun ? 'would move' : 'moved';
  const parts = [`${k.hosts} host${k.hosts === 1 ? '' : 's'} (${k.workers} worker entries)`, `${k.deadLetters} dead letter${k.deadLetters === 1 ? '' : 's'}`, `${k.watermarks} sweep watermark${k.watermarks === 1 ? '' : 's'}`];
  printLine(`registry and dead letters → the Cluster key layout: ${verb} ${parts.join(', ')}${k.metrics ? `; ${k.dryRun ? 'would delete' : 'deleted'} ${k.metrics} old metrics snapshot${k.metrics === 1 ? '' : 's'}` : ''}`);
  for (const id of k.unreadable) printErr(`  dead letter ${id}: not moved: its entry does not parse (left in the old keys)`);
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
