/**
 * A Sentinel client that ioredis 5.11 ends for good (its connector's connect()
 * rejected while reconnecting: Redis#connect then sets "end" without asking
 * retryStrategy — what a +switch-master during the asking of the sentinels
 * does after a failover) connects again by itself (RevivingSentinelRedis,
 * made by connectRedis for every Sentinel role but 'command'). The sentinel
 * is reached through a loopback relay so that it can be made unreachable and
 * reachable again; the connection is dropped by the server (CLIENT KILL).
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { connectRedis } from '../../src/redis/connect.js';
import { RevivingSentinelRedis } from '../../src/redis/sentinel-client.js';
import { useTestSentinel } from '../helpers/redis-sentinel.js';
import { waitFor } from '../helpers/wait.js';

const set = useTestSentinel();
const relays: Array<{ server: Server; sockets: Set<Socket> }> = [];

/** Listen on `port` (0: any) and pass every connection on to 127.0.0.1:`to`. */
function relay(to: number, port = 0): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((a) => {
    const b = tcpConnect(to, '127.0.0.1');
    for (const s of [a, b]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    a.pipe(b).pipe(a);
  });
  relays.push({ server, sockets });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      }),
    );
  });
}

afterAll(() => {
  for (const r of relays) {
    for (const s of r.sockets) s.destroy();
    r.server.close();
  }
});

describe('RevivingSentinelRedis', () => {
  it('connects again after ioredis ended it without being closed; a deliberate disconnect stays closed', async () => {
    const s = set.sentinel;
    const first = await relay(s.sentinels[0]!.port);
    // Give up asking the sentinels at once (and only ask the relayed one): the connector's connect() then
    // rejects, as it does in the failover race.
    const client = new RevivingSentinelRedis({ sentinels: [{ host: '127.0.0.1', port: first.port }], name: s.name, role: 'master', maxRetriesPerRequest: null, sentinelRetryStrategy: () => null, updateSentinels: false });
    const errors: string[] = [];
    client.on('error', (err: Error) => errors.push(err.message));
    let ended = 0;
    client.on('end', () => ended++);
    try {
      await waitFor('the client to be ready', () => client.status === 'ready', { timeoutMs: 20_000 });
      await client.set('revive:k', 'v1');

      // Sentinel unreachable, then the server drops the client's connection: ioredis reconnects, fails to ask, ends.
      await first.close();
      const admin = s.admin((await s.primary()).port) as Redis;
      const id = await client.client('ID');
      await admin.client('KILL', 'ID', String(id));
      admin.disconnect();
      await waitFor('ioredis to end the client', () => ended > 0, { timeoutMs: 20_000 });

      // Sentinel reachable again on the same port: the client comes back by itself and serves commands.
      await relay(s.sentinels[0]!.port, first.port);
      await waitFor('the client to be revived and ready', () => client.status === 'ready', { timeoutMs: 20_000 });
      expect(client.revivals).toBeGreaterThan(0);
      expect(errors.some((m) => /ended without being closed/.test(m))).toBe(true);
      expect(await client.get('revive:k')).toBe('v1');

      // disconnect() is on purpose: no revival.
      const revivals = client.revivals;
      client.disconnect();
      await waitFor('the client to end', () => client.status === 'end', { timeoutMs: 5_000 });
      await new Promise((r) => setTimeout(r, 1_000)); // longer than the first revival delay (100 ms): nothing may happen
      expect(client.status).toBe('end');
      expect(client.revivals).toBe(revivals);
    } finally {
      client.disconnect();
    }
  });

  it("connectRedis makes Sentinel clients revivable (and their duplicates, as BullMQ makes them); not a one-shot command's", () => {
    const cfg = { redisSentinels: set.sentinel.sentinels.map((p) => ({ host: '127.0.0.1', port: p.port })), redisSentinelName: set.sentinel.name, prefix: 'fleetq' } as any;
    const worker = connectRedis(cfg, 'worker', { lazyConnect: true });
    const command = connectRedis(cfg, 'command', { lazyConnect: true });
    try {
      expect(worker).toBeInstanceOf(RevivingSentinelRedis);
      expect((worker as Redis).duplicate()).toBeInstanceOf(RevivingSentinelRedis);
      expect(command).not.toBeInstanceOf(RevivingSentinelRedis);
    } finally {
      worker.disconnect();
      command.disconnect();
    }
  });
});
