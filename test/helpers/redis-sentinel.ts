/**
 * A private Sentinel set-up per test (one primary, one replica and three
 * sentinels by default): free ports, data under its own temp dir, every
 * process killed and the dir removed at the end (also when the test process
 * exits early).
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type LocalSentinel, type LocalSentinelOptions, startLocalSentinel } from '../../src/redis/local-sentinel.js';

export type TestSentinel = LocalSentinel & { dir: string; cleanup(): Promise<void> };

export async function startTestSentinel(opts: Omit<LocalSentinelOptions, 'dir'> = {}): Promise<TestSentinel> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetq-sentinel-'));
  const onExit = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', onExit);
  let set: LocalSentinel;
  try {
    set = await startLocalSentinel({ dir, ...opts });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return Object.assign(set, {
    dir,
    async cleanup() {
      await set.stop();
      process.off('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    },
  });
}

/** Registers beforeAll/afterAll hooks; read `.sentinel` inside tests. */
export function useTestSentinel(opts: Omit<LocalSentinelOptions, 'dir'> = {}): { readonly sentinel: TestSentinel } {
  let set: TestSentinel | undefined;
  beforeAll(async () => {
    set = await startTestSentinel(opts);
  }, 120_000);
  afterAll(async () => {
    await set?.cleanup();
  });
  return {
    get sentinel() {
      return set!;
    },
  };
}
