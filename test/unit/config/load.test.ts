import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { redisTarget } from '../../../src/redis/target.js';

describe('config', () => {
  it('has sane defaults', () => {
    const cfg = loadConfig({});
    expect(cfg.redisUrl).toBeUndefined(); // unset: a single Redis on loopback (Cluster and Sentinel leave it unset too)
    expect(redisTarget(cfg)).toMatchObject({ mode: 'single', url: 'redis://127.0.0.1:6379' });
    expect(cfg.prefix).toBe('fleetq');
    expect(cfg.root.endsWith('/var/cocoon')).toBe(true);
    expect(cfg.maxImageSize).toBe(20 * 1024 ** 3);
    expect(cfg.host).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    expect(Object.isFrozen(cfg)).toBe(true);
  });

  it('reads units from the environment', () => {
    const cfg = loadConfig({ FLEETQ_MAX_IMAGE_SIZE: '512M', FLEETQ_LOCK_TTL: '2m', FLEETQ_CONCURRENCY: '8', FLEETQ_HOST: 'h1' });
    expect(cfg.maxImageSize).toBe(512 * 1024 ** 2);
    expect(cfg.lockTtlMs).toBe(120_000);
    expect(cfg.concurrency).toBe(8);
    expect(cfg.host).toBe('h1');
  });

  it('flags override the environment', () => {
    expect(loadConfig({ FLEETQ_HOST: 'h1' }, { host: 'h2' }).host).toBe('h2');
  });

  it.each([
    [{ FLEETQ_CONCURRENCY: 'lots' }, 'FLEETQ_CONCURRENCY'],
    [{ FLEETQ_CONCURRENCY: '0' }, 'FLEETQ_CONCURRENCY'],
    [{ FLEETQ_HOST: 'a:b' }, 'FLEETQ_HOST'],
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL'],
    [{ FLEETQ_MAX_IMAGE_SIZE: '20X' }, 'FLEETQ_MAX_IMAGE_SIZE'],
    [{ FLEETQ_LOCK_TTL: 'soon' }, 'FLEETQ_LOCK_TTL'],
    [{ FLEETQ_LOCK_TTL: '30000' }, 'FLEETQ_LOCK_TTL'], // a duration needs a unit: 30000ms or 30s
    [{ FLEETQ_LOG_LEVEL: 'loud' }, 'FLEETQ_LOG_LEVEL'],
  ])('a bad value names its variable: %o', (env, variable) => {
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe(variable);
    expect((err as Error).message).toMatch(new RegExp(`^invalid ${variable} \\(got `));
    expect((err as Error).message.split('\n')).toHaveLength(1);
  });

  it('a bad flag names the flag', () => {
    expect(() => loadConfig({}, { concurrency: 'x' })).toThrow(/^invalid --concurrency/);
  });
});
