/**
 * Every Redis key and pub/sub channel fleetq writes, as a pattern with its
 * Redis Cluster slot rule. Pure. docs/ARCHITECTURE.md ("Redis keys") shows
 * this list as a table (a test checks that the two agree), and the key-layout
 * test (test/integration/key-layout.test.ts) checks every key a full run
 * writes against it, and that every multi-key command, MULTI and script of
 * that run stays in one slot.
 *
 * Slot rules (Redis hashes only the first `{…}` of a key):
 *   - `{<host>}`: a host's queues (`images-{<host>}`, `restores-{<host>}`:
 *     flows join the two), its dead letters (recorded in one script with the
 *     failed job's hash), its metrics snapshots and its pull locks: one slot
 *     per host, hosts spread over the masters;
 *   - `{registry}`: the fleet-wide registry (one MULTI per announcement, one
 *     script per dropped host): one slot for the fleet;
 *   - `{<hex>}`: per digest, for the peer features of issue 13 (planned);
 *   - channels: classic PUBLISH/SUBSCRIBE, which a Cluster broadcasts to every
 *     node: no slot.
 * A `{tag}` in FLEETQ_PREFIX comes first in every key and so overrides all of
 * these (every key in one slot: correct, without scale-out).
 */
export type SlotRule = 'host' | 'registry' | 'digest' | 'channel';

export interface KeyPattern {
  /** As documented, e.g. `<prefix>:{<host>}:dlq:index`. */
  pattern: string;
  kind: 'BullMQ' | 'string' | 'hash' | 'zset' | 'set' | 'channel';
  slot: SlotRule;
  what: string;
  /** Issue 13's keys, planned here: not written by this version yet. */
  planned?: boolean;
  /** The pattern after `<prefix>:` as a regular expression; group 1 is the tag's variable part (host, hex). */
  re: string;
}

/** A host id in a key (config/schema.ts HostId). */
const HOST = '[A-Za-z0-9][A-Za-z0-9._-]{0,62}';
const HEX = '[0-9a-f]{64}';
/** A worker instance id (registry/host-registry.ts newInstanceId): `<pid>-<8 hex>`. */
const INSTANCE = '[0-9]+-[0-9a-f]{8}';

export const KEY_PATTERNS: readonly KeyPattern[] = [
  { pattern: '<prefix>:images-{<host>}:…', kind: 'BullMQ', slot: 'host', what: "the host's image queue (every BullMQ key of it: wait, meta, events, marker, job hashes, dedup keys, schedulers…; BullMQ's scripts also name the bare `…:` as a key, to build job keys)", re: `images-\\{(${HOST})\\}:.*` },
  { pattern: '<prefix>:restores-{<host>}:…', kind: 'BullMQ', slot: 'host', what: "the host's restore queue; a restore and its image job are a flow across the two queues, so they share the slot", re: `restores-\\{(${HOST})\\}:.*` },
  { pattern: '<prefix>:{<host>}:dlq:entries', kind: 'hash', slot: 'host', what: "dead letters of the host's queues: id → entry (recorded in one script with the job's hash and its queue's failed set)", re: `\\{(${HOST})\\}:dlq:entries` },
  { pattern: '<prefix>:{<host>}:dlq:index', kind: 'zset', slot: 'host', what: 'dead letters: id → failed at (ms); dropped after FLEETQ_DLQ_MAX_AGE', re: `\\{(${HOST})\\}:dlq:index` },
  { pattern: '<prefix>:{<host>}:dlq:swept', kind: 'hash', slot: 'host', what: "the dead-letter sweep's watermark per queue", re: `\\{(${HOST})\\}:dlq:swept` },
  { pattern: '<prefix>:{<host>}:metrics', kind: 'zset', slot: 'host', what: 'index of the metrics snapshots: instance → last push (ms)', re: `\\{(${HOST})\\}:metrics` },
  { pattern: '<prefix>:{<host>}:metrics:<instance>', kind: 'string', slot: 'host', what: "a worker's metrics snapshot (prom-client JSON), TTL max(1h, 10 × FLEETQ_HOST_DOWN_AFTER)", re: `\\{(${HOST})\\}:metrics:${INSTANCE}` },
  { pattern: '<prefix>:mutex:pull-lock:{<host>}:digest:<hex>', kind: 'string', slot: 'host', what: 'the pull lock of a pinned digest (redis-semaphore Mutex on the keyPrefixed client; TTL FLEETQ_LOCK_TTL)', re: `mutex:pull-lock:\\{(${HOST})\\}:digest:${HEX}` },
  { pattern: '<prefix>:mutex:pull-lock:{<host>}:url:<sha256 of the URL>', kind: 'string', slot: 'host', what: 'the pull lock of an unpinned URL', re: `mutex:pull-lock:\\{(${HOST})\\}:url:${HEX}` },
  { pattern: '<prefix>:{registry}:hosts', kind: 'zset', slot: 'registry', what: 'host → last heartbeat (ms); hosts silent for FLEETQ_HOST_RETENTION are dropped', re: '\\{(registry)\\}:hosts' },
  { pattern: '<prefix>:{registry}:host:<host>', kind: 'hash', slot: 'registry', what: "a host's worker announcements (instance → JSON); one MULTI with the hosts zset", re: `\\{(registry)\\}:host:${HOST}` },
  { pattern: '<prefix>:{registry}:dlq-hosts', kind: 'set', slot: 'registry', what: 'hosts that have dead letters (where `fleetq dlq` looks)', re: '\\{(registry)\\}:dlq-hosts' },
  { pattern: '<prefix>:{registry}:peer-load', kind: 'hash', slot: 'registry', what: 'host → transfers served now (placement reads it with the registry)', planned: true, re: '\\{(registry)\\}:peer-load' },
  { pattern: '<prefix>:holders:{<hex>}', kind: 'hash', slot: 'digest', what: 'hosts holding a digest', planned: true, re: `holders:\\{(${HEX})\\}` },
  { pattern: '<prefix>:semaphore:b2s:{<hex>}', kind: 'zset', slot: 'digest', what: "the fleet-wide back-to-source limit per digest (redis-semaphore Semaphore on the mutex client); the digest's slot, as its holders", planned: true, re: `semaphore:b2s:\\{(${HEX})\\}` },
  { pattern: '<prefix>:pull-released:<host>:digest:<hex>', kind: 'channel', slot: 'channel', what: '"the pull lock was released" (followers wait for it, or for the lock TTL); `…:url:<sha256 of the URL>` for an unpinned URL', re: `pull-released:(${HOST}):(?:digest|url):${HEX}` },
  { pattern: '<prefix>:holders-changed:<hex>', kind: 'channel', slot: 'channel', what: '"a host now holds this digest"', planned: true, re: `holders-changed:(${HEX})` },
];

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const compiled = new Map<string, Array<{ p: KeyPattern; re: RegExp }>>();
function patternsFor(prefix: string) {
  let c = compiled.get(prefix);
  if (!c) {
    c = KEY_PATTERNS.map((p) => ({ p, re: new RegExp(`^${escape(prefix)}:${p.re}$`) }));
    compiled.set(prefix, c);
  }
  return c;
}

export interface KeyMatch {
  pattern: KeyPattern;
  /** The tag's variable: the host, `registry` or the digest hex (a channel: its host or hex). */
  subject: string;
}

/** The documented pattern a key (or, with `channel`, a pub/sub channel) is an instance of, if any. */
export function matchKeyPattern(prefix: string, name: string, opts: { channel?: boolean } = {}): KeyMatch | undefined {
  for (const { p, re } of patternsFor(prefix)) {
    if ((p.kind === 'channel') !== Boolean(opts.channel)) continue;
    const m = re.exec(name);
    if (m) return { pattern: p, subject: m[1]! };
  }
  return undefined;
}

/** What Redis Cluster hashes for a key: the first non-empty `{…}`, else the whole key. */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** CRC16/XMODEM of the hash tag, mod 16384: the key's Redis Cluster slot (what CLUSTER KEYSLOT answers). */
export function keySlot(key: string): number {
  let crc = 0;
  for (const byte of Buffer.from(hashTagOf(key))) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
