/** `fleetq hosts`: registered hosts, up/down, queue depths, last seen. */
import type { Command } from 'commander';
import { ago, printJson, printTable } from '../output.js';
import { withFleet } from '../fleet-command.js';

const COUNT_STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'failed', 'delayed'] as const;

export function registerHosts(program: Command): void {
  program
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
}

function fmt(c?: Record<string, number>): string {
  return c ? `${c.waiting}/${c.active}/${c.failed}/${c.delayed}` : '';
}
