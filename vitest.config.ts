import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Redis Cluster and Sentinel failovers: their own run (vitest.ha.config.ts), one file at a time; `npm test` runs both.
    exclude: [...configDefaults.exclude, 'test/ha/**'],
    // Integration tests run dist/: build it first (skipped when fresh), so a run never tests stale code.
    globalSetup: ['test/setup/build-dist.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Each file starts its own redis-server and worker processes; two cores.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
