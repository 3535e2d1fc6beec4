/**
 * Workers' metrics snapshots in Redis: each worker pushes its prom-client
 * metrics (JSON) with every heartbeat; the board merges them on /metrics.
 * Per host, in the host's slot (registry/keys.ts hostKeys): one STRING per
 * worker instance with a TTL, and an index ZSET (instance → last push) so
 * that readers find them without SCAN (which a Cluster client sends to one
 * random node). A stopped worker's last snapshot stays until its TTL, so
 * fleet counters do not drop when a worker restarts.
 */
import type { RedisClient } from '../redis/connect.js';
import { hostKeys } from './keys.js';

/** Store `snapshot` as this instance's, for `ttlMs`; index entries older than that are dropped on the way. */
export async function pushMetricsSnapshot(redis: RedisClient, prefix: string, host: string, instance: string, snapshot: string, ttlMs: number, now = Date.now()): Promise<void> {
  const k = hostKeys(prefix, host);
  // One slot ({<host>}): a MULTI is allowed on a Cluster.
  await redis
    .multi()
    .set(k.metrics(instance), snapshot, 'PX', ttlMs)
    .zadd(k.metricsIndex, now, instance)
    .zremrangebyscore(k.metricsIndex, '-inf', `(${now - ttlMs}`)
    .pexpire(k.metricsIndex, ttlMs)
    .exec();
}

/** The snapshots of these hosts' workers (parsed JSON), live or stopped but not expired. One round trip per host. */
export async function readMetricsSnapshots(redis: RedisClient, prefix: string, hosts: readonly string[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const host of hosts) {
    const k = hostKeys(prefix, host);
    const instances = await redis.zrange(k.metricsIndex, 0, -1);
    if (instances.length === 0) continue;
    // Same slot: MGET is fine on a Cluster too.
    for (const v of await redis.mget(...instances.map((i) => k.metrics(i)))) {
      if (!v) continue;
      try {
        out.push(JSON.parse(v));
      } catch {
        // a foreign or truncated value: not a snapshot
      }
    }
  }
  return out;
}

/** Delete a host's snapshots and their index (`fleetq hosts rm`). */
export async function dropMetricsSnapshots(redis: RedisClient, prefix: string, host: string): Promise<void> {
  const k = hostKeys(prefix, host);
  const instances = await redis.zrange(k.metricsIndex, 0, -1);
  await redis.del(k.metricsIndex, ...instances.map((i) => k.metrics(i)));
}
