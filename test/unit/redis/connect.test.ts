/**
 * The connection factory (redis/connect.ts): which ioredis class, and which
 * options, for each role in each mode. Real ioredis clients, built with
 * lazyConnect (nothing is mocked; nothing connects).
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { CLUSTER_MAX_REDIRECTIONS, CLUSTER_RETRY_DELAY_MS, connectRedis, REDIS_ROLES, type RedisClient, type RedisRole } from '../../../src/redis/connect.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetq-connect-'));
const secret = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, `${text}\n`);
  chmodSync(p, 0o600);
  return p;
};
const CA = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
const caFile = join(dir, 'ca.pem');
writeFileSync(caFile, CA);
const creds = { FLEETQ_REDIS_USERNAME: 'fleetq', FLEETQ_REDIS_PASSWORD_FILE: secret('pw', 'redis-pw') };

const made: RedisClient[] = [];
afterAll(() => {
  for (const c of made) c.disconnect();
  rmSync(dir, { recursive: true, force: true });
});
function client(env: Record<string, string>, role: RedisRole): RedisClient {
  const c = connectRedis(loadConfig({ FLEETQ_PREFIX: 'fq', ...env }), role, { lazyConnect: true });
  made.push(c);
  return c;
}

const BLOCKING: RedisRole[] = ['worker', 'subscriber', 'mutex'];

describe('single Redis (REDIS_URL)', () => {
  it.each(REDIS_ROLES)('%s: a Redis for the URL\'s host, port and database, credentials from the files, nothing connected yet', (role) => {
    const c = client({ REDIS_URL: 'redis://cache.internal:6380/2', ...creds }, role);
    expect(c).toBeInstanceOf(Redis);
    expect(c.status).toBe('wait');
    const o = (c as Redis).options;
    expect(o).toMatchObject({ host: 'cache.internal', port: 6380, db: 2, username: 'fleetq', password: 'redis-pw', enableReadyCheck: true });
    expect(o.tls).toBeUndefined();
    expect(o.sentinels ?? null).toBeNull();
  });

  it('worker, subscriber and mutex wait for Redis (maxRetriesPerRequest null, as BullMQ requires) and reconnect forever', () => {
    for (const role of BLOCKING) {
      const o = (client({}, role) as Redis).options;
      expect(o.maxRetriesPerRequest, role).toBeNull();
      expect(o.enableOfflineQueue, role).toBe(true);
      expect(o.retryStrategy!(1000), role).toBeGreaterThan(0);
    }
  });

  it('service: a command fails after one retry, reconnects never stop; command: reconnects give up after 3', () => {
    const service = (client({}, 'service') as Redis).options;
    expect(service.maxRetriesPerRequest).toBe(1);
    expect(service.retryStrategy!(10_000)).toBe(2000);
    const command = (client({}, 'command') as Redis).options;
    expect(command.maxRetriesPerRequest).toBe(1);
    expect(command.connectTimeout).toBe(5000);
    expect([1, 2, 3, 4].map((n) => command.retryStrategy!(n))).toEqual([200, 400, 600, null]);
  });

  it('only the mutex client has a keyPrefix ("<prefix>:"; BullMQ refuses one)', () => {
    for (const role of REDIS_ROLES) expect((client({}, role) as Redis).options.keyPrefix ?? '', role).toBe(role === 'mutex' ? 'fq:' : '');
  });

  it('rediss:// is TLS, with the CA bundle when one is given', () => {
    expect((client({ REDIS_URL: 'rediss://h:6380' }, 'worker') as Redis).options.tls).toEqual({});
    const tls = (client({ REDIS_URL: 'rediss://h:6380', FLEETQ_REDIS_TLS_CA_FILE: caFile }, 'command') as Redis).options.tls as { ca: Buffer };
    expect(tls.ca.toString()).toBe(CA);
  });
});

describe('Redis Cluster (FLEETQ_REDIS_CLUSTER_NODES)', () => {
  const nodes = { FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000,r2:7001,r3:7002' };

  it.each(REDIS_ROLES)('%s: an ioredis Cluster instance (BullMQ needs the instance) over the seed nodes', (role) => {
    const c = client({ ...nodes, ...creds }, role) as Cluster;
    expect(c).toBeInstanceOf(Cluster);
    expect(c.isCluster).toBe(true);
    expect(c.status).toBe('wait');
    expect((c as unknown as { startupNodes: unknown }).startupNodes).toEqual([{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }, { host: 'r3', port: 7002 }]);
    const o = c.options;
    expect(o).toMatchObject({ enableReadyCheck: true, enableOfflineQueue: true, scaleReads: 'master' });
    // The retry budget for MOVED / CLUSTERDOWN outlasts a failover (node timeout + election).
    expect(o.maxRedirections! * o.retryDelayOnFailover!).toBeGreaterThanOrEqual(10_000);
    expect(o.retryDelayOnFailover).toBe(CLUSTER_RETRY_DELAY_MS);
    expect(o.retryDelayOnClusterDown).toBe(CLUSTER_RETRY_DELAY_MS);
    expect(o.maxRedirections).toBe(CLUSTER_MAX_REDIRECTIONS);
    // Auth goes to every node; nothing in redisOptions that BullMQ or ioredis refuses.
    expect(o.redisOptions).toMatchObject({ username: 'fleetq', password: 'redis-pw' });
    expect(o.redisOptions!.keyPrefix).toBeUndefined();
  });

  it('BullMQ reads maxRetriesPerRequest of a Cluster from redisOptions: null for worker, subscriber, mutex', () => {
    for (const role of REDIS_ROLES) {
      const o = (client(nodes, role) as Cluster).options;
      expect(o.redisOptions!.maxRetriesPerRequest, role).toBe(BLOCKING.includes(role) ? null : 1);
    }
  });

  it('the mutex client\'s keyPrefix is a Cluster option (applied to every command and script key), nobody else\'s', () => {
    for (const role of REDIS_ROLES) expect((client(nodes, role) as Cluster).options.keyPrefix ?? '', role).toBe(role === 'mutex' ? 'fq:' : '');
  });

  it('a one-shot command gives up reconnecting; everyone else keeps trying', () => {
    expect([1, 3, 4].map((n) => (client(nodes, 'command') as Cluster).options.clusterRetryStrategy!(n))).toEqual([200, 600, null]);
    expect((client(nodes, 'worker') as Cluster).options.clusterRetryStrategy!(1000)).toBeGreaterThan(0);
    expect((client(nodes, 'service') as Cluster).options.clusterRetryStrategy!(1000)).toBe(2000);
  });

  it('FLEETQ_REDIS_TLS=on: TLS to every node, with the CA bundle', () => {
    const tls = (client({ ...nodes, FLEETQ_REDIS_TLS: 'on', FLEETQ_REDIS_TLS_CA_FILE: caFile }, 'worker') as Cluster).options.redisOptions!.tls as { ca: Buffer };
    expect(tls.ca.toString()).toBe(CA);
    expect((client(nodes, 'worker') as Cluster).options.redisOptions!.tls).toBeUndefined();
  });
});

describe('Redis Sentinel (FLEETQ_REDIS_SENTINELS + FLEETQ_REDIS_SENTINEL_NAME)', () => {
  const sentinels = { FLEETQ_REDIS_SENTINELS: 's1:26379,s2:26380,s3:26381', FLEETQ_REDIS_SENTINEL_NAME: 'fleetq-main' };

  it.each(REDIS_ROLES)('%s: a Redis that asks the sentinels for the master, with the failover detector', (role) => {
    const c = client({ ...sentinels, ...creds, FLEETQ_REDIS_SENTINEL_PASSWORD_FILE: secret('spw', 'sentinel-pw') }, role);
    expect(c).toBeInstanceOf(Redis);
    const o = (c as Redis).options;
    expect(o).toMatchObject({
      sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26380 }, { host: 's3', port: 26381 }],
      name: 'fleetq-main',
      role: 'master',
      failoverDetector: true,
      db: 0,
      username: 'fleetq',
      password: 'redis-pw',
      sentinelPassword: 'sentinel-pw',
      maxRetriesPerRequest: BLOCKING.includes(role) ? null : 1,
    });
    expect(o.keyPrefix ?? '').toBe(role === 'mutex' ? 'fq:' : '');
  });

  it('no sentinel password unless its own file is set (sentinels without requirepass refuse AUTH)', () => {
    expect((client({ ...sentinels, ...creds }, 'worker') as Redis).options.sentinelPassword ?? null).toBeNull();
  });

  it('a one-shot command gives up asking the sentinels and reconnecting; a worker does not', () => {
    const command = (client(sentinels, 'command') as Redis).options;
    expect(command.sentinelRetryStrategy!(4)).toBeNull();
    expect(command.retryStrategy!(4)).toBeNull();
    const worker = (client(sentinels, 'worker') as Redis).options;
    expect(worker.sentinelRetryStrategy!(1000)).toBeGreaterThan(0);
    // A service (the board) asks the sentinels again after ioredis's short default delays: long ones let a
    // +switch-master during the wait end the client for good (connect.ts).
    const service = (client(sentinels, 'service') as Redis).options;
    expect(service.sentinelRetryStrategy!(5)).toBeLessThanOrEqual(50);
    expect(service.sentinelRetryStrategy!(1000)).toBeGreaterThan(0);
  });

  it('FLEETQ_REDIS_TLS=on: TLS to the sentinels and to the master, with the CA bundle', () => {
    const o = (client({ ...sentinels, FLEETQ_REDIS_TLS: 'on', FLEETQ_REDIS_TLS_CA_FILE: caFile }, 'worker') as Redis).options;
    expect(o.enableTLSForSentinelMode).toBe(true);
    expect((o.tls as { ca: Buffer }).ca.toString()).toBe(CA);
    expect((o.sentinelTLS as { ca: Buffer }).ca.toString()).toBe(CA);
    const plain = (client(sentinels, 'worker') as Redis).options;
    expect(plain.tls).toBeUndefined();
    expect(plain.enableTLSForSentinelMode).toBeFalsy();
  });
});
