/** `fleetq promote` (delayed → waiting) and `fleetq clean` (bounded batches, asks first). */
import type { Command } from 'commander';
import { formatDuration } from '../../lib/units.js';
import { parseQueueKind } from '../../ops/job-filter.js';
import type { QueueKind } from '../../queues/names.js';
import { addConfirmFlags, confirm, type ConfirmFlags } from '../confirm.js';
import { durationFlag } from '../flags.js';
import { printJson, printLine } from '../output.js';
import { hostList, withFleet } from '../fleet-command.js';
import { flagParser, shown } from '../usage-error.js';

const queueFlag = flagParser('--queue', parseQueueKind);
const BATCH = 1000;

export function registerMaintenance(program: Command): void {
  program
    .command('promote')
    .description('move delayed jobs (including retries waiting for their backoff) to waiting now')
    .option('--host <ids>', 'host id(s) (default: all)')
    .option('--queue <images|restores>', 'only this queue kind', queueFlag)
    .option('--dry-run', 'print how many delayed jobs would be promoted and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (opts: { host?: string; queue?: QueueKind; dryRun?: boolean; json?: boolean }) => {
      await withFleet(async (fleet) => {
        const refs = fleet.queuesFor(await fleet.resolveHosts(hostList(opts.host)), opts.queue ? [opts.queue] : undefined);
        const out = [];
        for (const ref of refs) {
          const before = await ref.queue.getDelayedCount();
          if (opts.dryRun) {
            out.push({ queue: ref.name, promoted: 0, wouldPromote: before });
            continue;
          }
          for (let i = 0; i < Math.ceil(before / BATCH) + 1; i++) await ref.queue.promoteJobs({ count: BATCH });
          out.push({ queue: ref.name, promoted: before - (await ref.queue.getDelayedCount()) });
        }
        if (opts.json) return printJson(out);
        if (out.length === 0) printLine('(no queues: no worker has registered)');
        for (const o of out) printLine(opts.dryRun ? `${o.queue}: would promote ${o.wouldPromote}` : `${o.queue}: promoted ${o.promoted}`);
      });
    });

  addConfirmFlags(
    program
      .command('clean')
      .description('remove finished jobs older than a grace period, in bounded batches (asks first unless --yes)')
      .requiredOption(
        '--state <completed|failed>',
        'which finished jobs',
        flagParser('--state', (v) => {
          if (v !== 'completed' && v !== 'failed') throw new Error(`must be "completed" or "failed" (got ${shown(v)})`);
          return v;
        }),
      )
      .requiredOption('--older-than <duration>', 'grace period; a unit is required: 1d, 12h, 90m (0 means every finished job)', durationFlag('--older-than'))
      .option('--host <ids>', 'host id(s) (default: all)')
      .option('--queue <images|restores>', 'only this queue kind', queueFlag),
    'be removed',
  )
    .option('--json', 'machine-readable output')
    .action(async (opts: { state: 'completed' | 'failed'; olderThan: number; host?: string; queue?: QueueKind; json?: boolean } & ConfirmFlags) => {
      await withFleet(async (fleet) => {
        const refs = fleet.queuesFor(await fleet.resolveHosts(hostList(opts.host)), opts.queue ? [opts.queue] : undefined);
        // What BullMQ's clean would remove: finished before the cut-off (the set is scored by finishedOn).
        const cutoff = Date.now() - opts.olderThan;
        const counts = [];
        for (const ref of refs) {
          const key = opts.state === 'completed' ? ref.queue.keys.completed! : ref.queue.keys.failed!;
          counts.push({ ref, count: await fleet.redis.zcount(key, '-inf', cutoff) });
        }
        const total = counts.reduce((n, c) => n + c.count, 0);
        const what = `${total} ${opts.state} job${total === 1 ? '' : 's'} older than ${formatDuration(opts.olderThan)}`;
        if (opts.dryRun) {
          if (opts.json) return printJson(counts.map((c) => ({ queue: c.ref.name, removed: 0, wouldRemove: c.count })));
          for (const c of counts) printLine(`${c.ref.name}: would remove ${c.count} ${opts.state}`);
          return printLine(`dry run: would remove ${what}`);
        }
        const busy = counts.filter((c) => c.count > 0).map((c) => c.ref.name);
        if (total > 0) await confirm(`remove ${what} from ${busy.length > 3 ? `${busy.length} queues` : busy.join(', ')}`, opts);
        const out = [];
        for (const { ref, count } of counts) {
          let removed = 0;
          while (count > 0) {
            const ids = await ref.queue.clean(Date.now() - cutoff, BATCH, opts.state);
            removed += ids.length;
            if (ids.length < BATCH) break;
          }
          out.push({ queue: ref.name, removed });
        }
        if (opts.json) return printJson(out);
        if (out.length === 0) printLine('(no queues: no worker has registered)');
        for (const o of out) printLine(`${o.queue}: removed ${o.removed} ${opts.state}`);
      });
    });
}
