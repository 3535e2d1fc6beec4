/** docker-compose.yml cannot be run here (no Docker engine), so check what can be checked. */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../../src/config/load.js';
import { KNOWN_ENV_VARS } from '../../../src/config/schema.js';
import { WORKER_NODE_FLAGS } from '../../../src/worker/node-flags.js';

const root = new URL('../../../', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8')) as {
  services: Record<string, { build?: string; command?: string[]; environment?: Record<string, string>; volumes?: string[]; depends_on?: unknown }>;
  volumes: Record<string, unknown>;
};
const workers = Object.entries(compose.services).filter(([, s]) => s.build);

describe('docker-compose.yml', () => {
  it('runs redis with AOF on and noeviction', () => {
    const cmd = compose.services.redis!.command!.join(' ');
    expect(cmd).toMatch(/--appendonly yes/);
    expect(cmd).toMatch(/--maxmemory-policy noeviction/);
  });

  it('has two worker services built from the repo Dockerfile, with distinct hosts and volumes', () => {
    expect(workers).toHaveLength(2);
    expect(existsSync(new URL('Dockerfile', root))).toBe(true);
    const hosts = workers.map(([, s]) => s.environment!.FLEETQ_HOST);
    expect(new Set(hosts).size).toBe(2);
    const vols = workers.map(([, s]) => s.volumes![0]!.split(':')[0]);
    expect(new Set(vols).size).toBe(2);
    for (const v of vols) expect(compose.volumes).toHaveProperty(v!);
  });

  it('sets only environment variables the config schema knows, with values it accepts', () => {
    for (const [name, service] of workers) {
      for (const key of Object.keys(service.environment ?? {})) {
        expect(KNOWN_ENV_VARS.has(key), `${name} sets unknown ${key}`).toBe(true);
      }
      const cfg = loadConfig(service.environment);
      expect(cfg.host).toBe(service.environment!.FLEETQ_HOST);
      expect(cfg.redisUrl).toBe('redis://redis:6379');
      expect(cfg.root).toBe('/var/lib/cocoon');
    }
  });

  it('every way of starting a worker uses the worker Node flags', () => {
    const flags = WORKER_NODE_FLAGS.join(' ');
    expect(readFileSync(new URL('Dockerfile', root), 'utf8')).toContain(`ENTRYPOINT ["node", ${WORKER_NODE_FLAGS.map((f) => JSON.stringify(f)).join(', ')}, "bin/fleetq.js"]`);
    expect(readFileSync(new URL('bin/fleetq.js', root), 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
    expect(pkg.scripts.start).toBe(`node ${flags} bin/fleetq.js start`);
    expect(pkg.scripts.worker).toBe(`node ${flags} bin/fleetq.js worker`);
  });

  it('the Dockerfile installs what the worker shells out to', () => {
    const df = readFileSync(new URL('Dockerfile', root), 'utf8');
    expect(df).toMatch(/qemu-utils/);
    expect(df).toMatch(/util-linux/);
    expect(df).toMatch(/FROM node:20/);
  });
});
