/**
 * fleetq benchmarks: `npm run bench` (full) or `npm run bench -- --quick`.
 *
 * Starts its own redis-server and loopback HTTP server (a child process that
 * serves files from disk with a 64 KiB buffer and reports its CPU), runs the
 * scenarios of docs/BENCHMARKS.md (warm-up, then the median of 3 runs with
 * min and max), prints a table and writes bench/results.json.
 *
 * Options:
 *   --quick          smaller sizes; finishes in under 2 minutes on 2 cores
 *   --only a,b       run only these scenarios (ids: cache-hit, cold-pull, herd, lock-wait, fan-out, fleet, fleet-peers, cluster)
 *   --runs N         measured runs per figure (default 3, at least 1)
 *   --markdown       also print the table as Markdown
 *   --keep           keep the temp directory (worker logs) for inspection
 *
 * Exit status: 0 when every scenario produced figures (missed goals are
 * reported in the table, not as failures); 1 when a scenario crashed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { startRedisServer, type RedisServer } from '../src/redis/redis-server.js';
import type { BenchContext } from './lib/context.js';
import { type BenchHttpServer, startHttpServer } from './lib/http.js';
import { type BenchImage, makeQcow2 } from './lib/images.js';
import { RESULTS_FILE } from './lib/paths.js';
import { killAll } from './lib/procs.js';
import { connect } from './lib/queue.js';
import { errorRow, markdownTable, type Row, textTable } from './lib/report.js';
import { cacheHit } from './scenarios/cache-hit.js';
import { clusterScaleOut } from './scenarios/cluster.js';
import { coldPull } from './scenarios/cold-pull.js';
import { fanOut } from './scenarios/fan-out.js';
import { fleet } from './scenarios/fleet.js';
import { fleetPeers } from './scenarios/fleet-peers.js';
import { herd } from './scenarios/herd.js';
import { lockWait } from './scenarios/lock-wait.js';

const SCENARIOS: Array<{ id: string; title: string; run: (ctx: BenchContext) => Promise<Row[]> }> = [
  { id: 'cache-hit', title: 'cache-hit throughput', run: cacheHit },
  { id: 'cold-pull', title: 'cold pull', run: coldPull },
  { id: 'herd', title: 'thundering herd', run: herd },
  { id: 'lock-wait', title: 'lock wait growth', run: lockWait },
  { id: 'fan-out', title: 'restore fan-out', run: fanOut },
  { id: 'fleet', title: 'fleet', run: fleet },
  { id: 'fleet-peers', title: 'fleet with peers', run: fleetPeers },
  { id: 'cluster', title: 'cluster scale-out', run: clusterScaleOut },
];

interface Args {
  quick: boolean;
  only: string[] | undefined;
  runs: number;
  markdown: boolean;
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: undefined, runs: 3, markdown: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--quick') a.quick = true;
    else if (x === '--markdown') a.markdown = true;
    else if (x === '--keep') a.keep = true;
    else if (x === '--only') a.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (x.startsWith('--only=')) a.only = x.slice(7).split(',').filter(Boolean);
    else if (x === '--runs' || x.startsWith('--runs=')) {
      const v = Number(x.includes('=') ? x.slice(7) : argv[++i]);
      if (!Number.isInteger(v) || v < 1) usage(`--runs wants a whole number ≥ 1`);
      a.runs = v;
    } else if (x === '--help' || x === '-h') {
      process.stdout.write('usage: npm run bench -- [--quick] [--only cache-hit,cold-pull,herd,lock-wait,fan-out,fleet,fleet-peers,cluster] [--runs N] [--markdown] [--keep]\n');
      process.exit(0);
    } else usage(`unknown option ${x}`);
  }
  const unknown = a.only?.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown?.length) usage(`unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.id).join(', ')})`);
  return a;
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

function version(cmd: string, args: string[], re: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return re.exec(out)?.[1] ?? out.trim().split('\n')[0]!;
  } catch {
    return 'unknown';
  }
}

export function machine() {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    freeMemoryGiB: Math.round(freemem() / 2 ** 30),
    node: process.version,
    redis: version('redis-server', ['--version'], /v=(\S+)/),
    qemuImg: version('qemu-img', ['--version'], /version (\S+)/),
    curl: version('curl', ['--version'], /^curl (\S+)/),
    kernel: version('uname', ['-r'], /(.+)/),
    /** 1-minute load average when the bench started: other work on the machine makes figures noisy. */
    loadAverage: Math.round(loadavg()[0]! * 100) / 100,
  };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  // Full: fleet-peers alone is ~4 min (its peers-off wave is 8 pulls through one 50 MB/s link, ~43 s per run).
  const budgetMs = args.quick ? 4 * 60_000 : 25 * 60_000;
  const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);
  const tmp = mkdtempSync(join(tmpdir(), 'fleetq-bench-'));
  let redis: RedisServer | undefined;
  let http: BenchHttpServer | undefined;
  let admin: ReturnType<typeof connect> | undefined;

  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    admin?.disconnect();
    await http?.stop().catch(() => {});
    await redis?.kill().catch(() => {});
    killAll();
    if (args.keep) log(`kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  };
  // Hard backstop: never outlive the budget, never leave children or temp files behind.
  const backstop = setTimeout(() => {
    log(`over the ${budgetMs / 60_000} min budget: stopping everything`);
    killAll();
    if (!args.keep) rmSync(tmp, { recursive: true, force: true });
    process.exit(1);
  }, budgetMs);
  backstop.unref();
  const crash = (what: string) => (err: unknown) => {
    log(`${what}: ${(err as Error)?.stack ?? err}`);
    void cleanup().finally(() => process.exit(1));
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled rejection'));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  const rows: Row[] = [];
  try {
    const m = machine();
    log(`mode ${args.quick ? 'quick' : 'full'}, ${args.runs} measured runs after a warm-up; ${m.cores} cores, Node ${m.node}, Redis ${m.redis}, qemu-img ${m.qemuImg}; temp ${tmp}`);
    if (m.loadAverage > m.cores * 0.5) log(`warning: load average ${m.loadAverage} on ${m.cores} cores before starting: something else is running, figures will be noisy`);
    redis = await startRedisServer({ dir: join(tmp, 'redis') });
    admin = connect(redis.url);
    const serveDir = join(tmp, 'serve');
    mkdirSync(serveDir, { recursive: true });
    http = await startHttpServer(serveDir);
    const images = new Map<string, Promise<BenchImage>>();
    const ctx: BenchContext = {
      quick: args.quick,
      runs: args.runs,
      tmp,
      redisUrl: redis.url,
      redisPid: redis.process.pid!,
      redis: admin,
      prefix: 'fqbench',
      http,
      serveDir,
      image(key, bytes) {
        let p = images.get(key);
        if (!p) {
          log(`making image ${key} (${Math.round(bytes / 2 ** 20)} MiB qcow2)`);
          p = makeQcow2(serveDir, `${key}.qcow2`, bytes);
          images.set(key, p);
        }
        return p;
      },
      log,
    };
    const selected = SCENARIOS.filter((s) => !args.only || args.only.includes(s.id));
    for (const s of selected) {
      const t0 = Date.now();
      log(`── ${s.title}`);
      try {
        rows.push(...(await s.run(ctx)));
      } catch (err) {
        log(`${s.title} crashed: ${(err as Error).stack ?? err}`);
        rows.push(errorRow(s.title, err));
      }
      log(`── ${s.title} took ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    }
    const took = (Date.now() - started) / 1000;
    const at = new Date().toISOString();
    process.stdout.write(
      `\nfleetq benchmarks — ${args.quick ? 'quick' : 'full'} run, ${at}, ${took.toFixed(0)} s\n` +
        `machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB RAM, Node ${m.node}, Redis ${m.redis}, qemu-img ${m.qemuImg}, curl ${m.curl}, Linux ${m.kernel}; load average ${m.loadAverage} at start, ${Math.round(loadavg()[0]! * 100) / 100} at end\n` +
        `figures: median of ${args.runs} runs after a warm-up run, [min–max]; ratio = fleetq median / baseline median\n\n`,
    );
    process.stdout.write(`${textTable(rows)}\n\n`);
    const notes = rows.filter((r) => r.details?.note).map((r) => `  - ${r.name}: ${String(r.details!.note)}`);
    if (notes.length) process.stdout.write(`notes:\n${notes.join('\n')}\n\n`);
    if (args.markdown) process.stdout.write(`${markdownTable(rows)}\n\n`);
    const missed = rows.filter((r) => r.pass === false && !r.error);
    if (missed.length) process.stdout.write(`goals missed: ${missed.map((r) => r.name).join('; ')}\n`);
    const out = rows.map((r) => ({ ...r, mode: args.quick ? 'quick' : 'full', at, machine: m }));
    writeFileSync(RESULTS_FILE, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`wrote ${RESULTS_FILE}\n`);
    return rows.some((r) => r.error) ? 1 : 0;
  } finally {
    await cleanup();
    clearTimeout(backstop);
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench crashed: ${(err as Error).stack ?? err}\n`);
    killAll();
    process.exit(1);
  },
);
