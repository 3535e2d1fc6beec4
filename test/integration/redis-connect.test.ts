/**
 * The connection factory against real servers on loopback: an ACL user whose
 * password comes from a file (and a wrong one, refused with the settings
 * named instead of a hang), a TLS-only redis-server reached with rediss://
 * and the CA file (refused without it), a Redis that is not there (a
 * command gives up naming REDIS_URL), and a master found through a
 * redis-sentinel, with TLS and passwords on both. (Cluster and failover
 * runs: test/integration/ha-*.)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { settingVariables } from '../../src/config/setting-hint.js';
import { childExit } from '../../src/lib/child-exit.js';
import { ConfigError } from '../../src/lib/errors.js';
import { freePort } from '../../src/lib/free-port.js';
import { connectRedis, type RedisClient, type RedisRole, waitReady } from '../../src/redis/connect.js';
import { waitFor } from '../helpers/wait.js';
import { useTestRedis } from '../helpers/redis.js';
import { HOST_WORKER } from '../helpers/worker-process.js';

const redis = useTestRedis();
const dir = mkdtempSync(join(tmpdir(), 'fleetq-redis-connect-'));
const clients: Array<RedisClient | Redis> = [];
const servers: ChildProcess[] = [];

function secretFile(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, `${text}\n`);
  chmodSync(p, 0o600);
  return p;
}

async function open(env: Record<string, string>, role: RedisRole): Promise<RedisClient> {
  const cfg = loadConfig(env);
  const c = connectRedis(cfg, role);
  clients.push(c);
  c.on('error', () => {});
  await waitReady(c, cfg);
  return c;
}

/** A redis-server (or sentinel) with these arguments, on loopback; resolves once it answers PING (plain or TLS). */
async function startServer(args: string[], ping: () => Promise<unknown>): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.push(child);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  try {
    await waitFor(`redis-server ${args.join(' ')}`, async () => (await ping(), true), { timeoutMs: 15_000 });
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${output.slice(-600)}`);
  }
  return child;
}

afterAll(async () => {
  for (const c of clients) c.disconnect();
  for (const s of servers) {
    s.kill('SIGKILL');
    await childExit(s).catch(() => {});
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('credentials from files', () => {
  let admin: Redis;
  beforeAll(async () => {
    admin = new Redis(redis.url);
    clients.push(admin);
    await admin.call('ACL', 'SETUSER', 'fleetq-app', 'on', '>right-password-123', '~fleetq:*', '&fleetq:*', '+@all', '-@dangerous', '+info');
  });

  it('an ACL user and the password from FLEETQ_REDIS_PASSWORD_FILE: connected as that user', async () => {
    const env = { REDIS_URL: redis.url, FLEETQ_REDIS_USERNAME: 'fleetq-app', FLEETQ_REDIS_PASSWORD_FILE: secretFile('right', 'right-password-123') };
    const c = await open(env, 'worker');
    expect(await c.call('ACL', 'WHOAMI')).toBe('fleetq-app');
    await c.set('fleetq:probe', '1');
    await expect(c.set('elsewhere', '1')).rejects.toThrow(/NOPERM/);
  });

  it.each(['worker', 'command'] as const)('a wrong password: the %s client stops with a ConfigError naming the settings, instead of retrying forever', async (role) => {
    const env = { REDIS_URL: redis.url, FLEETQ_REDIS_USERNAME: 'fleetq-app', FLEETQ_REDIS_PASSWORD_FILE: secretFile('wrong', 'wrong-password-456') };
    const err = await open(env, role).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/refused fleetq's credentials: WRONGPASS/);
    expect((err as Error).message).not.toContain('wrong-password-456');
    expect(settingVariables(err)).toEqual(['FLEETQ_REDIS_USERNAME', 'FLEETQ_REDIS_PASSWORD_FILE']);
  });

  it('the worker process: a wrong password is exit 2 and one line naming the settings; a password file others can read is refused before connecting', async () => {
    const root = mkdtempSync(join(dir, 'root-'));
    const base = { PATH: process.env.PATH, REDIS_URL: redis.url, FLEETQ_HOST: 'rc-1', FLEETQ_ROOT: root, FLEETQ_REDIS_USERNAME: 'fleetq-app' };
    const hostWorker = async (env: Record<string, string | undefined>) => {
      const p = spawn(process.execPath, [HOST_WORKER], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      const [code] = await childExit(p);
      return { code, err };
    };
    const wrong = await hostWorker({ ...base, FLEETQ_REDIS_PASSWORD_FILE: secretFile('wrong-w', 'wrong-password-456') });
    expect(wrong.code).toBe(2);
    expect(wrong.err.trim().split('\n')).toEqual([expect.stringMatching(/^fleetq: .*refused fleetq's credentials: WRONGPASS.*\(FLEETQ_REDIS_USERNAME \/ FLEETQ_REDIS_PASSWORD_FILE\)$/)]);
    expect(wrong.err).not.toContain('wrong-password-456');
    const open = join(dir, 'open-pw');
    writeFileSync(open, 'right-password-123\n');
    chmodSync(open, 0o644);
    const loose = await hostWorker({ ...base, FLEETQ_REDIS_PASSWORD_FILE: open });
    expect(loose.code).toBe(2);
    expect(loose.err).toMatch(/^fleetq: invalid Redis password file: .*mode 0644.*\(FLEETQ_REDIS_PASSWORD_FILE\)\n$/);
    expect(loose.err).not.toContain('right-password-123');
  });

  it('nothing listening: a command gives up after its reconnects and names REDIS_URL', async () => {
    const port = await freePort();
    const started = Date.now();
    await expect(open({ REDIS_URL: `redis://127.0.0.1:${port}` }, 'command')).rejects.toThrow(new RegExp(`^cannot connect to redis://127\\.0\\.0\\.1:${port}/0 \\(set REDIS_URL\\)$`));
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

describe('TLS', () => {
  let tlsPort = 0;
  let caFile = '';
  let otherCa = '';
  beforeAll(async () => {
    const sh = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    for (const ca of ['ca', 'other']) sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '1', '-subj', `/CN=fleetq test ${ca}`);
    sh('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    sh('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext');
    caFile = join(dir, 'ca.crt');
    otherCa = join(dir, 'other.crt');
    tlsPort = await freePort();
    const tlsArgs = ['--tls-cert-file', join(dir, 'server.crt'), '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', caFile, '--tls-auth-clients', 'no'];
    // TLS only: the plain port is off, so a client that does not speak TLS gets nowhere.
    await startServer(['--port', '0', '--tls-port', String(tlsPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...tlsArgs], async () => {
      const r = new Redis({ port: tlsPort, host: '127.0.0.1', tls: { ca: execFileSync('cat', [caFile]) }, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => {});
      try {
        await r.connect();
        await r.ping();
      } finally {
        r.disconnect();
      }
    });
  });

  it('rediss:// with FLEETQ_REDIS_TLS_CA_FILE: connected over TLS, the database selected', async () => {
    const c = await open({ REDIS_URL: `rediss://127.0.0.1:${tlsPort}/2`, FLEETQ_REDIS_TLS_CA_FILE: caFile }, 'command');
    await c.set('fleetq:tls', 'yes');
    const info = (await c.call('CLIENT', 'INFO')) as string;
    expect(info).toMatch(/ db=2 /);
    expect(await c.get('fleetq:tls')).toBe('yes');
  });

  it('a certificate from another CA is not trusted: the command gives up, naming REDIS_URL', async () => {
    await expect(open({ REDIS_URL: `rediss://127.0.0.1:${tlsPort}`, FLEETQ_REDIS_TLS_CA_FILE: otherCa }, 'command')).rejects.toThrow(/cannot connect to rediss:\/\/127\.0\.0\.1:\d+\/0 \(set REDIS_URL\)/);
  });

  it('redis:// (no TLS) against the TLS port gets nowhere either', async () => {
    await expect(open({ REDIS_URL: `redis://127.0.0.1:${tlsPort}` }, 'command')).rejects.toThrow(/cannot connect/);
  });

  describe('Sentinel with TLS and passwords', () => {
    let sentinelPort = 0;
    let masterPort = 0;
    beforeAll(async () => {
      masterPort = await freePort();
      sentinelPort = await freePort();
      const tlsArgs = ['--tls-cert-file', join(dir, 'server.crt'), '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', caFile, '--tls-auth-clients', 'no'];
      // The master: TLS only, a password for the default user.
      await startServer(['--port', '0', '--tls-port', String(masterPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', 'master-pw-123', ...tlsArgs], async () => {
        const r = new Redis({ port: masterPort, host: '127.0.0.1', password: 'master-pw-123', tls: { ca: execFileSync('cat', [caFile]) }, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        r.on('error', () => {});
        try {
          await r.connect();
          await r.ping();
        } finally {
          r.disconnect();
        }
      });
      // One sentinel (quorum 1), TLS only, its own password; it reaches the master over TLS too.
      const sdir = join(dir, 'sentinel');
      execFileSync('mkdir', ['-p', sdir]);
      const conf = join(sdir, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          'port 0',
          `tls-port ${sentinelPort}`,
          'bind 127.0.0.1',
          `dir ${sdir}`,
          `tls-cert-file ${join(dir, 'server.crt')}`,
          `tls-key-file ${join(dir, 'server.key')}`,
          `tls-ca-cert-file ${caFile}`,
          'tls-auth-clients no',
          'tls-replication yes',
          'requirepass sentinel-pw-123',
          `sentinel monitor fleetq-main 127.0.0.1 ${masterPort} 1`,
          'sentinel auth-pass fleetq-main master-pw-123',
          '',
        ].join('\n'),
      );
      await startServer([conf, '--sentinel'], async () => {
        const r = new Redis({ port: sentinelPort, host: '127.0.0.1', password: 'sentinel-pw-123', tls: { ca: execFileSync('cat', [caFile]) }, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        r.on('error', () => {});
        try {
          await r.connect();
          const addr = (await r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'fleetq-main')) as string[] | null;
          if (!addr) throw new Error('no master yet');
        } finally {
          r.disconnect();
        }
      });
    });

    it.each(['worker', 'service', 'command'] as const)('%s: asks the sentinel (TLS, its password) for the master and talks to it (TLS, its password)', async (role) => {
      const env = {
        FLEETQ_REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`,
        FLEETQ_REDIS_SENTINEL_NAME: 'fleetq-main',
        FLEETQ_REDIS_TLS: 'on',
        FLEETQ_REDIS_TLS_CA_FILE: caFile,
        FLEETQ_REDIS_PASSWORD_FILE: secretFile('master-pw', 'master-pw-123'),
        FLEETQ_REDIS_SENTINEL_PASSWORD_FILE: secretFile('sentinel-pw', 'sentinel-pw-123'),
      };
      const c = await open(env, role);
      await c.set(`fleetq:via-sentinel:${role}`, 'ok');
      // The master's only listener is its TLS port: this connection is TLS.
      expect(await c.call('CONFIG', 'GET', 'port')).toEqual(['port', '0']);
      expect(await c.call('CONFIG', 'GET', 'tls-port')).toEqual(['tls-port', String(masterPort)]);
      expect(await c.get(`fleetq:via-sentinel:${role}`)).toBe('ok');
      expect(((await c.call('ROLE')) as unknown[])[0]).toBe('master');
    });
  });
});
