/**
 * Progress, job logs, worker logs and metrics, end to end (issue 11): a real
 * redis-server, a real worker process (its stdout read raw, line by line), a
 * real HTTP upstream, real images, the fake cocoon, a real board process, and
 * Debian's promtool when it is installed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/lib/free-port.js';
import { oldestWaitingSince } from '../../src/metrics/queue-age.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../src/queues/enqueue-restore.js';
import { imageChildId, imageQueueName, restoreQueueName } from '../../src/queues/names.js';
import { storePaths } from '../../src/store/paths.js';
import { type BoardProcess, startBoardProcess } from '../helpers/board-process.js';
import { cocoonWorkerEnv, plantSnapshot, setHostCores } from '../helpers/cocoon.js';
import { qcow2Image, rawImage } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { useTestRedis } from '../helpers/redis.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { BIN } from '../helpers/worker-process.js';
import { startMonitor } from '../helpers/monitor.js';

const HOST = 'plm-1';
const redis = useTestRedis();
let upstream: Upstream;
let root: string;
let worker: RawWorker;
let metricsUrl: string;
let images: QueueClient;
let restores: QueueClient;
let board: BoardProcess | undefined;
let size = 300;
const freshImage = () => qcow2Image(size++);

const PROMTOOL = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;

// ───────────── a worker whose stdout is kept as raw text ─────────────

interface RawWorker {
  proc: ChildProcess;
  /** Every stdout line, as written. */
  lines: string[];
  stderr: () => string;
  waitFor(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

function workerEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL' && k !== 'NO_COLOR') env[k] = v;
  return { ...env, FLEETQ_LOG_LEVEL: 'debug', FLEETQ_STALLED_INTERVAL: '1s', FLEETQ_JOB_LOCK: '3s', ...extra };
}

async function spawnWorker(extra: Record<string, string>, started = (l: string) => l.includes('worker started')): Promise<RawWorker> {
  const proc = spawn(process.execPath, [BIN, 'worker'], { env: workerEnv(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  const watchers = new Set<() => void>();
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of [...watchers]) w();
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(proc, 'close');
  const waitFor = (pred: (l: string) => boolean, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const hit = lines.find(pred);
        if (hit === undefined) return;
        clearTimeout(timer);
        watchers.delete(check);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`line not seen in ${timeoutMs}ms; stderr: ${err}; last: ${lines.slice(-5).join('\n')}`));
      }, timeoutMs);
      watchers.add(check);
      void exited.then(() => {
        if (watchers.has(check)) {
          clearTimeout(timer);
          watchers.delete(check);
          reject(new Error(`worker exited first; stderr: ${err}`));
        }
      });
      check();
    });
  const w: RawWorker = {
    proc,
    lines,
    stderr: () => err,
    waitFor,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await exited;
    },
  };
  await waitFor(started);
  return w;
}

/** Keys that occur twice in one object of a JSON text, at any depth (JSON.parse would keep the last silently). */
function duplicateKeys(text: string): string[] {
  const dups: string[] = [];
  const stack: Array<Set<string> | null> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      let k = j + 1;
      while (text[k] === ' ') k++;
      const top = stack.at(-1);
      if (top && text[k] === ':') {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) dups.push(key);
        else top.add(key);
      }
      i = j;
    } else if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
  }
  return dups;
}

const jobLogs = async (q: QueueClient, id: string) => (await q.queue.getJobLogs(id)).logs;

beforeAll(async () => {
  upstream = await startUpstream();
  root = tempRoot();
  setHostCores(root, 16);
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}`;
  // A heartbeat far away: during the test no registry write is due, so any would be a job's.
  worker = await spawnWorker({
    REDIS_URL: redis.url,
    FLEETQ_HOST: HOST,
    FLEETQ_ROOT: root,
    FLEETQ_BACKOFF: '100ms',
    FLEETQ_HEARTBEAT: '1h',
    FLEETQ_METRICS_PORT: String(port),
    ...cocoonWorkerEnv(root),
  });
  images = await queueClient(redis.url, imageQueueName(HOST));
  restores = await queueClient(redis.url, restoreQueueName(HOST));
});

afterAll(async () => {
  await board?.stop();
  await images?.close();
  await restores?.close();
  await worker?.stop();
  await upstream?.stop();
  removeRoot(root);
});

const pullUrl = (path: string) => `${upstream.url(path)}?token=SECRET-TOKEN&tag=v1`;
const shownUrl = (path: string) => `${upstream.url(path)}?token=REDACTED&tag=v1`;
const hit = rawImage(1024 * 1024);

describe('a pull', () => {
  it('reports {progress 0–100, bytes, total, rate} and tells its story in the job log, URL redacted', async () => {
    upstream.serve('/plm/raw.img', hit.body, { chunkSize: 32 * 1024, chunkDelayMs: 60 }); // ~2 s
    const seen: Array<{ progress: number; bytes: number; total: number | null; rate: number }> = [];
    let jobId = '';
    const onProgress = ({ jobId: id, data }: { jobId: string; data: any }) => {
      if (id === jobId) seen.push(data);
    };
    images.events.on('progress', onProgress);
    jobId = (await enqueueEnsureImage(images.queue, { image: pullUrl('/plm/raw.img'), imageDigest: hit.digest }, { host: HOST, attempts: 3, backoffMs: 100 })).jobId;
    const r = await images.settle(jobId);
    images.events.off('progress', onProgress);
    expect(r.state).toBe('completed');

    expect(seen.length).toBeGreaterThanOrEqual(2);
    for (const p of seen) {
      expect(Object.keys(p).sort()).toEqual(['bytes', 'progress', 'rate', 'total']);
      expect(p.total).toBe(hit.body.length);
      expect(p.progress).toBe(Math.floor((p.bytes * 100) / hit.body.length));
      expect(Number.isInteger(p.progress) && p.progress >= 0 && p.progress <= 100).toBe(true);
      expect(p.rate).toBeGreaterThan(0);
    }
    expect(seen.map((p) => p.progress)).toEqual([...seen.map((p) => p.progress)].sort((a, b) => a - b));
    expect(seen.at(-1)).toMatchObject({ progress: 100, bytes: hit.body.length });
    // What the board reads: the ring from `progress`, the rest in the Progress tab.
    expect((await images.queue.getJob(jobId))!.progress).toMatchObject({ progress: 100, bytes: hit.body.length, total: hit.body.length });

    const logs = await jobLogs(images, jobId);
    const story = [
      new RegExp(`^pull started \\(attempt 1/3\\): GET ${escape(shownUrl('/plm/raw.img'))}, expecting ${hit.digest} \\[pinned-missing\\]$`),
      /^receiving 1\.0 MiB$/,
      /^downloaded 25%: \d+\.\d KiB of 1\.0 MiB at .+\/s$/,
      /^downloaded 50%: /,
      /^downloaded 75%: /,
      /^downloaded 1\.0 MiB in \d/,
      new RegExp(`^verified ${hit.digest}: matches the pinned digest`),
      /^converted raw to qcow2: 1\.0 MiB received, .+ on disk$/,
      new RegExp(`^committed ${escape(join(root, 'cloudimg/blobs', `${hit.digest.slice(7)}.qcow2`))}, indexed under ${escape(shownUrl('/plm/raw.img'))}$`),
    ];
    expect(logs).toHaveLength(story.length);
    story.forEach((re, i) => expect(logs[i]).toMatch(re));
    expect(logs.join('\n')).not.toContain('SECRET');
  });

  it('a cache hit writes nothing extra: no progress, no job log, no registry write, no log line at info', async () => {
    const monitor = await startMonitor(redis.url);
    const commands: Array<{ source: string; args: string[] }> = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => commands.push({ source, args }));
    const linesBefore = worker.lines.length;
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      ids.push((await enqueueEnsureImage(images.queue, { image: pullUrl('/plm/raw.img'), imageDigest: hit.digest }, { host: HOST, attempts: 3, backoffMs: 100 })).jobId);
      const r = await images.settle(ids.at(-1)!);
      expect(r.value).toMatchObject({ outcome: 'present', digest: hit.digest });
    }
    await new Promise((r) => setTimeout(r, 200));
    monitor.disconnect();

    for (const id of ids) {
      expect(await jobLogs(images, id)).toEqual([]);
      expect((await images.queue.getJob(id))!.progress).toBe(0);
    }
    const writes = commands.filter((c) => WRITES.has(c.args[0]!.toLowerCase()));
    expect(writes.length).toBeGreaterThan(0); // BullMQ's own, seen from inside its scripts
    const own = [`fleetq:${imageQueueName(HOST)}:`, `fleetq:${restoreQueueName(HOST)}:`];
    const elsewhere = writes.filter((c) => !own.some((p) => String(c.args[1]).startsWith(p)));
    expect(elsewhere).toEqual([]); // no registry, no DLQ, no lock
    expect(writes.filter((c) => c.args.some((a) => /:logs$/.test(String(a))))).toEqual([]);
    expect(writes.filter((c) => c.args[0]!.toLowerCase() === 'hset' && c.args.includes('progress'))).toEqual([]);
    expect(writes.filter((c) => c.args[0]!.toLowerCase() === 'xadd' && c.args.includes('progress'))).toEqual([]);
    // The worker logged them at debug only (this worker runs at debug): nothing at info or above.
    const infoAbout = worker.lines.slice(linesBefore).filter((l) => ids.some((id) => l.includes(id)) && !l.includes('"level":20'));
    expect(infoAbout).toEqual([]);
  });
});

const WRITES = new Set(['set', 'setex', 'psetex', 'del', 'unlink', 'hset', 'hmset', 'hdel', 'hincrby', 'lpush', 'rpush', 'lrem', 'ltrim', 'rpoplpush', 'lmove', 'zadd', 'zrem', 'zincrby', 'sadd', 'srem', 'xadd', 'xtrim', 'incr', 'incrby', 'expire', 'pexpire', 'publish']);

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('a restore', () => {
  it('tells its story in the job log: base decided, waiting for its image job, the base on disk, cocoon and its outcome', async () => {
    const img = freshImage();
    upstream.serve('/plm/golden', img.body);
    plantSnapshot(root, { name: 'golden', image: upstream.url('/plm/golden'), imageDigest: img.digest, cpu: 2 });
    const { jobId } = await enqueueRestore(restores.queue, { kind: 'clone', snapshot: 'golden', name: 'vm-plm' }, { host: HOST, attempts: 3, backoffMs: 100 });
    const r = await restores.settle(jobId);
    expect(r.state).toBe('completed');
    const child = imageChildId(jobId, 0);
    const logs = await jobLogs(restores, jobId);
    const text = logs.join('\n');
    const order = [
      /^clone vm-plm from snapshot golden \(attempt 1\/3\)$/m,
      new RegExp(`^base image decided: ${img.digest} \\(recorded by snapshot golden\\)$`, 'm'),
      new RegExp(`^base image ${img.digest} is not on this host: waiting for image job ${escape(child)}$`, 'm'),
      new RegExp(`^base image ${img.digest} is on disk \\(ensured by image job ${escape(child)}\\): `, 'm'),
      /^snapshot overlay checked: /m,
      /^\$ \S+fake-cocoon vm clone golden --name vm-plm /m,
      /^cocoon vm clone exited 0: VM vm-plm \(\S+\) is running$/m,
    ];
    let at = 0;
    for (const re of order) {
      const m = re.exec(text.slice(at));
      expect(m, `${re} after offset ${at} in:\n${text}`).not.toBeNull();
      at += m!.index + m![0].length;
    }
    // The image job that the restore waited for has its own pull story.
    const pull = await jobLogs(images, child);
    expect(pull[0]).toMatch(/^pull started \(attempt 1\/\d+\): GET /);
    expect(pull.at(-1)).toMatch(/^committed /);
  });
});

describe('a failed job on the board', () => {
  it('a permanent failure: its code and message, not fleetq\'s stack frames; the job log says it is not retried', async () => {
    const { jobId } = await enqueueEnsureImage(images.queue, { image: pullUrl('/plm/nothing'), imageDigest: freshImage().digest }, { host: HOST, attempts: 3, backoffMs: 100 });
    const r = await images.settle(jobId);
    expect(r.state).toBe('failed');
    const job = (await images.queue.getJob(jobId))!;
    const stack = job.stacktrace ?? [];
    expect(stack).toHaveLength(1);
    expect(stack[0]).toMatch(/^E_HTTP_STATUS: .*HTTP 404/);
    expect(stack[0]).toBe(`E_HTTP_STATUS: ${job.failedReason}`);
    expect(stack[0]).not.toMatch(/\n\s+at /);
    expect(stack[0]).not.toContain('SECRET');
    const logs = await jobLogs(images, jobId);
    expect(logs.at(-1)).toMatch(/^error: E_HTTP_STATUS: .*\(attempt 1\/3; permanent: not retried\)$/);
  });

  it('a transient failure retried to the end: one `<code>: <message>` per attempt; the last attempt says no attempts are left', async () => {
    const img = freshImage();
    upstream.serve('/plm/flaky', img.body, { faults: [{ kind: 'status', status: 503 }, { kind: 'status', status: 503 }] });
    const { jobId } = await enqueueEnsureImage(images.queue, { image: pullUrl('/plm/flaky'), imageDigest: img.digest }, { host: HOST, attempts: 2, backoffMs: 100 });
    const r = await images.settle(jobId);
    expect(r.state).toBe('failed');
    const job = (await images.queue.getJob(jobId))!;
    const stack = job.stacktrace ?? [];
    expect(stack).toHaveLength(2);
    for (const s of stack) expect(s).toMatch(/^E_HTTP_STATUS: [^\n]*HTTP 503[^\n]*$/);
    const errors = (await jobLogs(images, jobId)).filter((l) => l.startsWith('error:'));
    expect(errors).toEqual([expect.stringMatching(/\(attempt 1\/2; will be retried\)$/), expect.stringMatching(/\(attempt 2\/2; no attempts left\)$/)]);
  });
});

describe("the worker's /metrics and /healthz (FLEETQ_METRICS_PORT)", () => {
  it('/metrics: process and Node.js metrics, build info, its job metrics, its queues\' oldest waiting job', async () => {
    const r = await fetch(`${metricsUrl}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).toMatch(/^nodejs_active_handles\{type="\w+"\} \d/m);
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total/m);
    expect(text).toMatch(new RegExp(`^fleetq_build_info\\{version="\\d+\\.\\d+\\.\\d+",node="${escape(process.version)}"\\} 1$`, 'm'));
    expect(text).toMatch(new RegExp(`^fleetq_pulls_total\\{host="${HOST}",outcome="present"\\} 20$`, 'm'));
    expect(text).toMatch(new RegExp(`^fleetq_pulls_total\\{host="${HOST}",outcome="pulled"\\} [2-9]$`, 'm'));
    expect(text).toMatch(new RegExp(`^fleetq_queue_oldest_waiting_seconds\\{host="${HOST}",queue="images"\\} 0$`, 'm'));
    expect(text).toMatch(new RegExp(`^fleetq_queue_oldest_waiting_seconds\\{host="${HOST}",queue="restores"\\} 0$`, 'm'));
  });

  it('fleetq_queue_oldest_waiting_seconds grows while a job waits, on the worker and on the board', async () => {
    board = await startBoardProcess({ REDIS_URL: redis.url }, ['--no-auth']);
    await images.queue.pause();
    try {
      const img = freshImage();
      const { jobId } = await enqueueEnsureImage(images.queue, { image: upstream.serve('/plm/waits', img.body), imageDigest: img.digest }, { host: HOST, attempts: 1, backoffMs: 100 });
      await new Promise((r) => setTimeout(r, 1500));
      const series = new RegExp(`^fleetq_queue_oldest_waiting_seconds\\{host="${HOST}",queue="images"\\} ([\\d.]+)$`, 'm');
      const onWorker = Number(series.exec(await (await fetch(`${metricsUrl}/metrics`)).text())?.[1]);
      const onBoard = Number(series.exec(await (await fetch(`${board.url}/metrics`)).text())?.[1]);
      expect(onWorker).toBeGreaterThanOrEqual(1.4);
      expect(onWorker).toBeLessThan(30);
      expect(onBoard).toBeGreaterThanOrEqual(1.4);
      expect(onBoard).toBeLessThan(30);
      await images.queue.resume();
      expect((await images.settle(jobId)).state).toBe('completed');
      expect(await (await fetch(`${metricsUrl}/metrics`)).text()).toMatch(new RegExp(`^fleetq_queue_oldest_waiting_seconds\\{host="${HOST}",queue="images"\\} 0$`, 'm'));
    } finally {
      await images.queue.resume();
    }
  });

  it('/healthz: 200 when Redis answers and the store is writable; 503 naming the store or Redis when not', async () => {
    const ok = await fetch(`${metricsUrl}/healthz`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ status: 'ok', redis: 'ok', store: 'ok' });

    // The store: temp/ replaced by a file, so nothing can be created in it.
    const temp = storePaths(root).temp;
    renameSync(temp, `${temp}.away`);
    writeFileSync(temp, '');
    try {
      const bad = await fetch(`${metricsUrl}/healthz`);
      expect(bad.status).toBe(503);
      expect(await bad.json()).toMatchObject({ status: 'unavailable', redis: 'ok', store: expect.stringMatching(/^not writable: .*ENOTDIR/) });
    } finally {
      rmSync(temp);
      renameSync(`${temp}.away`, temp);
    }

    // Redis: every client paused for 2.5 s, so PING gets no answer within 1 s.
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '2500', 'ALL');
      const slow = await fetch(`${metricsUrl}/healthz`);
      expect(slow.status).toBe(503);
      expect(await slow.json()).toMatchObject({ status: 'unavailable', redis: expect.stringMatching(/^PING: no answer within 1000ms/), store: 'ok' });
      await new Promise((r) => setTimeout(r, 2000));
      expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(200);
    } finally {
      admin.disconnect();
    }
  });

  it('serves nothing else: 404 for other paths, 405 for other methods; HEAD works', async () => {
    expect((await fetch(`${metricsUrl}/`)).status).toBe(404);
    expect((await fetch(`${metricsUrl}/api/queues`)).status).toBe(404);
    expect((await fetch(`${metricsUrl}/metrics`, { method: 'POST' })).status).toBe(405);
    const head = await fetch(`${metricsUrl}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });
});

describe('promtool check metrics', () => {
  it.skipIf(!PROMTOOL)("is clean for the worker's and the board's /metrics", async () => {
    board ??= await startBoardProcess({ REDIS_URL: redis.url }, ['--no-auth']);
    for (const url of [`${metricsUrl}/metrics`, `${board.url}/metrics`]) {
      const text = await (await fetch(url)).text();
      expect(text).toMatch(/^fleetq_build_info\{/m);
      expect(text).toMatch(/^fleetq_queue_oldest_waiting_seconds\{host="plm-1",queue="images"\} /m);
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect({ url, status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ url, status: 0, out: '' });
    }
  });
  if (!PROMTOOL) it.skip('promtool is not installed (apt-get install prometheus): the /metrics outputs were not checked with it', () => {});
});

describe('log lines', () => {
  it('the duplicate-key detector finds what JSON.parse hides', () => {
    expect(duplicateKeys('{"a":1,"b":{"a":2,"c":[{"a":3,"a":4}]},"a":"x"}')).toEqual(['a', 'a']);
    expect(duplicateKeys('{"a":"\\"a\\":","b":[1,"a"]}')).toEqual([]);
  });

  it('no line of the whole run (pulls, cache hits, failures, a restore with its image job) repeats a key; every line is JSON', () => {
    expect(worker.lines.length).toBeGreaterThan(30);
    const bad = worker.lines.filter((l) => duplicateKeys(l).length > 0);
    expect(bad).toEqual([]);
    for (const l of worker.lines) expect(() => JSON.parse(l)).not.toThrow();
    // The lines that used to repeat host, digest or vm are among them.
    const msgs = new Set(worker.lines.map((l) => JSON.parse(l).msg as string));
    for (const m of ['image needs download', 'image pulled', 'ensure-image done', 'ensure-image failed', 'restore done', 'base image on disk']) expect(msgs).toContain(m);
  });

  it('FLEETQ_LOG_FORMAT=pretty: human lines (pino-pretty), redacted like the JSON', async () => {
    const r2 = tempRoot();
    const w = await spawnWorker(
      { REDIS_URL: redis.url, FLEETQ_HOST: 'plm-pretty', FLEETQ_ROOT: r2, FLEETQ_LOG_FORMAT: 'pretty' },
      (l) => l.includes('worker started'),
    );
    const q = await queueClient(redis.url, imageQueueName('plm-pretty'));
    try {
      const line = w.lines.find((l) => l.includes('worker started'))!;
      expect(line).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: plm-pretty worker started \{.*"queues":\[/);
      expect(line).toContain(JSON.stringify([imageQueueName('plm-pretty'), restoreQueueName('plm-pretty')]));
      expect(() => JSON.parse(line)).toThrow();
      expect(line).not.toContain('\u001b['); // not a terminal: no colours
      const { jobId } = await enqueueEnsureImage(q.queue, { image: pullUrl('/plm/pretty-404'), imageDigest: freshImage().digest }, { host: 'plm-pretty', attempts: 1, backoffMs: 100 });
      const failed = await w.waitFor((l) => l.includes('ensure-image failed'));
      expect(failed).toMatch(new RegExp(`^\\[[^\\]]+\\] WARN: plm-pretty job ${jobId}: ensure-image failed `));
      // The error follows, indented: its message with the URL redacted.
      await w.waitFor((l) => /^\s+"message": "GET .*\/plm\/pretty-404\?token=REDACTED&tag=v1 answered HTTP 404/.test(l));
      expect(w.lines.join('\n')).not.toContain('SECRET');
    } finally {
      await q.close();
      await w.stop();
      removeRoot(r2);
    }
  });

  it('FLEETQ_LOG_FORMAT=auto (the default) is pretty on a terminal', async () => {
    const r2 = tempRoot();
    // util-linux `script` runs the worker on a pseudo-terminal; stopping `script` hangs the terminal up, which ends the worker.
    const p = spawn('script', ['-qfec', `${process.execPath} ${BIN} worker`, '/dev/null'], {
      env: workerEnv({ REDIS_URL: redis.url, FLEETQ_HOST: 'plm-tty', FLEETQ_ROOT: r2 }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const closed = once(p, 'close');
    try {
      await expect.poll(() => out, { timeout: 20_000, interval: 100 }).toContain('worker started');
    } finally {
      p.kill('SIGTERM');
      await closed;
      removeRoot(r2);
    }
    // eslint-disable-next-line no-control-regex
    const plain = out.replace(/\u001b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/\] INFO: plm-tty worker started/);
    expect(out).toContain('\u001b['); // a terminal: colours
    expect(plain).not.toMatch(/^\{"level"/m);
  });
});

describe('fleetq_queue_oldest_waiting_seconds reads', () => {
  it('the oldest of the wait list and of every priority, not just the next job', async () => {
    const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    const q = new Queue('age-test', { connection: conn, prefix: 'agetest' });
    try {
      await q.pause();
      expect(await oldestWaitingSince(conn, q)).toBeUndefined();
      const t = Date.now() - 100_000;
      await q.add('x', {}, { timestamp: t + 50_000 });
      await q.add('x', {}, { timestamp: t + 60_000 });
      expect(await oldestWaitingSince(conn, q)).toBe(t + 50_000);
      await q.add('x', {}, { timestamp: t + 20_000, priority: 1 }); // the next job to run
      await q.add('x', {}, { timestamp: t + 10_000, priority: 7 }); // runs after the priority-1 jobs, and has waited longest
      await q.add('x', {}, { timestamp: t + 15_000, priority: 7 });
      await q.add('x', {}, { timestamp: t + 30_000, priority: 3 });
      expect(await oldestWaitingSince(conn, q)).toBe(t + 10_000);
      await q.add('x', {}, { timestamp: t + 1_000, delay: 60_000 }); // delayed: not waiting
      expect(await oldestWaitingSince(conn, q)).toBe(t + 10_000);
    } finally {
      await q.obliterate({ force: true });
      await q.close();
      conn.disconnect();
    }
  });
});
