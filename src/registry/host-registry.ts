/**
 * The host registry: every worker process announces itself (host id, version,
 * pid, concurrency, started-at) and refreshes a heartbeat. A host whose newest
 * heartbeat is older than the down window is reported `down`.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { registryKeys } from './keys.js';

export const WorkerAnnouncement = z.object({
  instance: z.string(),
  host: z.string(),
  version: z.string(),
  pid: z.number(),
  machine: z.string(),
  concurrency: z.number(),
  restoreConcurrency: z.number(),
  queues: z.array(z.string()),
  startedAt: z.number(),
  lastSeen: z.number(),
  /** The store as this worker last found it: `disk-full` (pulls paused) or `store-unwritable` (read-only, permissions). */
  health: z.enum(['ok', 'disk-full', 'store-unwritable']).default('ok'),
  healthDetail: z.string().optional(),
});
export type WorkerAnnouncement = z.infer<typeof WorkerAnnouncement>;

export interface HostInfo {
  host: string;
  state: 'up' | 'down';
  /** The worst store health among the live workers. */
  health: WorkerAnnouncement['health'];
  lastSeen: number;
  workers: WorkerAnnouncement[];
}

export function newInstanceId(): string {
  return `${process.pid}-${randomBytes(4).toString('hex')}`;
}

export type Announcement = Omit<WorkerAnnouncement, 'lastSeen' | 'machine' | 'health'> & Partial<Pick<WorkerAnnouncement, 'health'>>;

export async function announce(redis: Redis, prefix: string, a: Announcement, now = Date.now()): Promise<void> {
  const k = registryKeys(prefix);
  const full: WorkerAnnouncement = { ...a, health: a.health ?? 'ok', machine: hostname(), lastSeen: now };
  await redis.multi().hset(k.host(a.host), a.instance, JSON.stringify(full)).zadd(k.hosts, 'GT', now, a.host).exec();
}

/** On graceful stop: drop this instance (the host stays listed; with no live instance it shows as down). */
export async function withdraw(redis: Redis, prefix: string, host: string, instance: string): Promise<void> {
  await redis.hdel(registryKeys(prefix).host(host), instance);
}

export async function listHosts(redis: Redis, prefix: string, downAfterMs: number, now = Date.now()): Promise<HostInfo[]> {
  const k = registryKeys(prefix);
  const raw = await redis.zrange(k.hosts, 0, -1, 'WITHSCORES');
  const hosts: HostInfo[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const host = raw[i]!;
    const entries = await redis.hgetall(k.host(host));
    const workers = Object.values(entries)
      .map((v) => WorkerAnnouncement.safeParse(JSON.parse(v)))
      .filter((r) => r.success)
      .map((r) => r.data!)
      .filter((w) => now - w.lastSeen <= downAfterMs);
    const lastSeen = Number(raw[i + 1]);
    const health = workers.some((w) => w.health === 'store-unwritable') ? 'store-unwritable' : workers.some((w) => w.health === 'disk-full') ? 'disk-full' : 'ok';
    hosts.push({ host, lastSeen, state: workers.length > 0 && now - lastSeen <= downAfterMs ? 'up' : 'down', health, workers });
  }
  return hosts.sort((a, b) => a.host.localeCompare(b.host));
}
