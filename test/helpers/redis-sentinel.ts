/**
 * A private Sentinel set-up per test (one primary, one replica and three
 * sentinels by default): free ports, data under its own temp dir, every
 * process killed and the dir removed at the end (also when the test process
 * exits early). The dir (node logs, sentinel configs) is kept when `keep`
 * is set (keepOnFailure: a test failed) or FLEETQ_HA_KEEP=1.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, onTestFailed } from 'vitest';
import { type LocalSentinel, type LocalSentinelOptions, startLocalSentinel } from '../../src/redis/local-sentinel.js';

export type TestSentinel = LocalSentinel & {
  dir: string;
  /** Keep the directory at cleanup. */
  keep: boolean;
  cleanup(): Promise<void>;
};

export async function startTestSentinel(opts: Omit<LocalSentinelOptions, 'dir'> = {}): Promise<TestSentinel> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetq-sentinel-'));
  let result: TestSentinel | undefined;
  const onExit = () => {
    if (!result?.keep) rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  let set: LocalSentinel;
  try {
    set = await startLocalSentinel({ dir, ...opts });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  result = Object.assign(set, {
    dir,
    keep: process.env.FLEETQ_HA_KEEP === '1',
    async cleanup() {
      await set.stop();
      process.off('exit', onExit);
      if (result!.keep) console.log(`kept ${dir} (node logs and configs)`);
      else await rm(dir, { recursive: true, force: true });
    },
  });
  return result;
}

/** Inside a test: keep this set-up's directory if the test fails. */
export function keepOnFailure(s: { keep: boolean }): void {
  onTestFailed(() => {
    s.keep = true;
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
