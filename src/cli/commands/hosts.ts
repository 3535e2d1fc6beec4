/**
 * `fleetq hosts`: registered hosts, up/down, queue depths, published
 * snapshots, last seen. `fleetq hosts --digest D`: who holds a blob.
 * `fleetq hosts rm HOST`: drop one from the registry.
 */
import type { Command } from 'commander';
import { Digest, DIGEST_RULE } from '../../lib/digest.js';
import { formatBytes } from '../../lib/units.js';
import type { Fleet } from '../../ops/fleet.js';
import { HolderEntry, holderKeys, listHolders } from '../../peer/holders.js';
import { readCatalogMeta } from '../../placement/snapshot-catalog.js';
import { type HostInfo, removeHost } from '../../registry/host-registry.js';
import { addConfirmFlags, confirm, type ConfirmFlags } from '../confirm.js';
import { NotFoundError } from '../exit-codes.js';
import { ago, printErr, printJson, printLine, printTable } from '../output.js';
import { withFleet } from '../fleet-command.js';
import { flagParser, shown, UsageError } from '../usage-error.js';
import { safeJson } from '../../lib/safe-json.js';

const COUNT_STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'failed', 'delayed'] as const;

export function registerHosts(program: Command): void {
  const hosts = program
    .command('hosts')
    .description('list hosts with state (up/down), store health (disk full, not writable), queue depths and last heartbeat')
    .option('--digest <sha256:hex>', 'instead: the hosts that hold this blob (committed or downloading), for peers and placement', digestFlag)
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean; digest?: Digest }) => {
      await withFleet(async (fleet) => {
        if (opts.digest) return listDigestHolders(fleet, opts.digest, Boolean(opts.json));
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
            snapshots: await snapshotSummary(fleet, h.host),
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
            snapshots: r.snapshots === null ? '' : `${r.snapshots.published}${r.snapshots.error ? ' (ls failing)' : ''}`,
            'last seen': ago(r.lastSeen),
          })),
          ['host', 'state', 'store', 'workers', 'images w/a/f/d', 'restores w/a/f/d', 'snapshots', 'last seen'],
        );
      });
    });
  registerHostsRm(hosts);
}

/** `--digest`: a digest, or a usage error naming the flag. */
const digestFlag = flagParser('--digest', (v) => {
  const d = Digest.from(v);
  if (!d) throw new Error(`${DIGEST_RULE} (got ${shown(v, 80)})`);
  return d;
});

/** What the host published for placement (`cocoon snapshot ls`), or null when it published nothing. */
async function snapshotSummary(fleet: Fleet, host: string) {
  const m = await readCatalogMeta(fleet.redis, fleet.cfg.prefix, host);
  if (!m) return null;
  return { published: m.published, count: m.count, listedAt: m.listedAt, ...(m.error ? { error: m.error, errorAt: m.errorAt } : {}) };
}

/**
 * `fleetq hosts --digest D`: the live holders of D (what peers fetch from and
 * placement scores by), and every other entry of its holder set marked stale
 * with the reason it is ignored (its host is down or unknown, the worker
 * process of a partial download is gone, or the entry does not parse).
 */
async function listDigestHolders(fleet: Fleet, digest: Digest, json: boolean): Promise<void> {
  const { redis, cfg } = fleet;
  const now = Date.now();
  const live = await listHolders(redis, cfg.prefix, digest, { downAfterMs: cfg.hostDownAfterMs, now });
  const raw = await redis.hgetall(holderKeys(cfg.prefix).holders(digest));
  const registry = new Map((await fleet.hosts()).map((h) => [h.host, h]));
  const liveHosts = new Set(live.map((h) => h.host));
  const stale = Object.keys(raw)
    .filter((host) => !liveHosts.has(host))
    .sort()
    .map((host) => {
      const e = HolderEntry.safeParse(safeJson(raw[host]!));
      const entry = e.success ? { state: e.data.state, peerUrl: e.data.peerUrl, size: e.data.size, at: e.data.at } : {};
      return { host, ...entry, reason: staleReason(registry.get(host), e.success ? e.data : undefined, now) };
    });
  const holders = live.map((h) => ({ host: h.host, state: h.state, peerUrl: h.peerUrl, size: h.size, load: h.load, at: h.at }));
  if (json) return printJson({ digest: digest.value, holders, stale });
  if (holders.length === 0 && stale.length === 0) return printLine(`no host holds ${digest.value}`);
  printTable(
    [
      ...holders.map((h) => ({ host: h.host, state: h.state, peer: h.peerUrl, size: h.size === undefined ? '' : formatBytes(h.size), load: h.load, since: ago(h.at, now), live: 'yes' })),
      ...stale.map((h) => ({ host: h.host, state: h.state ?? '?', peer: h.peerUrl ?? '', size: h.size === undefined ? '' : formatBytes(h.size), load: '', since: ago(h.at, now), live: `no: ${h.reason}` })),
    ],
    ['host', 'state', 'peer', 'size', 'load', 'since', 'live'],
  );
}

/** Why listHolders ignores an entry (the same rules, said for people). */
function staleReason(h: HostInfo | undefined, e: HolderEntry | undefined, now: number): string {
  if (!e) return 'unreadable entry';
  if (!h) return 'host not registered';
  if (h.state !== 'up') return `host down (last heartbeat ${ago(h.lastSeen, now)})`;
  if (e.state === 'partial' && !h.workers.some((w) => w.instance === e.instance)) return 'the worker process of this download is gone';
  return 'not live';
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
