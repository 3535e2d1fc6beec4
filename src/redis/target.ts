/**
 * Which Redis fleetq talks to, decided from the configuration alone. Pure.
 *
 * Three modes, chosen by which setting is present (config/schema.ts checks
 * that at most one is):
 *   - single:   REDIS_URL (default redis://127.0.0.1:6379), `rediss://` = TLS,
 *               a database index in the path (`/3`) or `?db=3`;
 *   - cluster:  FLEETQ_REDIS_CLUSTER_NODES (seed nodes; database 0 only);
 *   - sentinel: FLEETQ_REDIS_SENTINELS + FLEETQ_REDIS_SENTINEL_NAME
 *               (the current master of that group; database 0).
 * TLS with Cluster or Sentinel: FLEETQ_REDIS_TLS=on. Credentials are never in
 * the target (redis/credentials.ts reads them from files).
 */
import { DEFAULT_REDIS_URL, type Config } from '../config/schema.js';
import { ConfigError } from '../lib/errors.js';

export interface RedisNode {
  host: string;
  port: number;
}

export type RedisTarget =
  | { mode: 'single'; url: string; host: string; port: number; db: number; tls: boolean }
  | { mode: 'cluster'; nodes: RedisNode[]; tls: boolean }
  | { mode: 'sentinel'; sentinels: RedisNode[]; name: string; tls: boolean };

export type RedisMode = RedisTarget['mode'];

/** The settings that choose the Redis and how to reach it. */
export type RedisConfig = Pick<
  Config,
  'redisUrl' | 'redisClusterNodes' | 'redisSentinels' | 'redisSentinelName' | 'redisUsername' | 'redisPasswordFile' | 'redisSentinelPasswordFile' | 'redisTls' | 'redisTlsCaFile'
>;

/**
 * The database index a Redis URL names: `redis://h:6379/3` (or `?db=3`) → 3,
 * none → 0. ioredis selects it on connect, but when SELECT fails (`/99` on a
 * server with 16 databases, `/abc`) it only emits an error and carries on in
 * database 0: so the index is checked here, and selected in `waitReady`,
 * whose failure stops the command instead.
 */
export function redisDbIndex(url: string): number {
  const u = parseUrl(url);
  const path = u.pathname.replace(/^\//, '');
  const query = u.searchParams.get('db');
  if (path && query !== null && path !== query) {
    throw new ConfigError(`invalid REDIS_URL: the database is given twice (/${path} and ?db=${query})`, 'REDIS_URL');
  }
  const raw = path || query || '0';
  if (!/^\d{1,9}$/.test(raw)) {
    throw new ConfigError(`invalid REDIS_URL: the database index must be a whole number, as in redis://host:6379/3 (got "/${raw.slice(0, 20)}")`, 'REDIS_URL');
  }
  return Number(raw);
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new ConfigError('invalid REDIS_URL: not a URL (expected redis://host:port[/db])', 'REDIS_URL');
  }
}

export function redisTarget(cfg: RedisConfig): RedisTarget {
  if (cfg.redisClusterNodes) return { mode: 'cluster', nodes: [...cfg.redisClusterNodes], tls: cfg.redisTls === true };
  if (cfg.redisSentinels) {
    if (!cfg.redisSentinelName) throw new ConfigError('invalid FLEETQ_REDIS_SENTINEL_NAME: is required when FLEETQ_REDIS_SENTINELS is set', 'FLEETQ_REDIS_SENTINEL_NAME');
    return { mode: 'sentinel', sentinels: [...cfg.redisSentinels], name: cfg.redisSentinelName, tls: cfg.redisTls === true };
  }
  const url = cfg.redisUrl ?? DEFAULT_REDIS_URL;
  const u = parseUrl(url);
  return {
    mode: 'single',
    url,
    host: (u.hostname || '127.0.0.1').replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    db: redisDbIndex(url),
    tls: u.protocol === 'rediss:',
  };
}

const node = (n: RedisNode) => (n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`);

/** For logs and error messages (no credentials are ever in a target). */
export function describeRedisTarget(t: RedisTarget): string {
  switch (t.mode) {
    case 'single':
      return `${t.tls ? 'rediss' : 'redis'}://${node(t)}/${t.db}`;
    case 'cluster':
      return `Redis Cluster via ${t.nodes.map(node).join(',')}${t.tls ? ' (TLS)' : ''}`;
    case 'sentinel':
      return `master "${t.name}" via Sentinel ${t.sentinels.map(node).join(',')}${t.tls ? ' (TLS)' : ''}`;
  }
}

/** The variable(s) that point fleetq at this Redis, for "set …" hints. */
export function redisTargetVariables(t: RedisTarget): string {
  return t.mode === 'single' ? 'REDIS_URL' : t.mode === 'cluster' ? 'FLEETQ_REDIS_CLUSTER_NODES' : 'FLEETQ_REDIS_SENTINELS / FLEETQ_REDIS_SENTINEL_NAME';
}

/** Addresses of fleetq's own Redis that are known before connecting (the destination policy refuses them). */
export function redisEndpoints(t: RedisTarget): RedisNode[] {
  return t.mode === 'single' ? [{ host: t.host, port: t.port }] : t.mode === 'cluster' ? t.nodes : t.sentinels;
}
