/**
 * The Redis settings (issue 14): REDIS_URL (single), FLEETQ_REDIS_CLUSTER_NODES
 * (Cluster), FLEETQ_REDIS_SENTINELS + FLEETQ_REDIS_SENTINEL_NAME (Sentinel),
 * credentials from files, TLS. Every problem is a ConfigError naming its
 * variable; a password is never echoed.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { settingVariables } from '../../../src/config/setting-hint.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { loadRedisSecrets } from '../../../src/redis/credentials.js';
import { describeRedisTarget, redisEndpoints, redisTarget } from '../../../src/redis/target.js';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const dir = mkdtempSync(join(tmpdir(), 'fleetq-redis-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

describe('Redis mode', () => {
  it('default: a single Redis at 127.0.0.1:6379, database 0, no TLS', () => {
    const cfg = loadConfig({});
    expect(cfg.redisUrl).toBeUndefined();
    expect(redisTarget(cfg)).toEqual({ mode: 'single', url: 'redis://127.0.0.1:6379', host: '127.0.0.1', port: 6379, db: 0, tls: false });
  });

  it('REDIS_URL: host, port, database, rediss:// = TLS', () => {
    expect(redisTarget(loadConfig({ REDIS_URL: 'rediss://cache.internal:6380/3' }))).toMatchObject({ mode: 'single', host: 'cache.internal', port: 6380, db: 3, tls: true });
    expect(redisTarget(loadConfig({ REDIS_URL: 'redis://[::1]:7000?db=2' }))).toMatchObject({ host: '::1', port: 7000, db: 2, tls: false });
  });

  it('FLEETQ_REDIS_CLUSTER_NODES: Cluster seed nodes, duplicates dropped, IPv6 in brackets', () => {
    const cfg = loadConfig({ FLEETQ_REDIS_CLUSTER_NODES: ' r1:7000, r2:7001 ,r1:7000,[fd00::3]:7002' });
    expect(redisTarget(cfg)).toEqual({ mode: 'cluster', nodes: [{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }, { host: 'fd00::3', port: 7002 }], tls: false });
    expect(describeRedisTarget(redisTarget(cfg))).toBe('Redis Cluster via r1:7000,r2:7001,[fd00::3]:7002');
    expect(redisTarget(loadConfig({ FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000', FLEETQ_REDIS_TLS: 'on' }))).toMatchObject({ mode: 'cluster', tls: true });
  });

  it('FLEETQ_REDIS_SENTINELS + FLEETQ_REDIS_SENTINEL_NAME: Sentinel', () => {
    const cfg = loadConfig({ FLEETQ_REDIS_SENTINELS: 's1:26379,s2:26379,s3:26379', FLEETQ_REDIS_SENTINEL_NAME: 'fleetq-main' });
    expect(redisTarget(cfg)).toEqual({ mode: 'sentinel', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }, { host: 's3', port: 26379 }], name: 'fleetq-main', tls: false });
    expect(describeRedisTarget(redisTarget(cfg))).toBe('master "fleetq-main" via Sentinel s1:26379,s2:26379,s3:26379');
  });

  it('the endpoints the image destination policy refuses: the URL, or every seed node / sentinel', () => {
    expect(redisEndpoints(redisTarget(loadConfig({ REDIS_URL: 'redis://10.0.0.5:6379' })))).toEqual([{ host: '10.0.0.5', port: 6379 }]);
    expect(redisEndpoints(redisTarget(loadConfig({ FLEETQ_REDIS_CLUSTER_NODES: 'a:1,b:2' })))).toEqual([{ host: 'a', port: 1 }, { host: 'b', port: 2 }]);
  });
});

describe('bad Redis settings name their variable', () => {
  it.each([
    [{ FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000', FLEETQ_REDIS_SENTINELS: 's1:26379', FLEETQ_REDIS_SENTINEL_NAME: 'm' }, 'FLEETQ_REDIS_CLUSTER_NODES', /select different modes: set one/],
    [{ FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000', REDIS_URL: 'redis://r1:7000' }, 'REDIS_URL', /single Redis: unset it when FLEETQ_REDIS_CLUSTER_NODES is set/],
    [{ FLEETQ_REDIS_SENTINELS: 's1:26379', FLEETQ_REDIS_SENTINEL_NAME: 'm', REDIS_URL: 'redis://x' }, 'REDIS_URL', /unset it when FLEETQ_REDIS_SENTINELS is set/],
    [{ FLEETQ_REDIS_SENTINELS: 's1:26379' }, 'FLEETQ_REDIS_SENTINEL_NAME', /required when FLEETQ_REDIS_SENTINELS is set/],
    [{ FLEETQ_REDIS_SENTINEL_NAME: 'm' }, 'FLEETQ_REDIS_SENTINEL_NAME', /needs FLEETQ_REDIS_SENTINELS/],
    [{ FLEETQ_REDIS_SENTINEL_PASSWORD_FILE: '/x' }, 'FLEETQ_REDIS_SENTINEL_PASSWORD_FILE', /needs FLEETQ_REDIS_SENTINELS/],
    [{ FLEETQ_REDIS_SENTINELS: 's1:26379', FLEETQ_REDIS_SENTINEL_NAME: 'my master' }, 'FLEETQ_REDIS_SENTINEL_NAME', /letters, digits/],
    [{ FLEETQ_REDIS_CLUSTER_NODES: 'r1' }, 'FLEETQ_REDIS_CLUSTER_NODES', /comma-separated list of host:port.*not host:port: "r1"/],
    [{ FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000,r2:0' }, 'FLEETQ_REDIS_CLUSTER_NODES', /not host:port: "r2:0"/],
    [{ FLEETQ_REDIS_CLUSTER_NODES: 'redis://r1:7000' }, 'FLEETQ_REDIS_CLUSTER_NODES', /host:port/],
    [{ FLEETQ_REDIS_CLUSTER_NODES: ' , ' }, 'FLEETQ_REDIS_CLUSTER_NODES', /host:port/],
    [{ FLEETQ_REDIS_SENTINELS: 's1:99999', FLEETQ_REDIS_SENTINEL_NAME: 'm' }, 'FLEETQ_REDIS_SENTINELS', /host:port/],
    [{ FLEETQ_REDIS_TLS: 'maybe', FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000' }, 'FLEETQ_REDIS_TLS', /on or off/],
    [{ FLEETQ_REDIS_TLS: 'on' }, 'FLEETQ_REDIS_TLS', /REDIS_URL is redis:\/\/ \(no TLS\)/],
    [{ FLEETQ_REDIS_TLS: 'off', REDIS_URL: 'rediss://h:6380' }, 'FLEETQ_REDIS_TLS', /REDIS_URL is rediss:\/\//],
    [{ FLEETQ_REDIS_TLS_CA_FILE: '/ca.pem' }, 'FLEETQ_REDIS_TLS_CA_FILE', /needs TLS: use a rediss:\/\/ REDIS_URL/],
    [{ FLEETQ_REDIS_TLS_CA_FILE: '/ca.pem', FLEETQ_REDIS_CLUSTER_NODES: 'r1:7000' }, 'FLEETQ_REDIS_TLS_CA_FILE', /set FLEETQ_REDIS_TLS=on/],
    [{ FLEETQ_REDIS_USERNAME: 'two words' }, 'FLEETQ_REDIS_USERNAME', /without blanks/],
    [{ REDIS_URL: 'redis://h:6379?password=x' }, 'REDIS_URL', /no query parameter but \?db=N/],
    [{ FLEETQ_PREFIX: 'a{b' }, 'FLEETQ_PREFIX', /whole \{hash-tag\}/],
    [{ FLEETQ_PREFIX: 'fq{}' }, 'FLEETQ_PREFIX', /whole \{hash-tag\}/],
    [{ FLEETQ_PREFIX: '{a}{b}' }, 'FLEETQ_PREFIX', /at most one/],
  ])('%o', (env, variable, why) => {
    const err = configError(() => loadConfig(env));
    expect(err.variable).toBe(variable);
    expect(err.message).toMatch(new RegExp(`^invalid ${variable}\\b`));
    expect(err.message).toMatch(why);
    expect(err.message.split('\n')).toHaveLength(1);
  });

  it('a prefix may carry one whole tag (every key in one slot)', () => {
    expect(loadConfig({ FLEETQ_PREFIX: '{fleetq}' }).prefix).toBe('{fleetq}');
    expect(loadConfig({ FLEETQ_PREFIX: 'fq-{blue}' }).prefix).toBe('fq-{blue}');
  });

  it('a password in REDIS_URL is refused, and not echoed', () => {
    for (const url of ['redis://:hunter2-secret@h:6379', 'rediss://fleetq:hunter2-secret@h:6380/1', 'redis://hunter2-secret@h']) {
      const err = configError(() => loadConfig({ REDIS_URL: url }));
      expect(err.variable).toBe('REDIS_URL');
      expect(err.message).toMatch(/must not hold credentials.*FLEETQ_REDIS_PASSWORD_FILE/);
      expect(err.message).not.toContain('hunter2-secret');
    }
  });
});

describe('credentials and CA from files', () => {
  const sentinels = { FLEETQ_REDIS_SENTINELS: 's1:26379', FLEETQ_REDIS_SENTINEL_NAME: 'm' };

  it('the password is the first line of a 0600 file; the user and sentinel password beside it', () => {
    const cfg = loadConfig({
      ...sentinels,
      FLEETQ_REDIS_USERNAME: 'fleetq',
      FLEETQ_REDIS_PASSWORD_FILE: file('pw', ' s3cret:with:colons \nignored\n'),
      FLEETQ_REDIS_SENTINEL_PASSWORD_FILE: file('spw', 'sentinel-pw\n'),
    });
    expect(loadRedisSecrets(cfg)).toEqual({ username: 'fleetq', password: 's3cret:with:colons', sentinelPassword: 'sentinel-pw', ca: undefined });
  });

  it.each([
    ['readable by others', () => file('pw-644', 'hunter2-secret\n', 0o644), /readable or writable by group or others \(mode 0644\).*chmod 600/],
    ['readable by the group', () => file('pw-640', 'hunter2-secret\n', 0o640), /mode 0640/],
    ['missing', () => join(dir, 'nope'), /no such file/],
    ['empty', () => file('pw-empty', '\n'), /must hold the Redis password on its first line/],
    ['a directory', () => dir, /not a regular file/],
  ])('a password file %s is a ConfigError naming FLEETQ_REDIS_PASSWORD_FILE, without the password', (_what, make, why) => {
    const err = configError(() => loadRedisSecrets(loadConfig({ FLEETQ_REDIS_PASSWORD_FILE: make() })));
    expect(settingVariables(err)).toEqual(['FLEETQ_REDIS_PASSWORD_FILE']);
    expect(err.message).toMatch(why);
    expect(err.message).not.toContain('hunter2-secret');
  });

  it('the CA file must hold PEM certificates (any mode: it is public)', () => {
    const ca = file('ca.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', 0o644);
    expect(loadRedisSecrets(loadConfig({ REDIS_URL: 'rediss://h:6380', FLEETQ_REDIS_TLS_CA_FILE: ca })).ca?.toString()).toContain('BEGIN CERTIFICATE');
    const err = configError(() => loadRedisSecrets(loadConfig({ REDIS_URL: 'rediss://h:6380', FLEETQ_REDIS_TLS_CA_FILE: file('notca.pem', 'hello') })));
    expect(settingVariables(err)).toEqual(['FLEETQ_REDIS_TLS_CA_FILE']);
    expect(err.message).toMatch(/no PEM certificate/);
  });
});
