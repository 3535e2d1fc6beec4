/**
 * The test's own clients for a Redis Cluster or Sentinel set-up (producers,
 * QueueEvents, inspection), built as ../shared/reference/redis-ha.md §2
 * says, independently of fleetq's connection factory: what a producer
 * application would use. And WAIT on the connection that made a write.
 */
import type { Queue } from 'bullmq';
import { Cluster, type Redis } from 'ioredis';
import { RevivingSentinelRedis } from '../../src/redis/sentinel-client.js';

/** Connections closed so far per client (a Cluster counts its node connections): see `closes`. */
const closed = new WeakMap<Redis | Cluster, { n: number }>();

/** Start counting `client`'s closed connections (from now: only differences matter). */
function countCloses(client: Redis | Cluster): { n: number } {
  let c = closed.get(client);
  if (c) return c;
  const counter = { n: 0 };
  c = counter;
  closed.set(client, counter);
  if (client instanceof Cluster) {
    const watch = (node: Redis) => node.on('close', () => counter.n++);
    for (const node of client.nodes()) watch(node);
    client.on('+node', watch);
    client.on('-node', () => counter.n++);
  } else {
    client.on('close', () => counter.n++);
  }
  return counter;
}

/**
 * How many connections of this queue's client (the one BullMQ uses for it)
 * have closed since it was first asked. WAIT only covers writes made on the
 * connection it is sent on: if this changed between an add and its WAIT, the
 * WAIT ran on a new connection (after a failover or reconnect) and confirms
 * nothing about the add (it answers for a connection that wrote nothing:
 * every replica, at once).
 */
export async function closes(queue: Queue): Promise<number> {
  const client = (await queue.getBackend().client) as unknown as Redis | Cluster;
  return countCloses(client).n;
}

const hostPort = (s: string) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};

/** A Cluster client from "h:p,h:p" seeds: retries longer than a failover, no offline queue limits for blocking readers. */
export function clusterClient(seeds: string, opts: { failFast?: boolean } = {}): Cluster {
  const c = new Cluster(seeds.split(',').map(hostPort), {
    redisOptions: { maxRetriesPerRequest: opts.failFast ? 1 : null },
    enableOfflineQueue: true,
    // 16 redirections × 1 s: longer than node timeout + election (about 4 s with cluster-node-timeout 2000).
    retryDelayOnFailover: 1000,
    retryDelayOnClusterDown: 1000,
    retryDelayOnTryAgain: 500,
    scaleReads: 'master',
  });
  c.on('error', () => {});
  return c;
}

export interface SentinelClientOptions {
  /** ioredis `failoverDetector`: follow +switch-master at once (default true). */
  failoverDetector?: boolean;
  failFast?: boolean;
}

/**
 * A client of the master that the sentinels ("h:p,h:p") name `name`. A
 * RevivingSentinelRedis (src/redis/sentinel-client.ts): a plain ioredis 5.11
 * Sentinel client can end for good after a failover (the producer of the
 * kill -9 test once could neither add nor read for 90 s); a producer
 * application needs the same protection as fleetq's own clients.
 */
export function sentinelClient(seeds: string, name: string, opts: SentinelClientOptions = {}): Redis {
  const r = new RevivingSentinelRedis({
    sentinels: seeds.split(',').map(hostPort),
    name,
    role: 'master',
    failoverDetector: opts.failoverDetector ?? true,
    maxRetriesPerRequest: opts.failFast ? 1 : null,
  });
  r.on('error', () => {});
  return r;
}

/**
 * How many replicas acknowledged every write this queue's connection has
 * made so far (WAIT `replicas` `timeoutMs`: returns early once that many
 * have), asked on the very connection that made
 * them: for a Cluster, the connection to the master that serves the queue's
 * slot (a bare `cluster.wait()` goes to a random node and proves nothing).
 */
const slotOf = new WeakMap<Queue, number>();

export async function replicasAcked(queue: Queue, timeoutMs: number, replicas = 1): Promise<number> {
  const client = (await queue.getBackend().client) as unknown as Redis | Cluster;
  if (client instanceof Cluster) {
    let slot = slotOf.get(queue);
    if (slot === undefined) {
      slot = Number(await client.cluster('KEYSLOT', `${queue.opts.prefix ?? 'bull'}:${queue.name}:id`));
      slotOf.set(queue, slot);
    }
    const owner = client.slots[slot]?.[0];
    const node = client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
    if (!node) throw new Error(`no connection to the master of slot ${slot} (${owner ?? 'unknown'})`);
    return node.wait(replicas, timeoutMs);
  }
  return client.wait(replicas, timeoutMs);
}
