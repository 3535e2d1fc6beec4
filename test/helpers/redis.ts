/** A private redis-server per test file: free port, own data dir, killed at the end. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startRedisServer, type RedisServer } from '../../src/redis/redis-server.js';

export async function startTestRedis(): Promise<RedisServer & { cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetq-redis-'));
  const server = await startRedisServer({ dir });
  return {
    ...server,
    async cleanup() {
      await server.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Registers beforeAll/afterAll hooks; read `.url` inside tests. */
export function useTestRedis(): { readonly url: string; readonly server: RedisServer } {
  let server: Awaited<ReturnType<typeof startTestRedis>> | undefined;
  beforeAll(async () => {
    server = await startTestRedis();
  });
  afterAll(async () => {
    await server?.cleanup();
  });
  return {
    get url() {
      return server!.url;
    },
    get server() {
      return server!;
    },
  };
}
