/**
 * The snapshots each host publishes for placement: one Redis HASH per host,
 * `<prefix>:snapshots:<host>`, written by the host's worker from `cocoon
 * snapshot ls` (worker/snapshot-publisher.ts) and read by `--host auto`
 * (place-restore.ts) and `fleetq hosts`.
 *
 *   field `<name>`  → JSON {id, name, digest?}   a snapshot by name
 *   field `#<ID>`   → the same                    by its cocoon ID
 *   field `:meta`   → JSON CatalogMeta            when it was listed, how many, the last error
 *
 * Names that are not cocoon names (`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`, what
 * a restore job can name) are not published, so `#…` and `:meta` can never
 * collide with one. At most MAX_PUBLISHED_SNAPSHOTS snapshots (the newest)
 * are published per host. A successful listing replaces the whole hash in
 * one MULTI; a failed one only records its error in `:meta` (the last good
 * names stay until the key's TTL runs out). Only hosts that are up count:
 * the reader checks the registry, never the key's age alone.
 */
import type { RedisClient as Redis } from '../redis/connect.js';
import { z } from 'zod';
import { COCOON_NAME_RE } from '../jobs/contracts/restore.js';
import { Digest } from '../lib/digest.js';
import type { CocoonSnapshot } from '../restore/cocoon-records.js';
import { snapshotDigest } from '../restore/snapshot-base.js';
import { hostKeys } from '../registry/keys.js';
import { safeJson } from '../lib/safe-json.js';

/** The cap on snapshots published per host: bounds the hash (about 200 bytes each) and every refresh's write. */
export const MAX_PUBLISHED_SNAPSHOTS = 1000;

const META = ':meta';
const ID_FIELD = (id: string) => `#${id}`;

export const CatalogEntry = z.object({
  id: z.string(),
  name: z.string(),
  /** The base image digest the snapshot records (`image_digest`, else its single `image_blob_ids` key). */
  digest: z.string().optional(),
});
export type CatalogEntry = z.infer<typeof CatalogEntry>;

export const CatalogMeta = z.object({
  /** The worker process that wrote it. */
  pid: z.number().int(),
  /** When `cocoon snapshot ls` last succeeded (ms); absent if it never did. */
  listedAt: z.number().optional(),
  /** Snapshots cocoon listed (before the cap and the name filter). */
  count: z.number().int().nonnegative(),
  /** Snapshots published. */
  published: z.number().int().nonnegative(),
  /** Listed but not published: over the cap. */
  truncated: z.number().int().nonnegative(),
  /** Listed but not published: no name a restore job can use (they are still published by ID). */
  unnamed: z.number().int().nonnegative().default(0),
  /** The newest listing failed with this. */
  error: z.string().optional(),
  errorAt: z.number().optional(),
});
export type CatalogMeta = z.infer<typeof CatalogMeta>;

export interface Catalog {
  entries: CatalogEntry[];
  count: number;
  truncated: number;
  unnamed: number;
}

/**
 * What a host publishes from `cocoon snapshot ls`: the newest `cap`
 * snapshots (cocoon lists them oldest first), each with the digest its record
 * names when it names one unambiguously. Pure.
 */
export function catalogFrom(snaps: readonly CocoonSnapshot[], cap = MAX_PUBLISHED_SNAPSHOTS): Catalog {
  const kept = snaps.length > cap ? snaps.slice(snaps.length - cap) : snaps;
  let unnamed = 0;
  const entries: CatalogEntry[] = [];
  for (const s of kept) {
    let digest: Digest | undefined;
    try {
      digest = snapshotDigest(s);
    } catch {
      digest = undefined; // a record that names no single valid digest: published without one (the restore says why)
    }
    const name = s.name ?? '';
    if (!COCOON_NAME_RE.test(name)) unnamed++;
    entries.push({ id: s.id, name, ...(digest ? { digest: digest.value } : {}) });
  }
  return { entries, count: snaps.length, truncated: snaps.length - kept.length, unnamed };
}

export const catalogKey = (prefix: string, host: string) => hostKeys(prefix, host).snapshots;

/** Replace the host's published snapshots (one MULTI: readers see the old list or the new one). */
export async function publishCatalog(redis: Redis, prefix: string, host: string, c: Catalog, o: { pid: number; ttlMs: number; now?: number }): Promise<CatalogMeta> {
  const key = catalogKey(prefix, host);
  const now = o.now ?? Date.now();
  const meta: CatalogMeta = { pid: o.pid, listedAt: now, count: c.count, published: c.entries.length, truncated: c.truncated, unnamed: c.unnamed };
  const fields: string[] = [];
  for (const e of c.entries) {
    const v = JSON.stringify(e);
    const named = COCOON_NAME_RE.test(e.name);
    const ided = COCOON_NAME_RE.test(e.id);
    if (named) fields.push(e.name, v);
    if (ided) fields.push(ID_FIELD(e.id), v);
    if (!named && !ided) meta.published--;
  }
  await redis.multi().del(key).hset(key, META, JSON.stringify(meta), ...fields).pexpire(key, o.ttlMs).exec();
  return meta;
}

/** KEYS: the catalog. ARGV: meta field, meta JSON, ttl ms. Sets the meta; a new key gets the TTL, an existing one keeps its own. */
const RECORD_ERROR_SCRIPT = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`;

/** Record a failed listing: the last good names stay (until the key's TTL), the meta says what failed. */
export async function recordCatalogError(redis: Redis, prefix: string, host: string, error: string, o: { pid: number; ttlMs: number; last?: CatalogMeta | undefined; now?: number }): Promise<CatalogMeta> {
  const now = o.now ?? Date.now();
  const base: CatalogMeta = o.last ?? { pid: o.pid, count: 0, published: 0, truncated: 0, unnamed: 0 };
  const meta: CatalogMeta = { ...base, pid: o.pid, error: error.slice(0, 500), errorAt: now };
  await redis.eval(RECORD_ERROR_SCRIPT, 1, catalogKey(prefix, host), META, JSON.stringify(meta), String(o.ttlMs));
  return meta;
}

export interface CatalogLookup {
  meta?: CatalogMeta | undefined;
  /** The snapshot, by name or by ID; undefined when the host did not publish it. */
  entry?: (Omit<CatalogEntry, 'digest'> & { digest?: Digest | undefined }) | undefined;
}

/**
 * What `host` published about `snapshot` (a name or a full cocoon ID).
 * Undefined when the host published nothing at all. Entries written by
 * anything else than a publisher are input too: they are parsed, and a
 * digest that is not one is dropped.
 */
export async function lookupSnapshot(redis: Redis, prefix: string, host: string, snapshot: string): Promise<CatalogLookup | undefined> {
  const [meta, byName, byId] = await redis.hmget(catalogKey(prefix, host), META, snapshot, ID_FIELD(snapshot));
  if (meta === null && byName === null && byId === null) return undefined;
  const m = CatalogMeta.safeParse(safeJson(meta));
  const e = CatalogEntry.safeParse(safeJson(byName ?? byId));
  return {
    meta: m.success ? m.data : undefined,
    entry: e.success ? { id: e.data.id, name: e.data.name, digest: Digest.from(e.data.digest) } : undefined,
  };
}

/** The host's catalog meta (for `fleetq hosts`), or undefined when it published nothing. */
export async function readCatalogMeta(redis: Redis, prefix: string, host: string): Promise<CatalogMeta | undefined> {
  const m = CatalogMeta.safeParse(safeJson(await redis.hget(catalogKey(prefix, host), META)));
  return m.success ? m.data : undefined;
}

