/** `fleetq reroute --from-host A --to-host B`: move a dead host's pending work (asks first unless --yes). */
import type { Command } from 'commander';
import { parseStates, type UserState } from '../../ops/job-filter.js';
import { reroute } from '../../ops/reroute.js';
import { addConfirmFlags, confirm, type ConfirmFlags } from '../confirm.js';
import { printJson, printLine } from '../output.js';
import { withFleet } from '../fleet-command.js';
import { hostFlagFor } from '../flags.js';
import { flagParser, UsageError } from '../usage-error.js';

export function registerReroute(program: Command): void {
  addConfirmFlags(
    program
      .command('reroute')
      .description("move a host's pending work (restores with their image jobs) to another host (asks first unless --yes)")
      .requiredOption('--from-host <id>', 'the host whose work moves', hostFlagFor('--from-host'))
      .requiredOption('--to-host <id>', 'the host that takes it (must be up)', hostFlagFor('--to-host'))
      .option('--state <states>', 'which states move (default waiting,failed,delayed)', flagParser('--state', (v) => parseStates(v))),
    'move',
  )
    .option('--json', 'machine-readable output')
    .action(async (opts: { fromHost: string; toHost: string; state?: UserState[]; json?: boolean } & ConfirmFlags) => {
      if (opts.fromHost === opts.toHost) throw new UsageError('--to-host: must differ from --from-host');
      const states = opts.state ?? ['waiting', 'failed', 'delayed'];
      if (states.includes('active')) throw new UsageError('--state: active jobs cannot be moved (they are locked by a worker); stop it or wait for the stall check');
      await withFleet(async (fleet) => {
        await fleet.resolveHosts([opts.fromHost, opts.toHost]);
        const target = (await fleet.hosts()).find((h) => h.host === opts.toHost)!;
        if (target.state !== 'up') throw new UsageError(`--to-host: ${opts.toHost} is down (no heartbeat for longer than FLEETQ_HOST_DOWN_AFTER): refusing to move work there`);
        // The plan first (a dry run): it is what the question shows, and all a --dry-run prints.
        let items = await reroute(fleet, opts.fromHost, opts.toHost, states, true);
        const planned = items.filter((i) => i.action === 'move').length;
        if (!opts.dryRun && planned > 0) {
          await confirm(`move ${planned} job${planned === 1 ? '' : 's'} (${states.join(', ')}) from ${opts.fromHost} to ${opts.toHost}`, opts);
          items = await reroute(fleet, opts.fromHost, opts.toHost, states, false);
        }
        const moved = items.filter((i) => i.action === 'move').length;
        const summary = { dryRun: Boolean(opts.dryRun), from: opts.fromHost, to: opts.toHost, moved, skipped: items.length - moved };
        if (opts.json) return printJson({ summary, jobs: items });
        for (const i of items) printLine(`${i.queue} ${i.id} (${i.name}, ${i.state}): ${i.action === 'move' ? (opts.dryRun ? 'would move' : 'moved') : `skip ${i.why}`}`);
        printLine(`${opts.dryRun ? 'dry run: ' : ''}${opts.dryRun ? 'would move' : 'moved'} ${summary.moved} to ${opts.toHost}, skipped ${summary.skipped}`);
      });
    });
}
