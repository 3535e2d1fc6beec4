/**
 * The CLI's habits, against a real redis-server and real worker processes:
 * exit codes, durations with units, --dry-run and confirmation (a real
 * terminal through util-linux `script`), quiet EPIPE, --json as the only JSON,
 * error lines, the Redis URL's database, the live-worker warning,
 * `enqueue --wait` progress (lines off a terminal, a bar on one) and
 * `jobs watch`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { cocoonWorkerEnv, plantSnapshot, setHostCores } from '../helpers/cocoon.js';
import { digestOf, qcow2Image, type TestImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { BIN, runCli, startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const redis = useTestRedis();
const HOST = 'cli-a';
/** Short retries, so a retried pull is quick; the CLI reads attempts and backoff from the same variables. */
const RETRY = { FLEETQ_ATTEMPTS: '3', FLEETQ_BACKOFF: '1s' };
const TIMING = { FLEETQ_HEARTBEAT: '200ms', FLEETQ_HOST_DOWN_AFTER: '3s' };
let upstream: Upstream;
let worker: WorkerProcess;
let root: string;
let images: QueueClient;
let size = 700;
const freshImage = () => qcow2Image(size++);

const env = (extra: Record<string, string> = {}) => ({ REDIS_URL: redis.url, ...TIMING, ...RETRY, ...extra });
const cli = (...args: string[]) => runCli(args, env());

/** A qcow2 image of about `mib` MiB on disk (preallocated), for downloads that take a while. */
function bigImage(mib: number): TestImage {
  const dir = mkdtempSync(join(tmpdir(), 'fleetq-cli-img-'));
  try {
    const file = join(dir, 'big.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1,preallocation=full', file, `${mib}M`]);
    const body = readFileSync(file);
    return { body, digest: digestOf(body), hex: digestOf(body).slice(7) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The CLI as a child process whose output is read as it comes (`runCli` only gives it at the end). */
function spawnCli(args: string[], extra: Record<string, string> = {}) {
  const proc = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(env(extra)), stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const exited = once(proc, 'close').then(([code]) => code as number | null);
  return { proc, out, exited };
}

/** Run a shell command line under a pseudo-terminal (util-linux `script`), feeding `input` to it. */
async function onTerminal(command: string, input = '', extra: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const proc = spawn('script', ['-qec', `stty cols 160 rows 40; ${command}`, '/dev/null'], { env: cleanEnv(env(extra)), stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  // Give the prompt time to appear before answering (the terminal would otherwise eat the line early).
  if (input) setTimeout(() => proc.stdin!.end(input), 1500);
  const [code] = (await once(proc, 'close')) as [number | null];
  return { code, output };
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL') e[k] = v;
  return { ...e, ...extra };
}

const fleetq = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}`;

async function until<T>(fn: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function completedCount(): Promise<number> {
  return images.queue.getCompletedCount();
}

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  setHostCores(root, 16);
  worker = await startWorkerProcess({ REDIS_URL: redis.url, FLEETQ_HOST: HOST, FLEETQ_ROOT: root, ...cocoonWorkerEnv(root), ...TIMING, FLEETQ_BACKOFF: '1s' });
  images = await queueClient(redis.url, imageQueueName(HOST));
  // A few finished jobs for clean and the listings.
  for (let i = 0; i < 3; i++) {
    const img = freshImage();
    const { jobId } = await enqueueEnsureImage(images.queue, { image: upstream.serve(`/done/${i}`, img.body), imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 10 });
    expect((await images.settle(jobId)).state).toBe('completed');
  }
});

afterAll(async () => {
  await worker?.kill();
  await images?.close();
  await upstream?.stop();
  if (root) removeRoot(root);
});

describe('exit codes: one table, the same in every command', () => {
  it('not found is 4 for jobs show and retry --id alike; bad input is 2; a usage line names the flag', async () => {
    const show = await cli('jobs', 'show', 'nosuch');
    expect([show.code, show.stderr]).toEqual([4, `fleetq: no job "nosuch" on ${HOST}\n`]);
    const retry = await cli('retry', '--id', 'nosuch', '--yes');
    expect([retry.code, retry.stderr]).toEqual([4, `fleetq: no job "nosuch" on ${HOST}\n`]);
    const dry = await cli('retry', '--id', 'nosuch', '--dry-run');
    expect(dry.code).toBe(4);
    const missing = await cli('enqueue', 'ensure-image', '--image', 'http://127.0.0.1:9/x.img');
    expect([missing.code, missing.stderr]).toEqual([2, 'fleetq: --host: is required\n']);
  });

  it('`fleetq` alone prints its help (with the exit-code table) on stderr and exits 2', async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^Usage: fleetq/);
    expect(r.stderr).toMatch(/Exit codes: 0 ok, 1 failed .*2 usage .*\n3 timeout .*4 not found/);
    expect((await cli('--help')).code).toBe(0);
  });

  it('--wait --timeout: the id at once, then exit 3 and the job carries on', async () => {
    const img = freshImage();
    const url = upstream.serve('/slow-timeout.img', img.body, { chunkDelayMs: 400, chunkSize: 16 * 1024 });
    const r = await cli('enqueue', 'ensure-image', '--host', HOST, '--image', url, '--digest', img.digest, '--wait', '--timeout', '1s');
    expect(r.code).toBe(3);
    const id = /^job (\S+): queued on /.exec(r.stderr)![1]!;
    expect(r.stdout).toMatch(new RegExp(`^${id} timeout: still active after 1s \\(the job carries on: fleetq jobs show ${id}\\)\\n$`));
    expect((await images.settle(id)).state).toBe('completed');
  });
});

describe('durations require a unit', () => {
  it.each([
    [['clean', '--state', 'completed', '--older-than', '7'], '--older-than: "7" has no unit: write 7ms, 7s, 7m, 7h or 7d'],
    [['dlq', 'purge', '--older-than', '7'], '--older-than: "7" has no unit: write 7ms, 7s, 7m, 7h or 7d'],
    [['jobs', 'ls', '--since', '90'], '--since: "90" has no unit: write 90ms, 90s, 90m, 90h or 90d'],
    [['enqueue', 'ensure-image', '--host', HOST, '--image', 'http://127.0.0.1:9/x.img', '--delay', '30'], '--delay: "30" has no unit: write 30ms, 30s, 30m, 30h or 30d'],
    [['enqueue', 'ensure-image', '--host', HOST, '--image', 'http://127.0.0.1:9/x.img', '--wait', '--timeout', '1500'], '--timeout: "1500" has no unit: write 1500ms, 1500s, 1500m, 1500h or 1500d'],
    [['prewarm', '--image', 'http://127.0.0.1:9/x.img', '--hosts', HOST, '--every', '60'], '--every: "60" has no unit: write 60ms, 60s, 60m, 60h or 60d'],
    [['jobs', 'watch', '--interval', '2'], '--interval: "2" has no unit: write 2ms, 2s, 2m, 2h or 2d'],
  ])('%j → exit 2, one line naming the flag, nothing removed', async (args, message) => {
    const before = await completedCount();
    const r = await cli(...args);
    expect([r.code, r.stderr, r.stdout]).toEqual([2, `fleetq: ${message}\n`, '']);
    expect(await completedCount()).toBe(before);
  });
});

describe('destructive commands: --dry-run, and confirmation', () => {
  it('clean --dry-run counts what would go and removes nothing', async () => {
    const before = await completedCount();
    expect(before).toBeGreaterThan(0);
    const human = await cli('clean', '--state', 'completed', '--older-than', '0s', '--host', HOST, '--queue', 'images', '--dry-run');
    expect(human.code).toBe(0);
    expect(human.stdout).toBe(`${imageQueueName(HOST)}: would remove ${before} completed\ndry run: would remove ${before} completed jobs older than 0ms\n`);
    const json = JSON.parse((await cli('clean', '--state', 'completed', '--older-than', '0s', '--host', HOST, '--queue', 'images', '--dry-run', '--json')).stdout);
    expect(json).toEqual([{ queue: imageQueueName(HOST), removed: 0, wouldRemove: before }]);
    expect(await completedCount()).toBe(before);
  });

  it('not on a terminal and without --yes: refused, exit 2, a line saying to pass --yes, nothing removed', async () => {
    const before = await completedCount();
    for (const args of [
      ['clean', '--state', 'completed', '--older-than', '0s'],
      ['retry', '--state', 'completed', '--host', HOST],
    ]) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^fleetq: --yes: required to (remove \d+ completed jobs older than 0ms from .*|retry \d+ jobs in .*) when not on a terminal \(nothing was changed; --dry-run shows what would change\)\n$/);
    }
    expect(await completedCount()).toBe(before);
  });

  it('on a terminal it asks: "n" keeps everything (exit 1), "y" goes ahead', async () => {
    const before = await completedCount();
    const cmd = `${fleetq} clean --state completed --older-than 0s --host ${HOST} --queue images`;
    const no = await onTerminal(cmd, 'n\n');
    expect(no.output).toContain(`remove ${before} completed jobs older than 0ms from ${imageQueueName(HOST)}? [y/N]`);
    expect(no.output).toContain('fleetq: aborted: nothing was changed');
    expect(no.code).toBe(1);
    expect(await completedCount()).toBe(before);
    const yes = await onTerminal(cmd, 'y\n');
    expect(yes.code).toBe(0);
    expect(yes.output).toContain(`${imageQueueName(HOST)}: removed ${before} completed`);
    expect(await completedCount()).toBe(0);
  }, 30_000);

  it('dlq purge: --dry-run lists, --yes purges; nothing old enough means no question', async () => {
    const img = freshImage();
    const { jobId } = await enqueueEnsureImage(images.queue, { image: upstream.url('/never-there.img'), imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 10 });
    await images.settle(jobId);
    await until(async () => JSON.parse((await cli('dlq', 'ls', '--json')).stdout).some((d: { originalId: string }) => d.originalId === jobId), 'the dead letter');
    expect(await cli('dlq', 'purge', '--older-than', '7d')).toMatchObject({ code: 0, stdout: 'removed 0 dead letters\n' });
    const dry = await cli('dlq', 'purge', '--older-than', '1ms', '--dry-run');
    expect(dry.stdout).toMatch(new RegExp(`^${HOST}/images ${jobId}: would delete \\(failed \\d+s ago\\)\\ndry run: would delete 1 dead letter older than 1ms\\n$`));
    expect((await cli('dlq', 'purge', '--older-than', '1ms')).code).toBe(2);
    expect(JSON.parse((await cli('dlq', 'ls', '--json')).stdout)).toHaveLength(1);
    expect(JSON.parse((await cli('dlq', 'purge', '--older-than', '1ms', '--yes', '--json')).stdout)).toEqual({ removed: 1 });
  });
});

describe('EPIPE', () => {
  it('`fleetq jobs ls | head -1` prints one line, no stack trace, and exits 0', async () => {
    // Enough rows to overflow the pipe: jobs delayed for an hour on the live host.
    await images.queue.addBulk(Array.from({ length: 3000 }, (_, i) => ({ name: 'ensure-image', data: { image: `http://127.0.0.1:9/${i}-${'x'.repeat(60)}.img` }, opts: { jobId: `pipe-${i}`, delay: 3_600_000 } })));
    const proc = spawn('bash', ['-o', 'pipefail', '-c', `${fleetq} jobs ls --state delayed --host ${HOST} | head -1; echo "exit \${PIPESTATUS[0]}" >&2`], {
      env: cleanEnv(env()),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(proc, 'close')) as [number];
    expect(stdout).toMatch(/^ID\s+HOST\s+QUEUE\s+NAME\s+STATE/);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    expect(stderr).toBe('exit 0\n');
    expect(code).toBe(0);
    await images.queue.clean(0, 0, 'delayed');
  });
});

describe('--json is the only way to get JSON', () => {
  it('prewarm prints a line per host without --json, JSON with it', async () => {
    const img = freshImage();
    const url = upstream.serve('/prewarm-cli.img', img.body);
    const human = await cli('prewarm', '--image', url, '--digest', img.digest, '--hosts', HOST);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^${HOST}: pull queued: job \\S+\\n$`));
    expect(human.stdout).not.toMatch(/[{}]/);
    const json = JSON.parse((await cli('prewarm', '--image', url, '--digest', img.digest, '--hosts', HOST, '--json')).stdout);
    expect(json[0]).toMatchObject({ host: HOST, jobId: expect.any(String) });
  });

  it('jobs show renders the payload as key=value text, not JSON', async () => {
    const img = freshImage();
    const { jobId } = await enqueueEnsureImage(images.queue, { image: upstream.serve('/show.img', img.body), imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 10 });
    await images.settle(jobId);
    const r = await cli('jobs', 'show', jobId);
    expect(r.code).toBe(0);
    const data = /^data +(.*)$/m.exec(r.stdout)![1]!.split(' ').sort();
    expect(data).toEqual([`image=${upstream.url('/show.img')}`, `imageDigest=${img.digest}`, 'imageType=cloudimg']);
    expect(r.stdout).not.toMatch(/^\w+ +[{[]/m);
  });
});

describe('error lines', () => {
  it.each([
    [['jobs', 'ls', '--queue', 'foo'], 'fleetq: --queue: must be "images" or "restores" (got "foo")'],
    [['enqueue', 'restore', '--host', HOST, '--kind', 'clone', '--snapshot', 's', '--vm', 'v'], 'fleetq: --vm: only with --kind restore (a clone names its new VM with --name)'],
    [['enqueue', 'restore', '--host', HOST, '--kind', 'restore', '--snapshot', 's', '--name', 'n'], 'fleetq: --name: only with --kind clone (--kind restore rolls back the VM given by --vm)'],
    [['enqueue', 'restore', '--host', HOST, '--kind', 'teleport', '--snapshot', 's'], 'fleetq: --kind: must be "clone" or "restore" (got "teleport")'],
    [['reroute', '--from-host', 'a b', '--to-host', HOST], 'fleetq: --from-host: must be 1-63 characters of letters, digits, ".", "_" or "-", starting with a letter or digit (got "a b")'],
    [['jobs', 'ls', '--hots', 'x'], 'fleetq: --hots: unknown option (did you mean --host?)'],
  ])('%j names the flag once, no payload', async (args, line) => {
    const r = await cli(...args);
    expect([r.code, r.stderr]).toEqual([2, `${line}\n`]);
  });
});

describe("the Redis URL's database index", () => {
  it('/3 is honoured: the job lands in database 3, not 0', async () => {
    const url = `${redis.url}/3`;
    const r = await runCli(['enqueue', 'ensure-image', '--host', 'db-host', '--image', 'http://127.0.0.1:9/db.img'], { REDIS_URL: url });
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    const db3 = new Redis(url);
    const db0 = new Redis(redis.url);
    expect(await db3.exists(`fleetq:${imageQueueName('db-host')}:${id}`)).toBe(1);
    expect(await db0.exists(`fleetq:${imageQueueName('db-host')}:${id}`)).toBe(0);
    db3.disconnect();
    db0.disconnect();
  });

  it('/99 (the server has 16) and /abc are refused, exit 2, naming REDIS_URL, nothing written to database 0', async () => {
    const r0 = new Redis(redis.url);
    const queueKeys = () => r0.keys(`fleetq:${imageQueueName('db-host-99')}:*`);
    const before = await queueKeys();
    const r = await runCli(['enqueue', 'ensure-image', '--host', 'db-host-99', '--image', 'http://127.0.0.1:9/db99.img'], { REDIS_URL: `${redis.url}/99` });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^fleetq: invalid REDIS_URL: Redis at redis:\/\/127\.0\.0\.1:\d+\/99 refused database 99 \(ERR DB index is out of range\)\n$/);
    const bad = await runCli(['jobs', 'ls'], { REDIS_URL: `${redis.url}/abc` });
    expect([bad.code, bad.stderr]).toEqual([2, 'fleetq: invalid REDIS_URL: the database index must be a whole number, as in redis://host:6379/3 (got "/abc")\n']);
    expect(await queueKeys()).toEqual(before);
    r0.disconnect();
  });
});

describe('enqueueing to a host with no live worker', () => {
  it('warns on stderr and enqueues; --require-live-host refuses with exit 2 and enqueues nothing', async () => {
    const img = freshImage();
    const warn = await cli('enqueue', 'ensure-image', '--host', 'h1', '--image', upstream.url('/h1.img'), '--digest', img.digest);
    expect(warn.code).toBe(0);
    expect(warn.stderr).toMatch(new RegExp(`^fleetq: warning: no live worker for host h1; the job will wait \\(hosts: .*${HOST} up.*\\)\\n$`));
    const q = await queueClient(redis.url, imageQueueName('h1-strict'));
    const refused = await cli('enqueue', 'ensure-image', '--host', 'h1-strict', '--image', upstream.url('/h1.img'), '--require-live-host');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^fleetq: --require-live-host: no live worker for host h1-strict; nothing was enqueued \(hosts: .*\)\n$/);
    expect(refused.stdout).toBe('');
    expect(await q.queue.getJobCountByTypes('wait', 'delayed', 'prioritized')).toBe(0);
    await q.close();
    // A live host: no warning at all.
    const ok = await cli('enqueue', 'ensure-image', '--host', HOST, '--image', upstream.serve('/live.img', img.body), '--digest', img.digest, '--require-live-host');
    expect([ok.code, ok.stderr]).toEqual([0, '']);
  });
});

describe('enqueue --wait shows progress', () => {
  it('off a terminal: the id at once, then a line per change — attempts, retry backoff, 25/50/75 %; the end on stdout', async () => {
    const img = bigImage(6);
    // Two 500s, then a download of ~5 s (the worker reports progress every second).
    const url = upstream.serve('/progress.img', img.body, { faults: [{ kind: 'status', status: 500 }, { kind: 'status', status: 500 }], chunkDelayMs: 50, chunkSize: 64 * 1024 });
    const run = spawnCli(['enqueue', 'ensure-image', '--host', HOST, '--image', url, '--digest', img.digest, '--wait']);
    const first = await until(() => /^job (\S+): queued on (\S+)\n/.exec(run.out.stderr) ?? undefined, 'the job id on stderr', 15_000);
    expect(first[2]).toBe(imageQueueName(HOST));
    expect(run.proc.exitCode).toBeNull(); // printed at once, long before the end
    const code = await run.exited;
    const id = first[1]!;
    const lines = run.out.stderr.trim().split('\n');
    expect(lines.every((l) => l.startsWith(`job ${id}: `))).toBe(true);
    const said = lines.map((l) => l.slice(`job ${id}: `.length));
    expect(said[0]).toBe(`queued on ${imageQueueName(HOST)}`);
    expect(said).toContain('active (attempt 1/3)');
    expect(said).toContainEqual(expect.stringMatching(/^attempt 1\/3 failed: .*GET \S+ answered HTTP 500 \(upstream server error\); retrying in \d+m?s$/));
    expect(said).toContainEqual(expect.stringMatching(/^attempt 2\/3 failed: .*HTTP 500.*; retrying in \d+m?s$/));
    expect(said).toContain('active (attempt 3/3)');
    // One line as the pull passes each of 25, 50 and 75 % (progress arrives once a second, so one line may pass two).
    const pcts = said.map((l) => /^(\d+)% \([\d.]+ MiB of [\d.]+ MiB, [\d.]+ (?:KiB|MiB)\/s, ETA \d+m?s\)$/.exec(l)?.[1]).filter(Boolean).map(Number);
    expect(pcts.length).toBeGreaterThanOrEqual(2);
    expect([...pcts].sort((a, b) => a - b)).toEqual(pcts);
    for (const mark of [25, 50, 75]) expect(pcts.some((p) => p >= mark)).toBe(true);
    expect(pcts[0]).toBeGreaterThanOrEqual(25);
    expect(said.join('\n')).not.toMatch(/will retry/);
    expect(run.out.stdout).toBe(`${id} completed: pulled ${img.digest} (attempt 3 of 3)\n`);
    expect(code).toBe(0);
  }, 40_000);

  it('after the last attempt the final message says how many attempts were used, never "will retry"; exit 1', async () => {
    const img = freshImage();
    const url = upstream.serve('/always-500.img', img.body, { faults: Array.from({ length: 5 }, () => ({ kind: 'status' as const, status: 500 })) });
    const r = await runCli(['enqueue', 'ensure-image', '--host', HOST, '--image', url, '--digest', img.digest, '--wait'], env({ FLEETQ_ATTEMPTS: '2' }));
    expect(r.code).toBe(1);
    const id = /^job (\S+): queued/.exec(r.stderr)![1];
    expect(r.stdout).toMatch(new RegExp(`^${id} failed after 2 attempts \\(all of 2\\): .*GET \\S+ answered HTTP 500 \\(upstream server error\\)\\n$`));
    expect(r.stdout + r.stderr).not.toMatch(/will retry/);
    const json = await runCli(['enqueue', 'ensure-image', '--host', HOST, '--image', upstream.url('/nowhere.img'), '--wait', '--json'], env());
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ state: 'failed', attemptsMade: 1, attempts: 3, failedReason: expect.stringMatching(/HTTP 404/) });
  }, 30_000);

  it('a restore --wait: its phases and its base image job', async () => {
    const img = bigImage(3);
    const url = upstream.serve('/restore-base.img', img.body, { chunkDelayMs: 40, chunkSize: 64 * 1024 });
    plantSnapshot(root, { name: 'golden-cli', image: url, imageDigest: img.digest });
    const r = await runCli(['enqueue', 'restore', '--host', HOST, '--kind', 'clone', '--snapshot', 'golden-cli', '--name', 'vm-cli-wait', '--wait'], env());
    expect(r.code, r.stderr).toBe(0);
    const id = /^job (\S+): queued on (\S+)/.exec(r.stderr)!;
    expect(id[2]).toBe(restoreQueueName(HOST));
    expect(r.stderr).toMatch(/: waiting for its base image \(job \S+\.image\.0\)\n/);
    expect(r.stderr).toMatch(/: base image job \S+\.image\.0: active \(attempt 1\/\d\)\n/);
    expect(r.stderr).toMatch(/: phase: cloning\n/);
    expect(r.stdout).toBe(`${id[1]} completed: done ${img.digest}\n`);
  }, 30_000);

  it('on a terminal: a bar redrawn in place with bytes, rate, ETA and attempt n/N', async () => {
    const img = bigImage(4);
    const url = upstream.serve('/tty.img', img.body, { chunkDelayMs: 50, chunkSize: 64 * 1024 });
    const r = await onTerminal(`${fleetq} enqueue ensure-image --host ${HOST} --image ${url} --digest ${img.digest} --wait`);
    expect(r.code).toBe(0);
    expect(r.output).toMatch(/^job \S+: queued on /);
    expect(r.output).toContain('\r\x1b[K');
    expect(r.output).toMatch(/job \S+ {2}attempt 1\/3 {2}\[#+\.*\] \d+% {2}[\d.]+ MiB of [\d.]+ MiB, [\d.]+ (KiB|MiB)\/s, ETA \d+s/);
    expect(r.output).toMatch(/\r\x1b\[K\S+ completed: pulled sha256:[0-9a-f]{64}\r?\n$/);
  }, 30_000);
});

describe('jobs watch', () => {
  it('off a terminal: the listing, then a line per change, until Ctrl-C (exit 0)', async () => {
    const redisClient = new Redis(redis.url);
    onTestFinished(() => void redisClient.quit());
    const clients = async () => String(await redisClient.client('LIST')).trim().split('\n').length;
    const before = await clients();
    const run = spawnCli(['jobs', 'watch', '--host', HOST, '--queue', 'images', '--interval', '200ms']);
    // Watching once the CLI has connected (its first listing follows at once; the pull below takes ≥ 1 s).
    await until(async () => ((await clients()) > before ? true : undefined), 'the watch to connect to Redis', 15_000);
    const img = bigImage(2);
    const url = upstream.serve('/watched.img', img.body, { chunkDelayMs: 30, chunkSize: 64 * 1024 });
    const { jobId } = await enqueueEnsureImage(images.queue, { image: url, imageDigest: img.digest }, { host: HOST, attempts: 2, backoffMs: 10 });
    await images.settle(jobId);
    const line = (re: string) => until(() => new RegExp(re, 'm').test(run.out.stdout) || undefined, re, 15_000);
    await line(`^\\S+Z ${jobId} ${HOST}/images ensure-image: (waiting -> )?active \\(attempt 1/2`);
    await line(`^\\S+Z ${jobId} ${HOST}/images ensure-image: active -> completed \\(attempts 1/2\\)$`);
    run.proc.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.out.stderr).toBe('');
  }, 30_000);

  it('jobs ls --watch on a terminal redraws the screen', async () => {
    const CLEAR = '\x1b[H\x1b[2J';
    // Ctrl-C once the screen has been drawn twice (a redraw), however long the CLI takes to start.
    const r = await onTerminalUntil(`${fleetq} jobs ls --watch --interval 200ms --state completed --host ${HOST}`, (out) => out.split(CLEAR).length > 2 && /PROGRESS/.test(out.slice(out.lastIndexOf(CLEAR))), 15_000);
    expect(r.output.split(CLEAR).length - 1, 'screen clears').toBeGreaterThanOrEqual(2);
    expect(r.output).toMatch(/every 200ms: jobs completed on cli-a .*\(Ctrl-C to quit\)/);
    expect(r.output).toMatch(/ID\s+HOST\s+QUEUE\s+NAME\s+STATE\s+ATTEMPTS\s+PROGRESS/);
  }, 20_000);
});

/**
 * Run under a terminal until its output satisfies `done` (or `timeoutMs` passes,
 * which fails the test), then Ctrl-C (the terminal's interrupt character).
 */
async function onTerminalUntil(command: string, done: (output: string) => boolean, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  const proc: ChildProcess = spawn('script', ['-qec', `stty cols 160 rows 40; ${command}`, '/dev/null'], { env: cleanEnv(env()), stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let interrupted = false;
  const interrupt = () => {
    if (interrupted) return;
    interrupted = true;
    proc.stdin!.write('\x03');
  };
  const timer = setTimeout(interrupt, timeoutMs);
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    output += d;
    if (done(output)) interrupt();
  });
  const [code] = (await once(proc, 'close')) as [number | null];
  clearTimeout(timer);
  if (!done(output)) throw new Error(`no expected output within ${timeoutMs} ms; got ${JSON.stringify(output.slice(-500))}`);
  return { code, output };
}
