/** FLEETQ_PEER_*: the peer server's settings, each problem a ConfigError naming its variable; the token never echoed. */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { settingVariables } from '../../../src/config/setting-hint.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { loadPeerToken } from '../../../src/peer/peer-token.js';
import { advertisedUrl } from '../../../src/peer/start-peer.js';

const TOKEN = 'a-fleet-token-of-some-length';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('peer configuration', () => {
  it('off by default, with a 100 MiB/s rate', () => {
    const cfg = loadConfig({});
    expect(cfg.peerListen).toBeUndefined();
    expect(cfg.peerMaxRate).toBe(100 * 1024 ** 2);
  });

  it('parses listen and advertise addresses (host:port, [v6]:port) and the rate with units', () => {
    const cfg = loadConfig({ FLEETQ_PEER_LISTEN: '0.0.0.0:7480', FLEETQ_PEER_ADVERTISE: '[fd00::1]:7481', FLEETQ_PEER_TOKEN: TOKEN, FLEETQ_PEER_MAX_RATE: '40M' });
    expect(cfg.peerListen).toEqual({ host: '0.0.0.0', port: 7480 });
    expect(cfg.peerAdvertise).toEqual({ host: 'fd00::1', port: 7481 });
    expect(cfg.peerMaxRate).toBe(40 * 1024 ** 2);
  });

  it.each([
    [{ FLEETQ_PEER_LISTEN: '7480', FLEETQ_PEER_TOKEN: TOKEN }, 'FLEETQ_PEER_LISTEN'],
    [{ FLEETQ_PEER_LISTEN: 'h:99999', FLEETQ_PEER_TOKEN: TOKEN }, 'FLEETQ_PEER_LISTEN'],
    [{ FLEETQ_PEER_LISTEN: 'h:1', FLEETQ_PEER_ADVERTISE: 'http://h:1', FLEETQ_PEER_TOKEN: TOKEN }, 'FLEETQ_PEER_ADVERTISE'],
    [{ FLEETQ_PEER_LISTEN: '127.0.0.1:7480' }, 'FLEETQ_PEER_TOKEN'],
    [{ FLEETQ_PEER_TOKEN: TOKEN, FLEETQ_PEER_TOKEN_FILE: '/x' }, 'FLEETQ_PEER_TOKEN'],
    [{ FLEETQ_PEER_MAX_RATE: 'fast' }, 'FLEETQ_PEER_MAX_RATE'],
    [{ FLEETQ_PEER_MAX_RATE: '10' }, 'FLEETQ_PEER_MAX_RATE'],
    [{ FLEETQ_PEER_TLS_CERT: '/c.pem' }, 'FLEETQ_PEER_TLS_KEY'],
    [{ FLEETQ_PEER_TLS_KEY: '/k.pem' }, 'FLEETQ_PEER_TLS_CERT'],
  ])('a bad setting names its variable: %o', (env, variable) => {
    const err = configError(() => loadConfig(env));
    expect(err.variable).toBe(variable);
    expect(err.message).toContain(variable);
  });

  it('a listen address without a token says which variable is missing', () => {
    expect(configError(() => loadConfig({ FLEETQ_PEER_LISTEN: '127.0.0.1:7480' })).message).toMatch(/FLEETQ_PEER_TOKEN.*required when FLEETQ_PEER_LISTEN is set/);
  });

  it('a too short token is refused without echoing it', () => {
    const err = configError(() => loadConfig({ FLEETQ_PEER_TOKEN: 'short-secret' }));
    expect(err.variable).toBe('FLEETQ_PEER_TOKEN');
    expect(err.message).not.toContain('short-secret');
  });

  it('the token file must be 0600 and hold a token; its first line is the token', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetq-peer-token-'));
    try {
      const file = join(dir, 'token');
      writeFileSync(file, `${TOKEN}\n`);
      chmodSync(file, 0o644);
      const open = configError(() => loadPeerToken(undefined, file));
      expect(settingVariables(open)).toEqual(['FLEETQ_PEER_TOKEN_FILE']);
      expect(open.message).toMatch(/group or others.*0644/);
      expect(open.message).not.toContain(TOKEN);
      chmodSync(file, 0o600);
      expect(loadPeerToken(undefined, file)).toBe(TOKEN);
      writeFileSync(file, 'short\n');
      expect(configError(() => loadPeerToken(undefined, file)).message).toMatch(/at least 16 characters/);
      expect(configError(() => loadPeerToken(undefined, join(dir, 'missing'))).message).toMatch(/no such file/);
      expect(loadPeerToken(TOKEN, undefined)).toBe(TOKEN);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the advertised address defaults to the listen host with the bound port; https with TLS', () => {
    expect(advertisedUrl(undefined, { host: '127.0.0.1', port: 0 }, 41234, false)).toBe('http://127.0.0.1:41234');
    expect(advertisedUrl({ host: 'peer1.example.net', port: 7480 }, { host: '0.0.0.0', port: 7480 }, 7480, true)).toBe('https://peer1.example.net:7480');
    expect(advertisedUrl(undefined, { host: '::1', port: 7480 }, 7480, false)).toBe('http://[::1]:7480');
  });
});
