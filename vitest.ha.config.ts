import { defineConfig } from 'vitest/config';

/**
 * The high-availability suite (`npm run test:ha`, part of `npm test`): real
 * Redis Cluster (3 masters + 3 replicas) and Sentinel set-ups on loopback,
 * failovers by kill -9 and by command. One file at a time: each starts six
 * to eight Redis processes and several worker processes on two cores.
 */
export default defineConfig({
  test: {
    include: ['test/ha/**/*.test.ts'],
    globalSetup: ['test/setup/build-dist.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
    reporters: ['default'],
  },
});
