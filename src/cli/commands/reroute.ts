/** `fleetq reroute --from-host A --to-host B`: move a dead host's pending work. */
import type { Command } from 'commander';
import { parseStates, type UserState } from '../../ops/job-filter.js';
import { reroute } from '../../ops/reroute.js';
import { printJson, printLine } from '../output.js';
import { withFleet } from '../fleet-command.js';
import { hostFlag } from '../flags.js';
import { UsageError } from '../usage-error.js';

export function registerReroute(program: Command): void {
  program
    .command('reroute')
    .description("move a host's pending work (restores with their image jobs) to another host")
    .requiredOption('--from-host <id>', 'the host whose work moves', hostFlag)
    .requiredOption('--to-host <id>', 'the host that takes it (must be up)', hostFlag)
    .option('--state <states>', 'which states move (default waiting,failed,delayed)', (v: string) => {
      try {
        return parseStates(v);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
    })
    .option('--dry-run', 'print what would move and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (opts: { fromHost: string; toHost: string; state?: UserState[]; dryRun?: boolean; json?: boolean }) => {
      if (opts.fromHost === opts.toHost) throw new UsageError('--to-host: must differ from --from-host');
      const states = opts.state ?? ['waiting', 'failed', 'delayed'];
      if (states.includes('active')) throw new UsageError('--state: active jobs cannot be moved (they are locked by a worker); stop it or wait for the stall check');
      await withFleet(async (fleet) => {
        await fleet.resolveHosts([opts.fromHost, opts.toHost]);
        const target = (await fleet.hosts()).find((h) => h.host === opts.toHost)!;
        if (target.state !== 'up') throw new UsageError(`--to-host: ${opts.toHost} is down (no heartbeat for longer than FLEETQ_HOST_DOWN_AFTER): refusing to move work there`);
        const items = await reroute(fleet, opts.fromHost, opts.toHost, states, Boolean(opts.dryRun));
        const moved = items.filter((i) => i.action === 'move').length;
        const summary = { dryRun: Boolean(opts.dryRun), from: opts.fromHost, to: opts.toHost, moved, skipped: items.length - moved };
        if (opts.json) return printJson({ summary, jobs: items });
        for (const i of items) printLine(`${i.queue} ${i.id} (${i.name}, ${i.state}): ${i.action === 'move' ? (opts.dryRun ? 'would move' : 'moved') : `skip ${i.why}`}`);
        printLine(`${opts.dryRun ? 'dry run: ' : ''}${opts.dryRun ? 'would move' : 'moved'} ${moved} to ${opts.toHost}, skipped ${summary.skipped}`);
      });
    });
}
