/** `fleetq promote` (delayed → waiting) and `fleetq clean` (bounded batches). */
import type { Command } from 'commander';
import { parseDuration } from '../../lib/units.js';
import { parseQueueKind } from '../../ops/job-filter.js';
import type { QueueKind } from '../../queues/names.js';
import { printJson, printLine } from '../output.js';
import { hostList, withFleet } from '../fleet-command.js';
import { flagParser, UsageError } from '../usage-error.js';

const queueFlag = flagParser('--queue', parseQueueKind);
const BATCH = 1000;

export function registerMaintenance(program: Command): void {
  program
    .command('promote')
    .description('move delayed jobs (including retries waiting for their backoff) to waiting now')
    .option('--host <ids>', 'host id(s) (default: all)')
    .option('--queue <images|restores>', 'only this queue kind', queueFlag)
    .option('--json', 'machine-readable output')
    .action(async (opts: { host?: string; queue?: QueueKind; json?: boolean }) => {
      await withFleet(async (fleet) => {
        const refs = fleet.queuesFor(await fleet.resolveHosts(hostList(opts.host)), opts.queue ? [opts.queue] : undefined);
        const out = [];
        for (const ref of refs) {
          const before = await ref.queue.getDelayedCount();
          for (let i = 0; i < Math.ceil(before / BATCH) + 1; i++) await ref.queue.promoteJobs({ count: BATCH });
          out.push({ queue: ref.name, promoted: before - (await ref.queue.getDelayedCount()) });
        }
        if (opts.json) return printJson(out);
        for (const o of out) printLine(`${o.queue}: promoted ${o.promoted}`);
      });
    });

  program
    .command('clean')
    .description('remove finished jobs older than a grace period, in bounded batches')
    .requiredOption('--state <completed|failed>', 'which finished jobs', (v: string) => {
      if (v !== 'completed' && v !== 'failed') throw new UsageError(`--state: must be "completed" or "failed" (got ${JSON.stringify(v)})`);
      return v;
    })
    .requiredOption('--older-than <duration>', 'e.g. 1d', flagParser('--older-than', parseDuration))
    .option('--host <ids>', 'host id(s) (default: all)')
    .option('--queue <images|restores>', 'only this queue kind', queueFlag)
    .option('--json', 'machine-readable output')
    .action(async (opts: { state: 'completed' | 'failed'; olderThan: number; host?: string; queue?: QueueKind; json?: boolean }) => {
      await withFleet(async (fleet) => {
        const refs = fleet.queuesFor(await fleet.resolveHosts(hostList(opts.host)), opts.queue ? [opts.queue] : undefined);
        const out = [];
        for (const ref of refs) {
          let removed = 0;
          for (;;) {
            const ids = await ref.queue.clean(opts.olderThan, BATCH, opts.state);
            removed += ids.length;
            if (ids.length < BATCH) break;
          }
          out.push({ queue: ref.name, removed });
        }
        if (opts.json) return printJson(out);
        for (const o of out) printLine(`${o.queue}: removed ${o.removed} ${opts.state}`);
      });
    });
}
