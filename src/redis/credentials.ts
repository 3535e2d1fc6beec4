/**
 * What fleetq presents to Redis besides the address: the ACL user
 * (FLEETQ_REDIS_USERNAME), the password (first line of
 * FLEETQ_REDIS_PASSWORD_FILE, mode 0600), the sentinels' own password
 * (FLEETQ_REDIS_SENTINEL_PASSWORD_FILE) and the CA bundle for TLS
 * (FLEETQ_REDIS_TLS_CA_FILE). Read once per Config (every client of a process
 * uses the same), never logged. A password is never taken from a URL: the
 * schema refuses credentials in REDIS_URL.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../lib/errors.js';
import { readSecretFile } from '../lib/secret-file.js';
import type { RedisConfig } from './target.js';

export interface RedisSecrets {
  username?: string | undefined;
  password?: string | undefined;
  sentinelPassword?: string | undefined;
  /** PEM CA bundle (TLS). */
  ca?: Buffer | undefined;
}

const cache = new WeakMap<object, RedisSecrets>();

export function loadRedisSecrets(cfg: RedisConfig): RedisSecrets {
  const cached = cache.get(cfg);
  if (cached) return cached;
  const secrets: RedisSecrets = {
    username: cfg.redisUsername,
    password: cfg.redisPasswordFile ? readSecretFile(cfg.redisPasswordFile, { what: 'Redis password', setting: 'redisPasswordFile' }) : undefined,
    sentinelPassword: cfg.redisSentinelPasswordFile ? readSecretFile(cfg.redisSentinelPasswordFile, { what: 'Sentinel password', setting: 'redisSentinelPasswordFile' }) : undefined,
    ca: cfg.redisTlsCaFile ? readCa(cfg.redisTlsCaFile) : undefined,
  };
  cache.set(cfg, secrets);
  return secrets;
}

/** A CA bundle is public: any mode, but it must be PEM certificates. */
function readCa(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new ConfigError(`invalid Redis CA file: ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, undefined, { settings: ['redisTlsCaFile'] });
  }
  if (!pem.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) {
    throw new ConfigError(`invalid Redis CA file: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, undefined, { settings: ['redisTlsCaFile'] });
  }
  return pem;
}
