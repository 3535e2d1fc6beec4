/**
 * The quick start on a fresh machine, as the README tells it.
 *
 * Machines here run a Redis on 127.0.0.1:6379, which `npm start` would use; a
 * fresh machine has none. So the test runs in a private network namespace
 * (`unshare -n`: loopback only, nothing on 6379): `npm start` there, with no
 * REDIS_URL, in a temporary working directory (its own ./var), then the
 * README's local example — the first `sh` block of "Enqueue and watch", run
 * as written, in the same namespace and directory, without any export — and
 * checks that the image is `pulled`, then `present`. Then `fleetq start` is
 * stopped with SIGTERM and must remove ./var/fleetq.env and its redis-server.
 * Every process left in the namespace is killed at the end, whatever happened.
 *
 * The working directory stands for the checkout: `npm start` runs the real
 * start script (bin/ linked to this checkout's), and `npx fleetq` finds this
 * checkout's bin in node_modules/.bin (in a real checkout npx links the
 * project itself; either way bin/fleetq.js of this checkout runs).
 *
 * Also here: how CLI commands treat ./var/fleetq.env (used when REDIS_URL is
 * unset and the `fleetq start` that wrote it is alive and its Redis answers;
 * an explicit REDIS_URL wins; a stale file is ignored with a note).
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { formatLocalState } from '../../src/cli/context.js';
import { freePort } from '../../src/lib/free-port.js';
import { imageQueueName } from '../../src/queues/names.js';
import { useTestRedis } from '../helpers/redis.js';
import { BIN } from '../helpers/worker-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUDGET_S = 150;

/** The README's local example: the first ```sh block of "## Enqueue and watch". */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('\n## Enqueue and watch\n');
  if (at < 0) throw new Error('README.md has no "## Enqueue and watch" section');
  const section = readme.slice(at + 1, readme.indexOf('\n## ', at + 1));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('"Enqueue and watch" has no ```sh block');
  return block[1]!;
}

/** Environment of a fresh shell: nothing of fleetq's or Redis's set, no npm chatter. */
function freshEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL' && !k.startsWith('npm_')) env[k] = v;
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
}

/** Pids of the processes in the network namespace `ns` (as readlink /proc/PID/ns/net shows it). */
function processesIn(ns: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${e}/ns/net`) === ns) pids.push(Number(e));
    } catch {
      // gone, or not ours to look at
    }
  }
  return pids;
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
};
/** Running (a zombie waiting for its parent counts as gone). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
};

async function until(pred: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return pred();
}

function killNamespace(ns: string | undefined): void {
  if (!ns) return;
  for (const pid of processesIn(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function requireTools(): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) throw new Error('the quick-start test needs root (unshare -n)');
  for (const tool of ['unshare', 'ip', 'python3', 'qemu-img', 'sha256sum', 'redis-server', 'timeout']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} not found on PATH (unshare/timeout: util-linux, coreutils; ip: iproute2; qemu-img: qemu-utils)`);
  }
}

describe('the quick start, on a machine with no Redis (a private network namespace)', () => {
  let ns: string | undefined;
  let work: string | undefined;
  afterAll(() => {
    killNamespace(ns);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("`npm start`, then the README's local example through the CLI without any export: pulled, then present; a clean stop removes ./var/fleetq.env", async () => {
    requireTools();
    const example = readmeExample();
    // What the README asks people to paste must not need an export (the point of ./var/fleetq.env).
    expect(example).not.toMatch(/(^|[\s;&|])(export\s|REDIS_URL=|FLEETQ_\w+=)/m);
    expect(example).toMatch(/qemu-img create/);
    expect(example).toMatch(/sha256sum/);

    work = mkdtempSync(join(tmpdir(), 'fleetq-quickstart-'));
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
    writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'fleetq-quickstart', private: true, scripts: { start: pkg.scripts.start } }));
    symlinkSync(join(ROOT, 'bin'), join(work, 'bin'));
    mkdirSync(join(work, 'node_modules', '.bin'), { recursive: true });
    symlinkSync(join(ROOT, 'bin', 'fleetq.js'), join(work, 'node_modules', '.bin', 'fleetq'));
    writeFileSync(join(work, 'example.sh'), example);
    writeFileSync(
      join(work, 'run.sh'),
      [
        'set -euo pipefail',
        'ip link set lo up',
        'readlink /proc/self/ns/net > netns',
        'npm start > start.out 2> start.err &',
        'for _ in $(seq 1 300); do grep -q "saved to ./var/fleetq.env" start.err 2>/dev/null && break; sleep 0.1; done',
        'grep -q "saved to ./var/fleetq.env" start.err || { echo "npm start did not get ready:" >&2; cat start.err >&2; exit 10; }',
        'bash -euo pipefail example.sh > example.out 2> example.err',
        'echo "example finished"',
      ].join('\n'),
    );

    const proc = spawn('timeout', ['-k', '5', String(BUDGET_S), 'unshare', '-n', 'bash', 'run.sh'], { cwd: work, env: freshEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const [code] = (await once(proc, 'close')) as [number | null];
    const file = (name: string) => (existsSync(join(work!, name)) ? readFileSync(join(work!, name), 'utf8') : '');
    ns = file('netns').trim() || undefined;
    const report = `exit ${code}\nrun.sh: ${out}${err}\nstart.err:\n${file('start.err')}\nexample.out:\n${file('example.out')}\nexample.err:\n${file('example.err')}`;
    expect(code, report).toBe(0);
    expect(out).toContain('example finished');
    expect(ns).toMatch(/^net:\[\d+\]$/);

    // npm start found nothing on 6379 in the namespace, started its own Redis and said where, in one line.
    const started = file('start.err');
    expect(started).toMatch(/started redis-server at redis:\/\/127\.0\.0\.1:\d+ \(data in .*\/var\/redis\)/);
    const line = /^REDIS_URL=redis:\/\/127\.0\.0\.1:(\d+) FLEETQ_HOST=(\S+) \(saved to \.\/var\/fleetq\.env; fleetq commands in this directory use it\)$/m.exec(started);
    expect(line, started).not.toBeNull();
    expect(Number(line![1])).not.toBe(6379);
    expect(started).toContain('board at http://127.0.0.1:3000/');
    const env = file('var/fleetq.env');
    expect(env).toContain(`REDIS_URL=redis://127.0.0.1:${line![1]}\n`);
    expect(env).toContain(`FLEETQ_HOST=${line![2]}\n`);

    // The example: the host is up, the image pulled, then present, and in the store.
    const shown = file('example.out');
    expect(shown, report).toContain(line![2]!);
    const pulled = shown.search(/\bcompleted\b.*\bpulled\b/);
    const present = shown.search(/\bcompleted\b.*\bpresent\b/);
    expect(pulled, report).toBeGreaterThanOrEqual(0);
    expect(present, report).toBeGreaterThan(pulled);
    expect(shown).toMatch(/^[0-9a-f]{64}\.qcow2$/m);
    expect(file('example.err')).not.toMatch(/ignoring \.\/var\/fleetq\.env|cannot connect/);

    // A clean stop: SIGTERM to fleetq start, which removes the file and stops its redis-server.
    const inNs = processesIn(ns!);
    // The node process itself (npm runs the script through `sh -c`, whose command line says the same).
    const start = inNs.find((pid) => /^(\S*\/)?node .*bin\/fleetq\.js start/.test(cmdline(pid)));
    const redis = inNs.find((pid) => /redis-server/.test(cmdline(pid)));
    expect(start, inNs.map((p) => `${p}: ${cmdline(p)}`).join('\n')).toBeDefined();
    expect(redis).toBeDefined();
    process.kill(start!, 'SIGTERM');
    expect(await until(() => !alive(start!), 40_000)).toBe(true);
    expect(await until(() => !alive(redis!), 10_000)).toBe(true);
    expect(existsSync(join(work, 'var', 'fleetq.env'))).toBe(false);
  }, (BUDGET_S + 60) * 1000);
});

describe('CLI commands and ./var/fleetq.env', () => {
  const redis = useTestRedis();
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A working directory holding a state file as `fleetq start` writes it. */
  function dirWithState(redisUrl: string, pid: number, host = 'h-file'): string {
    const dir = mkdtempSync(join(tmpdir(), 'fleetq-state-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'var'));
    writeFileSync(join(dir, 'var', 'fleetq.env'), formatLocalState({ redisUrl, host, pid }), { mode: 0o600 });
    return dir;
  }

  async function cli(cwd: string, args: string[], env: Record<string, string> = {}) {
    const p = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...freshEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(p, 'close')) as [number | null];
    return { code, stdout, stderr };
  }

  async function waitingIn(url: string, host: string): Promise<string[]> {
    const q = new Queue(imageQueueName(host), { connection: { host: '127.0.0.1', port: Number(new URL(url).port) }, prefix: 'fleetq' });
    try {
      return (await q.getJobs(['waiting', 'prioritized', 'delayed'])).map((j) => j.id!);
    } finally {
      await q.close();
    }
  }

  it('without REDIS_URL, a command uses the Redis the file names (its fleetq start alive, its Redis answering)', async () => {
    const dir = dirWithState(redis.url, process.pid);
    const r = await cli(dir, ['enqueue', 'ensure-image', '--host', 'h-file', '--image', 'http://127.0.0.1:9/a.qcow2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/ignoring/);
    expect(await waitingIn(redis.url, 'h-file')).toContain(r.stdout.trim());
  });

  it('an explicit REDIS_URL wins over the file', async () => {
    const closed = await freePort();
    const dir = dirWithState(`redis://127.0.0.1:${closed}`, process.pid);
    const r = await cli(dir, ['enqueue', 'ensure-image', '--host', 'h-explicit', '--image', 'http://127.0.0.1:9/b.qcow2'], { REDIS_URL: redis.url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/ignoring/);
    expect(await waitingIn(redis.url, 'h-explicit')).toContain(r.stdout.trim());
  });

  it('a stale file is ignored, with a note saying why: its fleetq start is gone, or its Redis does not answer', async () => {
    const dead = spawnSync('true').pid!; // exited by now
    const closed = await freePort();
    for (const [dir, why] of [
      [dirWithState(redis.url, dead), `the fleetq start that wrote it (pid ${dead}) is not running`],
      [dirWithState(`redis://127.0.0.1:${closed}`, process.pid), `nothing answers at redis://127.0.0.1:${closed}`],
    ] as const) {
      // The command then goes on with the default Redis (whatever answers on 6379, or nothing): only the note matters here.
      const r = await cli(dir, ['hosts', '--json']);
      expect(r.stderr).toContain(`fleetq: ignoring ./var/fleetq.env: ${why}`);
    }
  });
});
