/**
 * The one place Redis clients are made. Every client of fleetq — the worker's
 * (BullMQ Workers, registry and dead letters, the pull lock, the lock-release
 * subscriber), the board's, the CLI's and the library's — comes from
 * `connectRedis(cfg, role)`, so a single Redis, a Redis Cluster and a Sentinel
 * group (redis/target.ts), TLS and credentials (redis/credentials.ts) work the
 * same for all of them.
 *
 * Roles (what the client is for decides how it behaves when Redis is away):
 *   - worker:     BullMQ Workers and QueueEvents (blocking reads), and the
 *                 worker's other long-lived clients: commands wait for Redis
 *                 (`maxRetriesPerRequest: null`, which BullMQ requires; for a
 *                 Cluster it reads it from `redisOptions`), reconnects forever;
 *   - subscriber: the lock-release pub/sub client (classic SUBSCRIBE: on a
 *                 Cluster a PUBLISH reaches every node, so followers connected
 *                 to another node hear it; ioredis resubscribes after a
 *                 reconnect or failover); as a worker client;
 *   - mutex:      the pull lock's client (redis-semaphore), as a worker
 *                 client with ioredis `keyPrefix: "<prefix>:"` (top-level on a
 *                 Cluster); never handed to BullMQ, which refuses a keyPrefix;
 *   - service:    long-running processes that answer requests (the board, a
 *                 producer service using the library): reconnects forever,
 *                 but a command fails after one retry instead of hanging;
 *   - command:    one-shot CLI commands: a command fails after one retry and
 *                 the client gives up after a few reconnects (exit, not hang).
 *
 * Per mode:
 *   - Cluster: an ioredis `Cluster` (BullMQ needs the instance, not options),
 *     `scaleReads: master`, and a retry budget for MOVED/CLUSTERDOWN longer
 *     than a failover (16 redirections × 1 s > cluster-node-timeout +
 *     election; the default 16 × 100 ms made producers fail during one).
 *   - Sentinel: `role: master` and `failoverDetector: true` (ioredis listens
 *     for +switch-master on the sentinels: on a planned SENTINEL FAILOVER
 *     default settings kept writing to the demoted master for ~10 s and lost
 *     ~110 of 179 acknowledged jobs, with the detector ~9; see
 *     ../shared reference redis-ha.md §4). TLS covers sentinels and data nodes.
 *   - single: the URL's host, port, database and TLS.
 */
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../lib/errors.js';
import { lockKeyPrefix } from '../lock/keys.js';
import { loadRedisSecrets, type RedisSecrets } from './credentials.js';
import { RevivingSentinelRedis } from './sentinel-client.js';
import { describeRedisTarget, type RedisConfig, type RedisTarget, redisTarget, redisTargetVariables } from './target.js';

/** A client of any mode: code that fleetq runs on a Cluster uses only what both offer. */
export type RedisClient = Redis | Cluster;

export type RedisRole = 'worker' | 'subscriber' | 'mutex' | 'service' | 'command';
export const REDIS_ROLES: readonly RedisRole[] = ['worker', 'subscriber', 'mutex', 'service', 'command'];

/** Cluster: delay before retrying a command after a failover / CLUSTERDOWN (× maxRedirections = the budget). */
export const CLUSTER_RETRY_DELAY_MS = 1000;
export const CLUSTER_MAX_REDIRECTIONS = 16;

export interface ConnectOptions {
  /** Do not connect until the first command or `waitReady` (tests inspect options this way). */
  lazyConnect?: boolean | undefined;
}

/** What `connectRedis` builds: the class and its options. Pure (for tests and the factory). */
export type RedisClientPlan =
  | { kind: 'redis'; options: RedisOptions }
  | { kind: 'cluster'; nodes: Array<{ host: string; port: number }>; options: ClusterOptions };

/** Reconnects give up after this many tries for one-shot commands (≈ 1.2 s of back-off). */
const COMMAND_RECONNECTS = 3;
const commandRetry = (times: number) => (times > COMMAND_RECONNECTS ? null : 200 * times);
const serviceRetry = (times: number) => Math.min(200 * times, 2000);

/** Per-command behaviour of a role (the same in every mode). */
function commandOptions(role: RedisRole): Pick<RedisOptions, 'maxRetriesPerRequest' | 'enableReadyCheck' | 'connectTimeout'> {
  switch (role) {
    case 'worker':
    case 'subscriber':
    case 'mutex':
      return { maxRetriesPerRequest: null, enableReadyCheck: true };
    case 'service':
    case 'command':
      return { maxRetriesPerRequest: 1, enableReadyCheck: true, connectTimeout: 5_000 };
  }
}

export function redisClientPlan(target: RedisTarget, secrets: RedisSecrets, role: RedisRole, prefix: string, opts: ConnectOptions = {}): RedisClientPlan {
  const auth: RedisOptions = {
    ...(secrets.username !== undefined ? { username: secrets.username } : {}),
    ...(secrets.password !== undefined ? { password: secrets.password } : {}),
  };
  const tls = target.tls ? { tls: secrets.ca ? { ca: secrets.ca } : {} } : {};
  const keyPrefix = role === 'mutex' ? { keyPrefix: lockKeyPrefix(prefix) } : {};
  const lazy = opts.lazyConnect ? { lazyConnect: true } : {};
  const perCommand = commandOptions(role);
  const reconnect = role === 'command' ? commandRetry : role === 'service' ? serviceRetry : undefined; // undefined: ioredis's default, forever

  if (target.mode === 'cluster') {
    return {
      kind: 'cluster',
      nodes: target.nodes.map((n) => ({ host: n.host, port: n.port })),
      options: {
        // BullMQ reads maxRetriesPerRequest of a Cluster from here (and throws for a Worker unless null).
        redisOptions: { ...auth, ...tls, ...perCommand },
        enableReadyCheck: true,
        enableOfflineQueue: true,
        scaleReads: 'master',
        maxRedirections: CLUSTER_MAX_REDIRECTIONS,
        retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
        retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
        ...(reconnect ? { clusterRetryStrategy: reconnect } : {}),
        ...keyPrefix,
        ...lazy,
      },
    };
  }
  if (target.mode === 'sentinel') {
    return {
      kind: 'redis',
      options: {
        sentinels: target.sentinels.map((n) => ({ host: n.host, port: n.port })),
        name: target.name,
        role: 'master',
        failoverDetector: true,
        db: 0,
        ...(secrets.sentinelPassword !== undefined ? { sentinelPassword: secrets.sentinelPassword } : {}),
        ...auth,
        ...(target.tls ? { ...tls, enableTLSForSentinelMode: true, sentinelTLS: secrets.ca ? { ca: secrets.ca } : {} } : {}),
        ...perCommand,
        ...(reconnect ? { retryStrategy: reconnect } : {}),
        // Only a one-shot command stops asking the sentinels. Long waits between rounds of asking them
        // (serviceRetry: 200 ms … 2 s) let ioredis 5.11 end a Sentinel client for good: a +switch-master
        // (failoverDetector) that arrives during the wait closes the connector, the round then fails with
        // "Connection is closed." and the client goes to "end" without reconnecting. The HA test saw the
        // board answer 503 for good after a primary's kill -9 (4 of 16 clients in a reproduction; none with
        // ioredis's default of 10 ms × attempts, capped at 1 s, which the other roles use). The same end can
        // still happen with the default delays: connectRedis makes such a client a RevivingSentinelRedis.
        ...(role === 'command' ? { sentinelRetryStrategy: reconnect } : {}),
        ...keyPrefix,
        ...lazy,
      },
    };
  }
  return {
    kind: 'redis',
    options: {
      host: target.host,
      port: target.port,
      db: target.db,
      ...auth,
      ...tls,
      ...perCommand,
      ...(reconnect ? { retryStrategy: reconnect } : {}),
      ...keyPrefix,
      ...lazy,
    },
  };
}

/** A new client for `role` (the mutex role needs `cfg.prefix`). Secrets are read from their files on first use. */
export function connectRedis(cfg: RedisConfig & Pick<Config, 'prefix'>, role: RedisRole, opts: ConnectOptions = {}): RedisClient {
  const plan = redisClientPlan(redisTarget(cfg), loadRedisSecrets(cfg), role, cfg.prefix, opts);
  if (plan.kind === 'cluster') return new Cluster(plan.nodes, plan.options);
  // A Sentinel client that ioredis ends after a failover connects again (redis/sentinel-client.ts);
  // a one-shot command's client is allowed to give up.
  if (plan.options.sentinels && role !== 'command') return new RevivingSentinelRedis(plan.options);
  return new Redis(plan.options);
}

export function isCluster(client: RedisClient): client is Cluster {
  return (client as Cluster).isCluster === true;
}

/** Replies that mean the credentials are wrong (or the ACL user may not do this): waiting will not help. */
const AUTH_ERROR = /^(WRONGPASS|NOAUTH|NOPERM)\b|invalid username-password pair|Authentication required/i;

/**
 * Wait until `client` is ready, or fail: with a message naming the Redis and
 * the variables to set when it cannot connect (a client whose reconnects give
 * up), with a ConfigError naming the credential settings when Redis refuses
 * them. Then, for a single Redis, make sure the client uses the URL's
 * database (a ConfigError when that database does not exist, instead of
 * silently using database 0). A worker client never gives up reconnecting:
 * for it this waits until Redis is there.
 */
export async function waitReady(client: RedisClient, cfg: RedisConfig): Promise<void> {
  let target: RedisTarget;
  try {
    target = redisTarget(cfg);
  } catch (err) {
    client.disconnect();
    throw err;
  }
  if (client.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      const onReady = () => {
        cleanup();
        resolve();
      };
      const onEnd = () => {
        cleanup();
        reject(new Error(`cannot connect to ${describeRedisTarget(target)} (set ${redisTargetVariables(target)})`));
      };
      const onError = (err: Error) => {
        if (!AUTH_ERROR.test(err.message)) return; // connection errors: ioredis reconnects
        cleanup();
        client.disconnect();
        reject(new ConfigError(`${describeRedisTarget(target)} refused fleetq's credentials: ${err.message.split('\n')[0]}`, undefined, { settings: ['redisUsername', 'redisPasswordFile'] }));
      };
      const cleanup = () => {
        client.off('ready', onReady);
        client.off('end', onEnd);
        client.off('error', onError);
      };
      client.once('ready', onReady);
      client.once('end', onEnd);
      client.on('error', onError);
      if (client.status === 'wait') client.connect().catch(() => {}); // lazyConnect: failures arrive as 'error' / 'end'
    });
  }
  if (target.mode === 'single' && target.db !== 0) {
    try {
      // Selected again on purpose: ioredis's own SELECT at connect time swallows its failure.
      await (client as Redis).select(target.db);
    } catch (err) {
      client.disconnect(); // unusable: it would work in database 0
      throw new ConfigError(`invalid REDIS_URL: Redis at ${describeRedisTarget(target)} refused database ${target.db} (${(err as Error).message})`, 'REDIS_URL');
    }
  }
}

/** A connected client for `role`: made, errors routed to `onError` (default: ignored), ready. */
export async function openRedis(cfg: RedisConfig & Pick<Config, 'prefix'>, role: RedisRole, onError: (err: Error) => void = () => {}): Promise<RedisClient> {
  const client = connectRedis(cfg, role);
  client.on('error', onError);
  await waitReady(client, cfg);
  return client;
}
