/**
 * docker-compose.yml cannot be run here (no Docker engine), so check what can
 * be checked: the file parses (anchors merged as compose merges them), every
 * variable it sets is one the config schema knows and accepts, Redis has no
 * host port, one image is built once and reused, the healthchecks are valid
 * JavaScript that really tells a healthy endpoint from a sick or absent one,
 * the board is authenticated and published on loopback only, and the
 * "host" worker mounts the host's cocoon and root the way a real host runs it.
 * The Dockerfile is parsed (test/helpers/dockerfile.ts), not grepped: its
 * command runs a file the image really holds (followed back through the
 * stages to the repository or to tsc's outputs), in exec form, with the
 * worker's Node flags.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../../src/config/load.js';
import { defaultHostId, KNOWN_ENV_VARS } from '../../../src/config/schema.js';
import { redisTarget } from '../../../src/redis/target.js';
import { freePort } from '../../../src/lib/free-port.js';
import { WORKER_NODE_FLAGS } from '../../../src/worker/node-flags.js';
import { copiedFrom, parseDockerfile } from '../../helpers/dockerfile.js';

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

describe('docker-compose.yml: the "sentinel" profile (README, "Scaling Redis")', () => {
  const inProfile = services.filter(([, s]) => s.profiles?.includes('sentinel'));
  const sentinels = inProfile.filter(([, s]) => (s.command ?? []).join(' ').includes('--sentinel'));
  const script = (s: Service) => s.command!.join('\n');

  it('a replica of `redis` and three sentinels that monitor it with quorum 2, under the name the fleetq services use', () => {
    const replica = inProfile.find(([, s]) => s.command?.includes('--replicaof'));
    expect(replica).toBeDefined();
    const cmd = replica![1].command!.join(' ');
    expect(cmd).toMatch(/--replicaof redis 6379/);
    expect(cmd).toMatch(/--maxmemory-policy noeviction/); // every node, or a failover brings eviction back
    expect(cmd).toMatch(/--appendonly yes/);
    expect(sentinels.map(([n]) => n).sort()).toEqual(['sentinel-1', 'sentinel-2', 'sentinel-3']);
    for (const [n, s] of sentinels) {
      expect(script(s), n).toMatch(/^sentinel monitor fleetq redis 6379 2$/m);
      expect(script(s), n).toMatch(/^sentinel resolve-hostnames yes$/m);
      expect(script(s), n).toMatch(/^port 26379$/m);
    }
    // Both data nodes announce the names the sentinels (and so fleetq) reach them by.
    expect(compose.services.redis!.command!.join(' ')).toMatch(/--replica-announce-ip redis\b/);
    expect(cmd).toMatch(/--replica-announce-ip redis-replica\b/);
  });

  it('its fleetq services find the primary through all three sentinels (no REDIS_URL), as the schema reads them', () => {
    const users = fleetq.filter(([, s]) => s.profiles?.includes('sentinel'));
    expect(users.map(([n]) => n).sort()).toEqual(['board-sentinel', 'worker-s1']);
    for (const [n, s] of users) {
      const env = envOf(s);
      expect(env.REDIS_URL, n).toBeUndefined();
      expect(redisTarget(loadConfig(env)), n).toEqual({ mode: 'sentinel', sentinels: sentinels.map(([name]) => ({ host: name, port: 26379 })), name: 'fleetq', tls: false });
    }
    for (const dep of ['sentinel-1', 'sentinel-2', 'sentinel-3']) expect(compose.services['worker-s1']!.depends_on, dep).toHaveProperty(`${dep}.condition`, 'service_healthy');
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
      run(process.execPath, ['-e', code], { timeout: 20_000 }).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
    // One service at a time (three node processes): a dozen at once on a busy two-core machine outran the deadline.
    for (const [name, s] of [...workers, board!]) {
      const { js, port: asked } = healthJs(name, s);
      const at = (p: number) => js.replace(`127.0.0.1:${asked}/`, `127.0.0.1:${p}/`);
      const [ok, sick, none] = await Promise.all([exit(at(ports.ok)), exit(at(ports.sick)), exit(at(closed))]);
      expect({ ok, sick, none }, name).toEqual({ ok: 0, sick: 1, none: 1 });
    }
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

describe('the image (the Dockerfile, parsed)', () => {
  const stages = parseDockerfile(readFileSync(new URL('Dockerfile', root), 'utf8'));
  const final = stages.at(-1)!;
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
    bin: Record<string, string>;
    engines: { node: string };
    scripts: Record<string, string>;
  };
  const stageNamed = (ref: string) => stages.find((st) => st.name === ref) ?? stages[Number(ref)];
  /** What `docker run <image>` executes: ENTRYPOINT then CMD, both exec form. */
  const argv = [...(final.entrypoint?.exec ?? []), ...(final.cmd?.exec ?? [])];
  /** The script node runs: the first argument after node's own flags. */
  const scriptIndex = argv.findIndex((a, i) => i > 0 && !a.startsWith('-'));
  const script = argv[scriptIndex];
  const rel = (abs: string, dir: string) => posix.relative(dir, abs);

  /** Every file `tsc -p tsconfig.build.json` writes, relative to the repository (dist/…/x.js). */
  function buildOutputs(): Set<string> {
    const dir = fileURLToPath(root);
    const file = ts.findConfigFile(dir, ts.sys.fileExists, 'tsconfig.build.json')!;
    const parsed = ts.parseJsonConfigFileContent(ts.readConfigFile(file, ts.sys.readFile).config, ts.sys, dir);
    const { outDir, rootDir } = parsed.options;
    return new Set(parsed.fileNames.map((f) => posix.relative(dir, posix.join(outDir!, posix.relative(rootDir!, f))).replace(/\.ts$/, '.js')));
  }

  /**
   * Where a file of the final image comes from, followed back through the
   * stages: a path in the build context (which must exist), or a build output
   * (which the build must produce).
   */
  function provenance(absInFinal: string): { context: string } | { built: string } {
    const hop = copiedFrom(final, absInFinal);
    if (!hop) throw new Error(`${absInFinal}: no COPY in the final stage puts it there`);
    if (hop.copy.from === undefined) return { context: hop.source };
    const from = stageNamed(hop.copy.from);
    if (!from) throw new Error(`line ${hop.copy.line}: COPY --from=${hop.copy.from}: no such stage`);
    const inBuild = copiedFrom(from, hop.source);
    if (inBuild && inBuild.copy.from === undefined) return { context: inBuild.source };
    return { built: rel(hop.source, from.workdir) };
  }

  it('ENTRYPOINT and CMD are in exec (JSON) form, so SIGTERM reaches node and not a shell', () => {
    expect(final.entrypoint ?? final.cmd, 'the image names no command').toBeDefined();
    for (const ins of [final.entrypoint, final.cmd]) if (ins) expect(ins.exec, `line ${ins.line}: ${ins.keyword} ${ins.args}`).toBeDefined();
    const stop = final.instructions.filter((i) => i.keyword === 'STOPSIGNAL').at(-1);
    expect(stop?.args ?? 'SIGTERM').toBe('SIGTERM');
  });

  it('every way of starting a worker uses the worker Node flags', () => {
    const flags = WORKER_NODE_FLAGS.join(' ');
    expect(argv[0]).toBe('node');
    expect(argv.slice(1, scriptIndex)).toEqual([...WORKER_NODE_FLAGS]);
    const node = ['node', ...WORKER_NODE_FLAGS].join(' ');
    expect(readFileSync(new URL('bin/fleetq.js', root), 'utf8').split('\n')[0]).toBe(flags ? `#!/usr/bin/env -S ${node}` : '#!/usr/bin/env node');
    expect(pkg.scripts.start).toBe(`${node} bin/fleetq.js start`);
    expect(pkg.scripts.worker).toBe(`${node} dist/workers/host.worker.js`);
  });

  it('the default command runs a file that is in the image: copied from the repository, or produced by the build', () => {
    expect(script, `no script in ${JSON.stringify(argv)}`).toBeDefined();
    const from = provenance(posix.resolve(final.workdir, script!));
    if ('context' in from) {
      expect(existsSync(new URL(from.context, root)), from.context).toBe(true);
    } else {
      expect([...buildOutputs()], `${from.built} is not written by tsc -p tsconfig.build.json`).toContain(from.built);
    }
  });

  it('when the default command is the CLI, what follows it is one of its commands', async () => {
    const cli = Object.values(pkg.bin)[0]!;
    if (script !== cli) return; // a dedicated entry point (workers/…): nothing to dispatch
    const verb = argv[scriptIndex + 1];
    expect(verb, 'the CLI with no command only prints its help').toBeDefined();
    const { stdout } = await run(process.execPath, [fileURLToPath(new URL(cli, root)), verb!, '--help']);
    expect(stdout).toMatch(new RegExp(`^Usage: fleetq ${verb} `, 'm'));
  });

  it('the build stage produces what the final stage takes from it: it has the sources and runs the build', () => {
    const outputs = buildOutputs();
    for (const copy of final.copies.filter((c) => c.from !== undefined)) {
      const from = stageNamed(copy.from!)!;
      for (const src of copy.sources) {
        const inBuild = copiedFrom(from, src);
        if (inBuild) {
          if (inBuild.copy.from === undefined) expect(existsSync(new URL(inBuild.source, root)), inBuild.source).toBe(true);
          continue;
        }
        const made = rel(src, from.workdir);
        const runs = from.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
        if (made === 'node_modules') {
          expect(runs.some((r) => /\bnpm ci\b/.test(r)), `${made}: no npm ci in stage ${copy.from}`).toBe(true);
        } else {
          // dist/: `npm ci` runs the prepare script, which builds with tsconfig.build.json.
          expect([...outputs].some((o) => o === made || o.startsWith(`${made}/`)), `${made} is not a build output`).toBe(true);
          expect(pkg.scripts.prepare).toMatch(/\bnpm run build\b/);
          expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
          expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
          // …so the build stage must hold tsc's inputs: the config files and every included source.
          for (const f of ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json']) {
            expect(copiedFrom(from, posix.join(from.workdir, f)), `${f} in stage ${copy.from}`).toBeDefined();
          }
          for (const o of outputs) {
            const source = o.replace(/^dist\//, '').replace(/\.js$/, '.ts');
            expect(copiedFrom(from, posix.join(from.workdir, source)), `${source} (for ${o}) in stage ${copy.from}`).toBeDefined();
          }
        }
      }
    }
  });

  it('what the CLI needs at run time is in the final image: package.json (type: module), node_modules, the bin and the compiled code it imports', () => {
    const dir = final.workdir;
    expect(provenance(posix.join(dir, 'package.json'))).toEqual({ context: 'package.json' });
    expect(provenance(posix.join(dir, 'node_modules'))).toEqual({ built: 'node_modules' });
    for (const bin of Object.values(pkg.bin)) {
      expect(provenance(posix.join(dir, bin))).toEqual({ context: bin });
      // The bin loads the compiled CLI by a URL relative to itself.
      const target = /new URL\('([^']+)', import\.meta\.url\)/.exec(readFileSync(new URL(bin, root), 'utf8'))?.[1];
      expect(target, `${bin} imports nothing compiled`).toBeDefined();
      const compiled = posix.join(posix.dirname(bin), target!);
      expect(provenance(posix.join(dir, compiled))).toEqual({ built: compiled });
      expect([...buildOutputs()]).toContain(compiled);
    }
  });

  it('runs as root unless told otherwise, as cocoon does (its images.lock is 0600; README, "Docker")', () => {
    expect(final.user ?? 'root').toMatch(/^(root|0)(:0)?$/);
    expect(readFileSync(new URL('README.md', root), 'utf8')).toMatch(/run it as the user cocoon runs as\s+\(root by default/);
  });

  it('is built FROM the Node major that package.json requires, and installs what the worker shells out to', () => {
    const major = /(\d+)/.exec(pkg.engines.node)![1];
    for (const st of stages) expect(st.base, `FROM ${st.base}`).toMatch(new RegExp(`^node:${major}(\\D|$)`));
    const installed = final.instructions
      .filter((i) => i.keyword === 'RUN')
      .flatMap((i) => [...i.args.matchAll(/apt-get install((?:\s+[^&;|]+?)+?)\s*(?:&&|;|\||$)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)))
      .filter((w) => !w.startsWith('-'));
    // qemu-img (convert) and flock (cocoon's images.lock); TLS roots for https upstreams.
    expect(installed).toEqual(expect.arrayContaining(['qemu-utils', 'util-linux', 'ca-certificates']));
  });

  it('copies from the build context only what exists and what .dockerignore lets through', () => {
    const ignored = readFileSync(new URL('.dockerignore', root), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', 'var', '.git']) expect(ignored).toContain(p);
    const fromContext = stages.flatMap((st) => st.copies.filter((c) => c.from === undefined).flatMap((c) => c.sources));
    expect(fromContext.length).toBeGreaterThan(0);
    for (const src of fromContext) {
      expect(existsSync(new URL(src, root)), `COPY ${src}`).toBe(true);
      expect(ignored, src).not.toContain(src.replace(/\/$/, ''));
    }
  });
});
