/**
 * `fleetq migrate`, application keys: move the host registry, the dead
 * letters and the dead-letter sweep watermarks from the layout of fleetq ≤ 0.1
 * (`<prefix>:hosts`, `<prefix>:host:<host>`, `<prefix>:dlq:entries|index|swept`:
 * untagged, so on a Cluster their MULTIs and scripts would cross slots) to the
 * Cluster layout (registry/keys.ts: `<prefix>:{registry}:…` and
 * `<prefix>:{<host>}:dlq:…`).
 *
 *   - registry: each host keeps its newest heartbeat (ZADD GT) and every
 *     worker announcement the new layout does not have yet (HSETNX: a worker
 *     of this version that announced meanwhile wins);
 *   - dead letters: each entry goes to its queue's host's store with its
 *     failure time (never overwriting an entry of the same id), and the host
 *     into the set `fleetq dlq` reads; an entry that does not parse stays in
 *     the old keys and is reported;
 *   - watermarks: per queue, to its host's hash (HSETNX);
 *   - metrics snapshots (`<prefix>:metrics:<host>:<instance>`): transient
 *     (1 h TTL; the next heartbeat writes new ones): deleted, on a single
 *     Redis or Sentinel (found by SCAN); on a Cluster left to expire;
 *   - pull locks (`<prefix>:mutex:pull-lock:<host>:…`): expire by their TTL.
 * Each old key is removed once everything in it has moved. Every command
 * touches one key, so this also runs on a Cluster. Idempotent: a second run
 * moves nothing.
 */
import { DeadLetter, deadLetterHost } from './dead-letter-store.js';
import { parseQueueName } from './names.js';
import { isCluster, type RedisClient } from '../redis/connect.js';
import { hostKeys, legacyRegistryKeys, registryKeys } from '../registry/keys.js';

export interface KeyMigration {
  dryRun: boolean;
  /** Hosts moved into the new registry (or that would be). */
  hosts: number;
  /** Worker announcements moved. */
  workers: number;
  deadLetters: number;
  watermarks: number;
  /** Old metrics snapshots deleted. */
  metrics: number;
  /** Dead letters that do not parse, left in the old keys. */
  unreadable: string[];
}

export async function migrateLegacyKeys(redis: RedisClient, prefix: string, opts: { dryRun?: boolean | undefined; batch?: number | undefined } = {}): Promise<KeyMigration> {
  const dry = Boolean(opts.dryRun);
  const batch = opts.batch ?? 500;
  const old = legacyRegistryKeys(prefix);
  const reg = registryKeys(prefix);
  const report: KeyMigration = { dryRun: dry, hosts: 0, workers: 0, deadLetters: 0, watermarks: 0, metrics: 0, unreadable: [] };

  // Registry.
  const hosts = await redis.zrange(old.hosts, 0, -1, 'WITHSCORES');
  for (let i = 0; i < hosts.length; i += 2) {
    const host = hosts[i]!;
    const workers = await redis.hgetall(old.host(host));
    report.hosts++;
    report.workers += Object.keys(workers).length;
    if (dry) continue;
    await redis.zadd(reg.hosts, 'GT', hosts[i + 1]!, host);
    for (const [instance, json] of Object.entries(workers)) await redis.hsetnx(reg.host(host), instance, json);
    await redis.del(old.host(host));
    await redis.zrem(old.hosts, host);
  }

  // Dead letters, oldest first, a page at a time (moved ones leave the old index, so the offset advances only past unreadable ones).
  let offset = 0;
  for (;;) {
    const page = await redis.zrange(old.dlqIndex, offset, offset + batch - 1, 'WITHSCORES');
    if (page.length === 0) break;
    const ids = page.filter((_, i) => i % 2 === 0);
    const values = await redis.hmget(old.dlqEntries, ...ids);
    for (const [j, id] of ids.entries()) {
      const score = page[2 * j + 1]!;
      const raw = values[j];
      let entry: DeadLetter | undefined;
      try {
        entry = raw ? DeadLetter.parse(JSON.parse(raw)) : undefined;
      } catch {
        entry = undefined;
      }
      const host = entry ? (deadLetterHost(id) ?? entry.host) : undefined;
      if (!entry || !host) {
        if (raw === null || raw === undefined) {
          if (!dry) await redis.zrem(old.dlqIndex, id); // an index entry without its entry: nothing to move
        } else {
          report.unreadable.push(id);
          offset++;
        }
        continue;
      }
      report.deadLetters++;
      if (dry) {
        offset++;
        continue;
      }
      const k = hostKeys(prefix, host);
      await redis.sadd(reg.dlqHosts, host);
      await redis.hsetnx(k.dlqEntries, id, raw!);
      await redis.zadd(k.dlqIndex, 'NX', score, id);
      await redis.hdel(old.dlqEntries, id);
      await redis.zrem(old.dlqIndex, id);
    }
  }
  if (!dry && report.unreadable.length === 0 && (await redis.zcard(old.dlqIndex)) === 0) {
    // Two DELs: the old keys are in different Cluster slots.
    await redis.del(old.dlqEntries);
    await redis.del(old.dlqIndex);
  }

  // Sweep watermarks.
  const swept = await redis.hgetall(old.dlqSwept);
  for (const [queue, ms] of Object.entries(swept)) {
    const host = parseQueueName(queue)?.host;
    if (host !== undefined) report.watermarks++;
    if (dry) continue;
    if (host !== undefined) await redis.hsetnx(hostKeys(prefix, host).dlqSwept, queue, ms);
    await redis.hdel(old.dlqSwept, queue);
  }

  // Metrics snapshots: transient; SCAN only where it sees every key.
  if (!isCluster(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', old.metricsPattern, 'COUNT', 1000);
      cursor = next;
      report.metrics += keys.length;
      if (!dry && keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  }
  return report;
}

/** Did the migration find anything of the old layout? */
export function movedAnything(r: KeyMigration): boolean {
  return r.hosts + r.deadLetters + r.watermarks + r.metrics + r.unreadable.length > 0;
}
