/**
 * A private Redis Cluster per test file (3 masters + 3 replicas by default):
 * free ports, data under its own temp dir, every node killed and the dir
 * removed at the end (also when the test process exits early). The dir
 * (node logs, nodes.conf) is kept when `keep` is set (a test failed, with
 * keepOnFailure from redis-sentinel.ts) or FLEETQ_HA_KEEP=1.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type LocalCluster, type LocalClusterOptions, startLocalCluster } from '../../src/redis/local-cluster.js';

export type TestCluster = LocalCluster & {
  dir: string;
  /** Keep the directory at cleanup. */
  keep: boolean;
  cleanup(): Promise<void>;
};

export async function startTestCluster(opts: Omit<LocalClusterOptions, 'dir'> = {}): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetq-cluster-'));
  let result: TestCluster | undefined;
  // The processes are killed by the harness's own exit hook; the data goes with them.
  const onExit = () => {
    if (!result?.keep) rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  let cluster: LocalCluster;
  try {
    cluster = await startLocalCluster({ dir, ...opts });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  result = Object.assign(cluster, {
    dir,
    keep: process.env.FLEETQ_HA_KEEP === '1',
    async cleanup() {
      await cluster.stop();
      process.off('exit', onExit);
      if (result!.keep) console.log(`kept ${dir} (node logs and configs)`);
      else await rm(dir, { recursive: true, force: true });
    },
  });
  return result;
}

/** Registers beforeAll/afterAll hooks; read `.cluster` inside tests. */
export function useTestCluster(opts: Omit<LocalClusterOptions, 'dir'> = {}): { readonly cluster: TestCluster } {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    cluster = await startTestCluster(opts);
  }, 120_000);
  afterAll(async () => {
    await cluster?.cleanup();
  });
  return {
    get cluster() {
      return cluster!;
    },
  };
}
