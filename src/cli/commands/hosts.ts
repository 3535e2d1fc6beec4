/** `fleetq hosts`: registered hosts, up/down, queue depths, last seen. `fleetq hosts rm HOST`: drop one from the registry. */
import type { Command } from 'commander';
import type { Fleet } from '../../ops/fleet.js';
import { removeHost } from '../../registry/host-registry.js';
import { addConfirmFlags, confirm, type ConfirmFlags } from '../confirm.js';
import { NotFoundError } from '../exit-codes.js';
import { ago, printErr, printJson, printLine, printTable } from '../output.js';
import { withFleet } from '../fleet-command.js';
import { UsageError } from '../usage-error.js';

const COUNT_STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'failed', 'delayed'] as const;

export function registerHosts(program: Command): void {
  const hosts = program
    .command('hosts')
    .description('list hosts with state (up/down), store health (disk full, not writable), queue depths and last heartbeat')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      await withFleet(async (fleet) => {
        const hosts = await fleet.hosts();
        const rows = [];
        for (const h of hosts) {
          const queues: Record<string, Record<string, number>> = {};
          for (const ref of fleet.queuesFor([h.host])) {
            const c = await ref.queue.getJobCounts(...COUNT_STATES);
            queues[ref.kind] = { waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0), active: c.active ?? 0, failed: c.failed ?? 0, delayed: c.delayed ?? 0 };
          }
          rows.push({
            host: h.host,
            state: h.state,
            health: h.health,
            lastSeen: h.lastSeen,
            workers: h.workers.map((w) => ({ pid: w.pid, machine: w.machine, version: w.version, concurrency: w.concurrency, restoreConcurrency: w.restoreConcurrency, startedAt: w.startedAt, health: w.health, healthDetail: w.healthDetail })),
            queues,
          });
        }
        if (opts.json) return printJson(rows);
        printTable(
          rows.map((r) => ({
            host: r.host,
            state: r.state,
            store: r.health === 'ok' ? 'ok' : r.health === 'disk-full' ? 'disk full (pulls paused)' : 'NOT WRITABLE',
            workers: r.workers.length,
            'images w/a/f/d': fmt(r.queues.images),
            'restores w/a/f/d': fmt(r.queues.restores),
            'last seen': ago(r.lastSeen),
          })),
          ['host', 'state', 'store', 'workers', 'images w/a/f/d', 'restores w/a/f/d', 'last seen'],
        );
      });
    });
  registerHostsRm(hosts);
}

function fmt(c?: Record<string, number>): string {
  return c ? `${c.waiting}/${c.active}/${c.failed}/${c.delayed}` : '';
}

const PENDING_STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'delayed', 'failed'] as const;

/** Jobs still in the host's queues (they stay: removing a host never touches queues). */
async function pendingJobs(fleet: Fleet, host: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const ref of fleet.queuesFor([host])) {
    const c = await ref.queue.getJobCounts(...PENDING_STATES);
    const n = PENDING_STATES.reduce((sum, st) => sum + (c[st] ?? 0), 0);
    if (n) out[ref.name] = n;
  }
  return out;
}

/**
 * `fleetq hosts rm HOST`: drop a host from the registry at once (retention
 * drops silent hosts after FLEETQ_HOST_RETENTION by itself). A host that is
 * up is refused unless --force (its workers would re-register with their
 * next heartbeat anyway). Exit 4 for a host the registry does not know.
 */
function registerHostsRm(hosts: Command): void {
  addConfirmFlags(
    hosts
      .command('rm')
      .description('remove a host from the registry (its registration, worker entries, metrics snapshots); its queues and jobs stay')
      .argument('<host>', 'host id')
      .option('--force', 'remove it even though it is up (its live workers re-register on their next heartbeat)'),
    'be removed',
  )
    .option('--json', 'machine-readable output')
    .action(async (host: string, own: ConfirmFlags & { force?: boolean; json?: boolean }, cmd: Command) => {
      // `hosts` takes --json too, and commander gives it to the parent wherever it is typed.
      const opts = { ...own, json: own.json ?? Boolean(cmd.optsWithGlobals().json) };
      await withFleet(async (fleet) => {
        const all = await fleet.hosts();
        const h = all.find((x) => x.host === host);
        if (!h) throw new NotFoundError(`unknown host ${JSON.stringify(host)} (registered: ${all.map((x) => x.host).join(', ') || 'none'})`);
        if (h.state === 'up' && !opts.force) {
          throw new UsageError(
            `--force: host ${JSON.stringify(host)} is up (${h.workers.length} live worker${h.workers.length === 1 ? '' : 's'}, last seen ${ago(h.lastSeen)}); stop its workers first, or pass --force (live workers re-register on their next heartbeat)`,
          );
        }
        const pending = await pendingJobs(fleet, host);
        const summary = { host, state: h.state, lastSeen: h.lastSeen, pendingJobs: pending, dryRun: Boolean(opts.dryRun), removed: false };
        const pendingText = Object.entries(pending).map(([q, n]) => `${q}: ${n}`).join(', ');
        if (pendingText && !opts.json) {
          printErr(`note: jobs stay in ${host}'s queues (${pendingText}): they run if the host comes back; to move them to another host, run 'fleetq reroute --from-host ${host} --to-host <live host>' before removing it`);
        }
        if (opts.dryRun) {
          if (opts.json) return printJson(summary);
          return printLine(`dry run: would remove host ${host} (${h.state}, last seen ${ago(h.lastSeen)}) from the registry`);
        }
        await confirm(`remove host ${host} (${h.state}, last seen ${ago(h.lastSeen)}) from the registry`, opts);
        summary.removed = await removeHost(fleet.redis, fleet.cfg.prefix, host);
        if (!summary.removed) throw new NotFoundError(`unknown host ${JSON.stringify(host)} (removed meanwhile)`);
        if (opts.json) return printJson(summary);
        printLine(`removed host ${host} from the registry${h.state === 'up' ? ' (it was up: its workers re-register on their next heartbeat)' : ''}`);
      });
    });
}
