/** Confirmation off a terminal, the watch diff, the live-worker warning and the Redis URL's database. */
import { describe, expect, it } from 'vitest';
import { confirm } from '../../../src/cli/confirm.js';
import { noLiveWorker } from '../../../src/cli/live-host.js';
import { UsageError } from '../../../src/cli/usage-error.js';
import { changeLine, diffRows, progressCell, rowKey, type WatchRow } from '../../../src/cli/watch.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { redisDbIndex } from '../../../src/redis/target.js';
import type { HostInfo, WorkerAnnouncement } from '../../../src/registry/host-registry.js';

describe('confirm', () => {
  it('--yes goes ahead without asking', async () => {
    await expect(confirm('remove 6 jobs', { yes: true }, false)).resolves.toBeUndefined();
  });
  it('not on a terminal and no --yes: refused with exit 2 and a line naming --yes', async () => {
    const err = await confirm('remove 6 completed jobs older than 7d', {}, false).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe('--yes: required to remove 6 completed jobs older than 7d when not on a terminal (nothing was changed; --dry-run shows what would change)');
  });
});

describe('jobs watch, line mode', () => {
  const row = (r: Partial<WatchRow>): WatchRow => ({ id: '1', host: 'h1', queue: 'images', name: 'ensure-image', state: 'waiting', attemptsMade: 0, attempts: 3, ...r });
  it('prints the first listing, then only changes; jobs that left are reported', () => {
    const first = diffRows(undefined, [row({}), row({ id: '2', state: 'failed', attemptsMade: 3, reason: 'HTTP 500' })]);
    expect(first.changed.map((c) => c.row.id)).toEqual(['1', '2']);
    const prev = new Map([row({}), row({ id: '2', state: 'failed', attemptsMade: 3 })].map((r) => [rowKey(r), r]));
    const same = diffRows(prev, [row({}), row({ id: '2', state: 'failed', attemptsMade: 3 })]);
    expect(same).toEqual({ changed: [], left: [] });
    const next = diffRows(prev, [row({ state: 'active', progress: '10%' })]);
    expect(next.changed).toEqual([{ row: row({ state: 'active', progress: '10%' }), prev: 'waiting' }]);
    expect(next.left.map((r) => r.id)).toEqual(['2']);
    // Progress is reported at 25 % steps only.
    const active = new Map([row({ state: 'active', progress: '10%' })].map((r) => [rowKey(r), r]));
    expect(diffRows(active, [row({ state: 'active', progress: '20%' })]).changed).toEqual([]);
    expect(diffRows(active, [row({ state: 'active', progress: '26%' })]).changed).toHaveLength(1);
  });
  it('a change line: time, id, host/queue, name, old -> new, attempt, progress, reason', () => {
    const t = Date.UTC(2025, 0, 2, 3, 4, 5);
    expect(changeLine({ row: row({ state: 'active', progress: '50%' }), prev: 'waiting' }, t)).toBe('2025-01-02T03:04:05Z 1 h1/images ensure-image: waiting -> active (attempt 1/3, 50%)');
    expect(changeLine({ row: row({ state: 'failed', attemptsMade: 3, reason: 'HTTP 500' }), prev: 'active' }, t)).toBe('2025-01-02T03:04:05Z 1 h1/images ensure-image: active -> failed (attempts 3/3): HTTP 500');
    expect(progressCell({ phase: 'cloning', startedAt: 1 })).toBe('cloning');
    expect(progressCell({ bytes: 1, total: 3 })).toBe('33%');
  });
});

describe('no live worker for the host', () => {
  const worker = (queues: string[]): WorkerAnnouncement => ({ instance: 'i', host: 'h', version: '0', pid: 1, machine: 'm', concurrency: 1, restoreConcurrency: 1, queues, startedAt: 0, lastSeen: 0, health: 'ok' });
  const host = (h: string, state: 'up' | 'down', queues: string[] = ['images-x', 'restores-x']): HostInfo => ({ host: h, state, health: 'ok', lastSeen: 0, workers: state === 'up' ? [worker(queues)] : [] });
  it('names the host and lists the known ones', () => {
    expect(noLiveWorker([], 'h1', 'images-h1')).toBe('no live worker for host h1; the job will wait (no worker has registered with this Redis and prefix)');
    expect(noLiveWorker([host('box', 'up'), host('h1', 'down')], 'h1', 'images-h1')).toBe('no live worker for host h1; the job will wait (hosts: box up, h1 down)');
    expect(noLiveWorker([host('h1', 'up', ['images-h1', 'restores-h1'])], 'h1', 'images-h1')).toBeUndefined();
    expect(noLiveWorker([host('h1', 'up', ['images-h1'])], 'h1', 'restores-h1')).toMatch(/^host h1 is up but none of its workers consumes restores-h1/);
  });
});

describe("a Redis URL's database index", () => {
  it('is read from the path or ?db=, and anything else is refused naming REDIS_URL', () => {
    expect(redisDbIndex('redis://h:6379')).toBe(0);
    expect(redisDbIndex('redis://h:6379/')).toBe(0);
    expect(redisDbIndex('redis://h:6379/3')).toBe(3);
    expect(redisDbIndex('rediss://u:p@h:6379/15')).toBe(15);
    expect(redisDbIndex('redis://h:6379?db=2')).toBe(2);
    expect(() => redisDbIndex('redis://h:6379/abc')).toThrow(ConfigError);
    expect(() => redisDbIndex('redis://h:6379/abc')).toThrow(/^invalid REDIS_URL: the database index must be a whole number/);
    expect(() => redisDbIndex('redis://h:6379/1?db=2')).toThrow(/given twice/);
  });
});
