/**
 * docker-compose.yml cannot be run here (no Docker engine), so check what can
 * be checked: the file parses (anchors merged as compose merges them), every
 * variable it sets is one the config schema knows and accepts, Redis has no
 * host port, one image is built once and reused, the healthchecks are valid
 * JavaScript that really tells a healthy endpoint from a sick or absent one,
 * the board is authenticated and published on loopback only, and the
 * "host" worker mounts the host's cocoon and root the way a real host runs it.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../../src/config/load.js';
import { defaultHostId, KNOWN_ENV_VARS } from '../../../src/config/schema.js';
import { freePort } from '../../../src/lib/free-port.js';
import { WORKER_NODE_FLAGS } from '../../../src/worker/node-flags.js';

const run = promisify(execFile);

interface Service {
  image?: string;
  build?: string | { context: string };
  pull_policy?: string;
  profiles?: string[];
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  secrets?: string[];
  network_mode?: string;
  depends_on?: Record<string, unknown>;
  healthcheck?: { test: string[] };
}

const root = new URL('../../../', import.meta.url);
const text = readFileSync(new URL('docker-compose.yml', root), 'utf8');
const compose = parse(text, { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
  secrets?: Record<string, { file?: string }>;
};
const services = Object.entries(compose.services);
const byDefault = services.filter(([, s]) => !s.profiles?.length);
/** The per-host worker entry point (workers/host.worker.ts), as the image's CMD runs it. */
const WORKER_CMD = ['node', ...WORKER_NODE_FLAGS, 'dist/workers/host.worker.js'];
const isWorker = (s: Service) => s.command?.join(' ') === WORKER_CMD.join(' ');
const isBoard = (s: Service) => s.command?.[0] === 'fleetq' && s.command[1] === 'board';
/** Services that run fleetq: the worker entry point, or `fleetq board`. */
const fleetq = services.filter(([, s]) => isWorker(s) || isBoard(s));
const workers = fleetq.filter(([, s]) => isWorker(s));
const demoWorkers = workers.filter(([, s]) => !s.profiles?.length);
const board = fleetq.find(([, s]) => isBoard(s));
const hostWorker = workers.find(([, s]) => s.profiles?.includes('host'));

/** Compose's interpolation, for the forms this file uses: ${VAR}, ${VAR:-default}, ${VAR-default}; $$ is a literal $. */
function interpolate(value: string, env: Record<string, string> = {}): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g, (m, name: string | undefined, op: string | undefined, def: string | undefined) => {
    if (m === '$$') return '$';
    const v = env[name!];
    if (op === ':-') return v ? v : (def ?? '');
    if (op === '-') return v !== undefined ? v : (def ?? '');
    return v ?? '';
  });
}
const envOf = (s: Service, env: Record<string, string> = {}) => Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), env)]));

/** The port a published "127.0.0.1:H:C" maps from, and the address it binds. */
const published = (p: string) => {
  const m = /^(?:(\d+\.\d+\.\d+\.\d+|\[[^\]]+\]):)?(\d+):(\d+)(?:\/\w+)?$/.exec(String(p));
  if (!m) throw new Error(`unexpected port syntax ${p}`);
  return { bind: m[1], host: Number(m[2]), container: Number(m[3]) };
};

describe('docker-compose.yml: Redis', () => {
  it('runs redis with AOF on and noeviction, and a healthcheck the workers wait for', () => {
    const redis = compose.services.redis!;
    const cmd = redis.command!.join(' ');
    expect(cmd).toMatch(/--appendonly yes/);
    expect(cmd).toMatch(/--maxmemory-policy noeviction/);
    expect(redis.healthcheck?.test).toContain('redis-cli');
    for (const [name, s] of demoWorkers) expect(s.depends_on, name).toHaveProperty('redis.condition', 'service_healthy');
  });

  it('publishes no host port for Redis by default; what is published binds loopback only', () => {
    expect(compose.services.redis!.ports).toBeUndefined();
    for (const [name, s] of byDefault) {
      if (name !== board?.[0]) expect(s.ports, `${name} publishes a port`).toBeUndefined();
    }
    for (const [name, s] of services) {
      for (const p of s.ports ?? []) expect(published(p).bind, `${name}: ${p}`).toBe('127.0.0.1');
    }
  });

  it("the opt-in Redis on 127.0.0.1:6379 that `fleetq start`'s message names exists, behind a profile", () => {
    const src = readFileSync(new URL('src/cli/commands/worker.ts', root), 'utf8');
    const named = /docker compose up -d ([\w-]+)/.exec(src)?.[1];
    expect(named).toBeDefined();
    const s = compose.services[named!]!;
    expect(s.profiles?.length).toBeGreaterThan(0);
    expect(s.ports?.map(published)).toEqual([{ bind: '127.0.0.1', host: 6379, container: 6379 }]);
    expect(s.command!.join(' ')).toMatch(/--maxmemory-policy noeviction/);
  });
});

describe('docker-compose.yml: one image, built once', () => {
  it('exactly one service builds, tags the image, and every other fleetq service runs that image without building or pulling it', () => {
    const builders = services.filter(([, s]) => s.build !== undefined);
    expect(builders.map(([n]) => n)).toHaveLength(1);
    const [, builder] = builders[0]!;
    expect(builder.build === '.' || (typeof builder.build === 'object' && builder.build.context === '.')).toBe(true);
    expect(builder.image).toMatch(/^[a-z0-9][a-z0-9._/-]*:[\w.-]+$/);
    expect(fleetq.length).toBeGreaterThanOrEqual(4);
    for (const [name, s] of fleetq) {
      expect(s.image, name).toBe(builder.image);
      if (s !== builder) {
        expect(s.build, name).toBeUndefined();
        expect(s.pull_policy, `${name} would try to pull ${s.image} from a registry`).toBe('never');
      }
    }
    expect(existsSync(new URL('Dockerfile', root))).toBe(true);
  });

  it('has two demo worker services with distinct hosts and store volumes', () => {
    expect(demoWorkers).toHaveLength(2);
    const hosts = demoWorkers.map(([, s]) => s.environment!.FLEETQ_HOST);
    expect(new Set(hosts).size).toBe(2);
    const vols = demoWorkers.map(([, s]) => s.volumes![0]!.split(':')[0]);
    expect(new Set(vols).size).toBe(2);
    for (const v of vols) expect(compose.volumes).toHaveProperty(v!);
  });

  it('sets only environment variables the config schema knows, with values it accepts', () => {
    for (const [name, service] of fleetq) {
      for (const key of Object.keys(service.environment ?? {})) {
        expect(KNOWN_ENV_VARS.has(key), `${name} sets unknown ${key}`).toBe(true);
      }
      expect(() => loadConfig(envOf(service)), name).not.toThrow();
    }
    for (const [, service] of demoWorkers) {
      const cfg = loadConfig(envOf(service));
      expect(cfg.host).toBe(service.environment!.FLEETQ_HOST);
      expect(cfg.redisUrl).toBe('redis://redis:6379');
      expect(cfg.root).toBe('/var/lib/cocoon');
      expect(cfg.metricsPort).toBe(9464);
    }
  });
});

describe('docker-compose.yml: healthchecks', () => {
  /** Two loopback endpoints: /healthz answers 200 on one, 503 on the other. */
  const servers: Server[] = [];
  const ports = { ok: 0, sick: 0 };
  beforeAll(async () => {
    for (const [which, status] of [['ok', 200], ['sick', 503]] as const) {
      const server = createServer((req, res) => {
        res.writeHead(req.url === '/healthz' ? status : 404).end();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      servers.push(server);
      ports[which] = (server.address() as AddressInfo).port;
    }
  });
  afterAll(() => Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r())))));

  /** The JavaScript of a `["CMD", "node", "-e", js]` healthcheck, and the port it asks. */
  function healthJs(name: string, s: Service): { js: string; port: number } {
    const test = s.healthcheck?.test;
    expect(test, `${name} has no healthcheck`).toBeDefined();
    expect(test!.slice(0, 3), name).toEqual(['CMD', 'node', '-e']);
    const js = test![3]!;
    expect(js, `${name}: compose would interpolate a "$"`).not.toContain('$');
    const m = /^fetch\('http:\/\/127\.0\.0\.1:(\d+)\/healthz'\)/.exec(js);
    expect(m, `${name}: ${js}`).not.toBeNull();
    return { js, port: Number(m![1]) };
  }

  it("every worker's healthcheck asks /healthz on its FLEETQ_METRICS_PORT; the board's on its --port", () => {
    for (const [name, s] of workers) expect(healthJs(name, s).port, name).toBe(Number(envOf(s).FLEETQ_METRICS_PORT));
    const [name, s] = board!;
    expect(healthJs(name, s).port).toBe(Number(s.command![s.command!.indexOf('--port') + 1]));
  });

  it('the healthcheck command is valid JavaScript that exits 0 on 200, 1 on 503 and 1 when nothing listens', async () => {
    const closed = await freePort();
    const exit = (code: string) =>
      run(process.execPath, ['-e', code], { timeout: 10_000 }).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
    const checks = [...workers, board!].map(async ([name, s]) => {
      const { js, port: asked } = healthJs(name, s);
      const at = (p: number) => js.replace(`127.0.0.1:${asked}/`, `127.0.0.1:${p}/`);
      const [ok, sick, none] = await Promise.all([exit(at(ports.ok)), exit(at(ports.sick)), exit(at(closed))]);
      return { name, ok, sick, none };
    });
    for (const r of await Promise.all(checks)) expect(r, r.name).toEqual({ name: r.name, ok: 0, sick: 1, none: 1 });
  });
});

describe('docker-compose.yml: the board', () => {
  it('runs `fleetq board` with credentials from a secret, listening inside the container and published on 127.0.0.1 only', () => {
    expect(board).toBeDefined();
    const [, s] = board!;
    expect(s.command).not.toContain('--no-auth');
    expect(s.command![s.command!.indexOf('--bind') + 1]).toBe('0.0.0.0');
    const port = Number(s.command![s.command!.indexOf('--port') + 1]);
    expect(s.ports?.map(published)).toEqual([{ bind: '127.0.0.1', host: 3000, container: port }]);
    const env = envOf(s);
    expect(env.FLEETQ_BOARD_USER).toBe('admin');
    expect(env.FLEETQ_BOARD_PASSWORD).toBeUndefined(); // never a password in the compose file
    const secret = /^\/run\/secrets\/([\w-]+)$/.exec(env.FLEETQ_BOARD_PASSWORD_FILE ?? '')?.[1];
    expect(secret).toBeDefined();
    expect(s.secrets).toContain(secret);
    // The secret's file lives under ./var, which git ignores.
    expect(compose.secrets?.[secret!]?.file).toMatch(/^\.\/var\//);
    expect(readFileSync(new URL('.gitignore', root), 'utf8').split('\n')).toContain('var/');
    expect(envOf(s, { FLEETQ_BOARD_USER: 'oncall' }).FLEETQ_BOARD_USER).toBe('oncall');
  });
});

describe('docker-compose.yml: a worker with the host\'s cocoon', () => {
  it('bind-mounts the host\'s cocoon binary (read-only) and root, and points FLEETQ_COCOON_BIN and FLEETQ_ROOT at them', () => {
    expect(hostWorker).toBeDefined();
    const [, s] = hostWorker!;
    const cfg = loadConfig(envOf(s));
    const mounts = s.volumes!.map((v) => v.split(':'));
    expect(mounts).toContainEqual(['/usr/local/bin/cocoon', cfg.cocoonBin, 'ro']);
    expect(mounts).toContainEqual(['/var/lib/cocoon', cfg.root]);
    expect(cfg.root).toBe('/var/lib/cocoon');
    expect(cfg.cocoonBin).toBe('/usr/local/bin/cocoon');
    // The host's id and the fleet's Redis come from the environment; unset, the hostname and a local Redis.
    expect(cfg.host).toBe(defaultHostId());
    expect(cfg.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(loadConfig(envOf(s, { FLEETQ_HOST: 'kvm-7', REDIS_URL: 'redis://fleet-redis:6379' }))).toMatchObject({ host: 'kvm-7', redisUrl: 'redis://fleet-redis:6379' });
    // cocoon runs VMs: the host's network (TAP devices, CNI) and no dependency on this file's Redis.
    expect(s.network_mode).toBe('host');
    expect(s.depends_on ?? {}).toEqual({});
  });
});

describe('the image', () => {
  it('every way of starting a worker uses the worker Node flags', () => {
    const flags = WORKER_NODE_FLAGS.join(' ');
    expect(readFileSync(new URL('Dockerfile', root), 'utf8')).toContain(`CMD [${WORKER_CMD.map((f) => JSON.stringify(f)).join(', ')}]`);
    expect(readFileSync(new URL('bin/fleetq.js', root), 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
    expect(pkg.scripts.start).toBe(`node ${flags} bin/fleetq.js start`);
    expect(pkg.scripts.worker).toBe(`node ${flags} dist/workers/host.worker.js`);
  });

  it('the Dockerfile installs what the worker shells out to, and copies only what exists', () => {
    const df = readFileSync(new URL('Dockerfile', root), 'utf8');
    expect(df).toMatch(/qemu-utils/);
    expect(df).toMatch(/util-linux/);
    expect(df).toMatch(/FROM node:20/);
    for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) expect(existsSync(new URL(src, root)), `COPY ${src}`).toBe(true);
    }
  });

  it('.dockerignore keeps host builds, dependencies and local state out of the build context', () => {
    const ignored = readFileSync(new URL('.dockerignore', root), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', 'var', '.git']) expect(ignored).toContain(p);
    // …but not what the image is built from.
    const df = readFileSync(new URL('Dockerfile', root), 'utf8');
    for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) expect(ignored, src).not.toContain(src.replace(/\/$/, ''));
    }
  });
});
