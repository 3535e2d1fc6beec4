/**
 * The host registry: every worker process announces itself (host id, version,
 * pid, concurrency, started-at) and refreshes a heartbeat. A host whose newest
 * heartbeat is older than the down window is reported `down`.
 *
 * Retention: a host silent for the retention period (FLEETQ_HOST_RETENTION,
 * default 7d) is dropped by `listHosts` (every board refresh, every CLI
 * command that lists hosts; at most PRUNE_BATCH hosts per call), and
 * `removeHost` (`fleetq hosts rm`) drops one at once. Dropping a host removes
 * its registry entries, its published cocoon snapshot list, metrics snapshots and dead-letter sweep watermarks,
 * never its queues, jobs or dead letters; a worker that comes back
 * re-registers with its next heartbeat.
 *
 * Keys (registry/keys.ts): the hosts zset and each host's announcements hash
 * share the `{registry}` slot, so an announcement and dropping a host are one
 * MULTI / script on a Cluster too; a host's own keys (metrics, watermarks)
 * are in its `{<host>}` slot and dropped after the registry entry.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { RedisClient } from '../redis/connect.js';
import { z } from 'zod';
import { hostKeys, registryKeys } from './keys.js';
import { dropMetricsSnapshots } from './metrics-snapshots.js';
import { safeJson } from '../lib/safe-json.js';

export const WorkerAnnouncement = z.object({
  instance: z.string(),
  host: z.string(),
  version: z.string(),
  pid: z.number(),
  machine: z.string(),
  concurrency: z.number(),
  restoreConcurrency: z.number(),
  queues: z.array(z.string()),
  startedAt: z.number(),
  lastSeen: z.number(),
  /** The store as this worker last found it: `disk-full` (pulls paused) or `store-unwritable` (read-only, permissions). */
  health: z.enum(['ok', 'disk-full', 'store-unwritable']).default('ok'),
  healthDetail: z.string().optional(),
  /** Where this worker serves its blobs to peers (`http(s)://host:port`, FLEETQ_PEER_ADVERTISE); absent when it does not. */
  peerUrl: z.string().optional(),
});
export type WorkerAnnouncement = z.infer<typeof WorkerAnnouncement>;

export interface HostInfo {
  host: string;
  state: 'up' | 'down';
  /** The worst store health among the live workers. */
  health: WorkerAnnouncement['health'];
  lastSeen: number;
  workers: WorkerAnnouncement[];
}

export function newInstanceId(): string {
  return `${process.pid}-${randomBytes(4).toString('hex')}`;
}

export type Announcement = Omit<WorkerAnnouncement, 'lastSeen' | 'machine' | 'health'> & Partial<Pick<WorkerAnnouncement, 'health'>>;

export async function announce(redis: RedisClient, prefix: string, a: Announcement, now = Date.now()): Promise<void> {
  const k = registryKeys(prefix);
  const full: WorkerAnnouncement = { ...a, health: a.health ?? 'ok', machine: hostname(), lastSeen: now };
  await redis.multi().hset(k.host(a.host), a.instance, JSON.stringify(full)).zadd(k.hosts, 'GT', now, a.host).exec();
}

/** On graceful stop: drop this instance (the host stays listed; with no live instance it shows as down). */
export async function withdraw(redis: RedisClient, prefix: string, host: string, instance: string): Promise<void> {
  await redis.hdel(registryKeys(prefix).host(host), instance);
}

export interface ListHostsOptions {
  /** Drop hosts (and dead worker entries) silent for this long; unset = drop nothing. Best effort: errors are ignored. */
  retentionMs?: number | undefined;
}

/** Hosts dropped per `listHosts` call at most: bounded work on every board refresh. */
export const PRUNE_BATCH = 100;

export async function listHosts(redis: RedisClient, prefix: string, downAfterMs: number, now = Date.now(), opts: ListHostsOptions = {}): Promise<HostInfo[]> {
  const k = registryKeys(prefix);
  if (opts.retentionMs !== undefined) await pruneHosts(redis, prefix, opts.retentionMs, now).catch(() => []);
  // A worker entry outlives its process only until it is this old (crash loops leave one per start).
  const staleInstanceMs = opts.retentionMs === undefined ? undefined : Math.min(opts.retentionMs, Math.max(downAfterMs * 10, 3_600_000));
  const raw = await redis.zrange(k.hosts, 0, -1, 'WITHSCORES');
  const hosts: HostInfo[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const host = raw[i]!;
    const entries = await redis.hgetall(k.host(host));
    const parsed = Object.entries(entries).map(([instance, v]) => ({ instance, r: WorkerAnnouncement.safeParse(safeJson(v)) }));
    if (staleInstanceMs !== undefined) {
      const stale = parsed.filter(({ r }) => !r.success || now - r.data.lastSeen > staleInstanceMs).map(({ instance }) => instance);
      if (stale.length) await redis.hdel(k.host(host), ...stale).catch(() => 0);
    }
    const workers = parsed
      .map(({ r }) => r)
      .filter((r) => r.success)
      .map((r) => r.data!)
      .filter((w) => now - w.lastSeen <= downAfterMs);
    const lastSeen = Number(raw[i + 1]);
    const health = workers.some((w) => w.health === 'store-unwritable') ? 'store-unwritable' : workers.some((w) => w.health === 'disk-full') ? 'disk-full' : 'ok';
    hosts.push({ host, lastSeen, state: workers.length > 0 && now - lastSeen <= downAfterMs ? 'up' : 'down', health, workers });
  }
  return hosts.sort((a, b) => a.host.localeCompare(b.host));
}


/**
 * KEYS: hosts zset, the host's hash (one slot: `{registry}`). ARGV: host, cutoff ('' = none).
 * Drops the host unless it has sent a heartbeat after the cutoff (a worker that came back meanwhile stays).
 * Returns 1 (dropped), 0 (not registered), -1 (seen after the cutoff).
 */
const REMOVE_HOST_SCRIPT = `
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen then return 0 end
if ARGV[2] ~= '' and tonumber(seen) > tonumber(ARGV[2]) then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
`;

export interface RemoveHostOptions {
  /** Only if the host's last heartbeat is at or before this time (ms): retention must not drop a host that just came back. */
  silentSince?: number | undefined;
  /** Also delete the host's metrics snapshots now (default true). Retention skips it: they expired long ago. */
  metrics?: boolean | undefined;
}

/**
 * Drop a host from the registry: its entry, its workers' announcements and
 * metrics snapshots, and its dead-letter sweep watermarks. Its queues and
 * jobs stay. Returns false when the host is not registered (or came back
 * after `silentSince`).
 */
export async function removeHost(redis: RedisClient, prefix: string, host: string, opts: RemoveHostOptions = {}): Promise<boolean> {
  const k = registryKeys(prefix);
  const done = await redis.eval(REMOVE_HOST_SCRIPT, 2, k.hosts, k.host(host), host, opts.silentSince === undefined ? '' : String(opts.silentSince));
  if (done !== 1) return false;
  // The host's own slot: its sweep watermarks (a crash before this leaves them; harmless, and a later `hosts rm` of the re-registered host drops them).
  await redis.del(hostKeys(prefix, host).dlqSwept);
  await redis.del(hostKeys(prefix, host).snapshots); // its published cocoon snapshots (placement); they would expire by TTL anyway
  if (opts.metrics === false) return true;
  // Snapshots expire by themselves (TTL); drop them now so the board's /metrics stops showing the host.
  await dropMetricsSnapshots(redis, prefix, host);
  return true;
}

/** Drop up to `limit` hosts whose last heartbeat is older than `retentionMs`. Returns the hosts dropped. */
export async function pruneHosts(redis: RedisClient, prefix: string, retentionMs: number, now = Date.now(), limit = PRUNE_BATCH): Promise<string[]> {
  const cutoff = now - retentionMs;
  const stale = await redis.zrangebyscore(registryKeys(prefix).hosts, '-inf', cutoff, 'LIMIT', 0, limit);
  const dropped: string[] = [];
  for (const host of stale) if (await removeHost(redis, prefix, host, { silentSince: cutoff, metrics: false })) dropped.push(host);
  return dropped;
}
