/**
 * Who has what: one Redis HASH per digest, host → JSON HolderEntry.
 *
 *   - `complete`: the host has the blob committed in its store, stored as
 *     received (it hashes to the digest), and serves it at its peerUrl;
 *     keyed by host, so it survives the worker's restarts; removed when the
 *     blob is gone (GC, verification failure).
 *   - `partial`: the host's worker `instance` is downloading it right now and
 *     streams what it has written so far; alive only while that instance's
 *     heartbeat is.
 *
 * Entries of hosts (or, for partial ones, instances) whose heartbeat expired
 * are ignored, never trusted. Adding a holder publishes on the digest's
 * `holders-changed` channel so that hosts waiting for a holder wake up (they
 * re-check at least once per lock TTL: pub/sub can drop messages).
 *
 * The serving load (streaming peer responses per host) lives in one HASH, set
 * by each worker's blob server; with each entry's `maxStreams` it steers the
 * choice among holders toward those with a free stream slot.
 */
import type { RedisClient as Redis } from '../redis/connect.js';
import { z } from 'zod';
import type { Digest } from '../lib/digest.js';
import { WorkerAnnouncement } from '../registry/host-registry.js';
import { peerKeys, registryKeys } from '../registry/keys.js';
import { safeJson } from '../lib/safe-json.js';

/** The peer keys with their Cluster hash tags (registry/keys.ts `peerKeys`, docs/ARCHITECTURE.md "Redis keys"). */
export const holderKeys = (prefix: string) => {
  const k = peerKeys(prefix);
  return {
    /** HASH host → JSON HolderEntry, one per digest; tag `{<hex>}` (the slot of the digest's back-to-source semaphore). */
    holders: (d: Digest) => k.holders(d.hex),
    /** HASH host → open peer responses (the serving load), in the `{registry}` slot. */
    load: k.peerLoad,
    /** Pub/sub channel (classic PUBLISH, broadcast on a Cluster): a holder was added for the digest. */
    changed: (d: Digest) => k.holdersChanged(d.hex),
  };
};

export const HolderEntry = z.object({
  state: z.enum(['complete', 'partial']),
  /** Where the host serves blobs (`http(s)://host:port`). */
  peerUrl: z.string(),
  /** The worker instance that wrote the entry (registry/host-registry.ts). */
  instance: z.string(),
  /** Bytes of the blob as received (its Content-Length for a partial one), when known. */
  size: z.number().int().nonnegative().optional(),
  at: z.number(),
  /**
   * A partial holder streaming from other peers: the hosts its bytes come
   * through, nearest first (empty or absent: from upstream). A host never
   * fetches from a partial holder whose chain holds itself (it would wait on
   * its own bytes).
   */
  chain: z.array(z.string()).max(64).optional(),
  /** The host's FLEETQ_PEER_MAX_STREAMS: with its load at this, it answers 503 (busy) to more GETs. */
  maxStreams: z.number().int().positive().optional(),
});
export type HolderEntry = z.infer<typeof HolderEntry>;

export interface Holder extends HolderEntry {
  host: string;
  /** Open peer responses on that host right now (0 when unknown). */
  load: number;
}

/** Record `host` as a holder of `digest` and wake the hosts waiting for one. */
export async function addHolder(redis: Redis, prefix: string, digest: Digest, host: string, entry: HolderEntry): Promise<void> {
  const k = holderKeys(prefix);
  await redis.hset(k.holders(digest), host, JSON.stringify(HolderEntry.parse(entry)));
  await redis.publish(k.changed(digest), host);
}

/**
 * Drop `host` from the digest's holders. With `onlyPartialOf`, only if the
 * entry is still that instance's partial one (a newer commit by another
 * process stays). With `unlessPartialOfOther`, unless the entry is another
 * instance's partial one (a second worker process of the host that is
 * downloading it right now).
 */
export async function removeHolder(redis: Redis, prefix: string, digest: Digest, host: string, opts: { onlyPartialOf?: string; unlessPartialOfOther?: string } = {}): Promise<void> {
  const key = holderKeys(prefix).holders(digest);
  if (opts.onlyPartialOf !== undefined) {
    await redis.eval(REMOVE_PARTIAL_SCRIPT, 1, key, host, opts.onlyPartialOf);
    return;
  }
  if (opts.unlessPartialOfOther !== undefined) {
    await redis.eval(REMOVE_UNLESS_OTHERS_PARTIAL_SCRIPT, 1, key, host, opts.unlessPartialOfOther);
    return;
  }
  await redis.hdel(key, host);
}

/** KEYS: holders hash. ARGV: host, instance. Deletes the field only if it is that instance's partial entry. */
const REMOVE_PARTIAL_SCRIPT = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local ok, e = pcall(cjson.decode, v)
if ok and e.state == 'partial' and e.instance == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

/** KEYS: holders hash. ARGV: host, instance. Deletes the field unless it is another instance's partial entry. */
const REMOVE_UNLESS_OTHERS_PARTIAL_SCRIPT = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local ok, e = pcall(cjson.decode, v)
if ok and e.state == 'partial' and e.instance ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
`;

export interface ListHoldersOptions {
  /** A host (or instance) silent for longer is not live (FLEETQ_HOST_DOWN_AFTER). */
  downAfterMs: number;
  now?: number;
}

/**
 * The live holders of `digest`: entries that parse, of hosts whose heartbeat
 * is recent; a partial entry also needs its instance's heartbeat to be recent.
 * Sorted by host.
 */
export async function listHolders(redis: Redis, prefix: string, digest: Digest, opts: ListHoldersOptions): Promise<Holder[]> {
  const now = opts.now ?? Date.now();
  const k = holderKeys(prefix);
  const reg = registryKeys(prefix);
  const raw = await redis.hgetall(k.holders(digest));
  const hosts = Object.keys(raw).sort();
  if (hosts.length === 0) return [];
  const [seen, loads] = await Promise.all([redis.zmscore(reg.hosts, ...hosts), redis.hmget(k.load, ...hosts)]);
  const out: Holder[] = [];
  for (let i = 0; i < hosts.length; i++) {
    const host = hosts[i]!;
    const lastSeen = seen[i];
    if (lastSeen === null || lastSeen === undefined || now - Number(lastSeen) > opts.downAfterMs) continue;
    const parsed = HolderEntry.safeParse(safeJson(raw[host]!));
    if (!parsed.success) continue;
    const e = parsed.data;
    if (e.state === 'partial' && !(await instanceLive(redis, prefix, host, e.instance, now, opts.downAfterMs))) continue;
    out.push({ ...e, host, load: Math.max(0, Number(loads[i] ?? 0) || 0) });
  }
  return out;
}

async function instanceLive(redis: Redis, prefix: string, host: string, instance: string, now: number, downAfterMs: number): Promise<boolean> {
  const v = await redis.hget(registryKeys(prefix).host(host), instance);
  const a = WorkerAnnouncement.safeParse(safeJson(v));
  return a.success && now - a.data.lastSeen <= downAfterMs;
}

/** Set this host's serving load (its open peer responses). */
export async function setServingLoad(redis: Redis, prefix: string, host: string, open: number): Promise<void> {
  await redis.hset(holderKeys(prefix).load, host, String(open));
}

/**
 * Pick one holder at random, weighted by 1 / (1 + load): an idle peer is
 * chosen more often than a busy one, and no peer is never chosen. Holders
 * with a free stream slot as last reported (load below their maxStreams, or
 * no limit known) are preferred over full ones (which would answer 503);
 * among those, complete holders over partial ones (they cannot stall on
 * their upstream). The load in Redis may be a moment old, so a full holder
 * is still picked when no other is left: its answer decides.
 * `exclude`: hosts not to use (this host, peers that failed or said busy).
 */
export function pickHolder(holders: readonly Holder[], exclude: ReadonlySet<string> = new Set(), random: () => number = Math.random): Holder | undefined {
  const usable = holders.filter((h) => !exclude.has(h.host));
  const free = usable.filter(hasFreeSlot);
  const open = free.length > 0 ? free : usable;
  const complete = open.filter((h) => h.state === 'complete');
  const pool = complete.length > 0 ? complete : open;
  if (pool.length === 0) return undefined;
  const weights = pool.map((h) => 1 / (1 + h.load));
  const total = weights.reduce((a, b) => a + b, 0);
  let r = random() * total;
  for (let i = 0; i < pool.length; i++) {
    r -= weights[i]!;
    if (r < 0) return pool[i];
  }
  return pool[pool.length - 1];
}

/** The holder's reported load leaves a stream slot (or its limit is unknown). Pure. */
export function hasFreeSlot(h: Holder): boolean {
  return h.maxStreams === undefined || h.load < h.maxStreams;
}

/** The holders `self` may fetch from: not itself, and no partial holder whose bytes come through it. Pure. */
export function usableBy(holders: readonly Holder[], self: string): Holder[] {
  return holders.filter((h) => h.host !== self && !(h.state === 'partial' && h.chain?.includes(self)));
}

