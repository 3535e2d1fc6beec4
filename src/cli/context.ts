/**
 * Shared plumbing for CLI commands: config from env + flags, a queue handle,
 * clean teardown — and the local state file of `fleetq start`.
 *
 * `fleetq start` without REDIS_URL picks a Redis itself (127.0.0.1:6379, or a
 * private redis-server on a free port) and records it in ./var/fleetq.env
 * (REDIS_URL=…, FLEETQ_HOST=…; written atomically, removed on a clean stop).
 * Every CLI command run from the same directory without REDIS_URL reads that
 * file, as long as the `fleetq start` that wrote it is alive and its Redis
 * answers; an explicit REDIS_URL always wins.
 */
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Queue, QueueEvents } from 'bullmq';
import { loadConfig, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { connectRedis, openRedis, type RedisClient, waitReady } from '../redis/connect.js';
import { queueOptions } from '../queues/queue-options.js';

/** Where `fleetq start` records its Redis, relative to the working directory. */
export const LOCAL_STATE_FILE = 'var/fleetq.env';
/** The same, as shown to people. */
export const LOCAL_STATE_SHOWN = `./${LOCAL_STATE_FILE}`;

export interface LocalState {
  redisUrl: string;
  host: string;
  /** The `fleetq start` process that owns the file (and the embedded redis-server, if any). */
  pid: number;
  /** The embedded redis-server's pid, when `fleetq start` started one. */
  redisPid?: number | undefined;
}

export function localStatePath(cwd = process.cwd()): string {
  return resolve(cwd, LOCAL_STATE_FILE);
}

export function formatLocalState(s: LocalState): string {
  return [
    `# Written by \`fleetq start\` (pid ${s.pid}${s.redisPid ? `, redis-server pid ${s.redisPid}` : ''}); removed when it stops.`,
    '# fleetq commands run in this directory use these values when REDIS_URL is not set.',
    `# fleetq-start-pid=${s.pid}${s.redisPid ? ` redis-server-pid=${s.redisPid}` : ''}`,
    `REDIS_URL=${s.redisUrl}`,
    `FLEETQ_HOST=${s.host}`,
    '',
  ].join('\n');
}

/** Parse the file's text; undefined when it is not one `fleetq start` wrote. */
export function parseLocalState(text: string): LocalState | undefined {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!;
  }
  const pid = /^# fleetq-start-pid=(\d+)/m.exec(text);
  const redisPid = /redis-server-pid=(\d+)/.exec(text);
  if (!pid || !vars.REDIS_URL || !vars.FLEETQ_HOST) return undefined;
  return { redisUrl: vars.REDIS_URL, host: vars.FLEETQ_HOST, pid: Number(pid[1]), redisPid: redisPid ? Number(redisPid[1]) : undefined };
}

/** Write the file atomically (temp file + rename), mode 0600. */
export function writeLocalState(path: string, s: LocalState): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, formatLocalState(s), { mode: 0o600 });
  renameSync(tmp, path);
}

/** Remove the file if it is still the one this process wrote. */
export function removeLocalState(path: string, pid = process.pid): void {
  try {
    if (parseLocalState(readFileSync(path, 'utf8'))?.pid === pid) rmSync(path, { force: true });
  } catch {
    // already gone
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The only URLs the file may name: what `fleetq start` writes (a Redis on this machine's loopback). */
const LOOPBACK_REDIS = /^redis:\/\/127\.0\.0\.1:(\d{1,5})$/;

const PING_SOURCE = `
const { workerData } = require('node:worker_threads');
const net = require('node:net');
const flag = new Int32Array(workerData.sab);
const s = net.connect(workerData.port, workerData.host);
const done = (v) => { Atomics.store(flag, 0, v); Atomics.notify(flag, 0); s.destroy(); };
s.setTimeout(workerData.timeoutMs, () => done(2));
s.on('error', () => done(2));
s.on('connect', () => s.write('PING\\r\\n'));
s.on('data', (d) => { const t = d.toString(); done(t.startsWith('+PONG') || t.startsWith('-NOAUTH') ? 1 : 2); });
`;

/**
 * Does a Redis answer PING at host:port? Synchronous (a worker thread does the
 * I/O while this thread waits), so that config loading can stay synchronous.
 * About 30 ms; only run when the state file is present and REDIS_URL unset.
 */
export function redisAnswersSync(host: string, port: number, timeoutMs = 500): boolean {
  const sab = new SharedArrayBuffer(4);
  const flag = new Int32Array(sab);
  const worker = new Worker(PING_SOURCE, { eval: true, workerData: { sab, host, port, timeoutMs } });
  worker.unref();
  Atomics.wait(flag, 0, 0, timeoutMs + 2000);
  void worker.terminate().catch(() => {});
  return Atomics.load(flag, 0) === 1;
}

export type LocalStateCheck =
  | { status: 'absent' }
  | { status: 'usable'; state: LocalState }
  | { status: 'stale'; state?: LocalState | undefined; why: string };

/** Read ./var/fleetq.env and say whether it may be used: written by fleetq start, owner alive, Redis answering. */
export function checkLocalState(path = localStatePath(), opts: { ping?: boolean } = {}): LocalStateCheck {
  let text: string;
  try {
    const st = statSync(path);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return { status: 'stale', why: 'it belongs to another user' };
    if (st.mode & 0o022) return { status: 'stale', why: 'it is writable by others' };
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'absent' };
    return { status: 'stale', why: (err as Error).message };
  }
  const state = parseLocalState(text);
  if (!state) return { status: 'stale', why: 'it was not written by fleetq start' };
  const port = LOOPBACK_REDIS.exec(state.redisUrl);
  if (!port) return { status: 'stale', state, why: `it names ${state.redisUrl}, not a Redis on 127.0.0.1` };
  if (!processAlive(state.pid)) return { status: 'stale', state, why: `the fleetq start that wrote it (pid ${state.pid}) is not running` };
  if (opts.ping !== false && !redisAnswersSync('127.0.0.1', Number(port[1]))) return { status: 'stale', state, why: `nothing answers at ${state.redisUrl}` };
  return { status: 'usable', state };
}

/**
 * The environment CLI commands configure themselves from: process.env, plus
 * REDIS_URL (and FLEETQ_HOST, when unset) from ./var/fleetq.env when REDIS_URL
 * is not set and the file is usable. A stale file is ignored with a note.
 */
export function cliEnv(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env, path = localStatePath()): NodeJS.ProcessEnv {
  if (redisUrlInEnv(env) || overrides.redisUrl !== undefined) return env;
  const check = checkLocalState(path);
  if (check.status === 'absent') return env;
  if (check.status === 'stale') {
    process.stderr.write(`fleetq: ignoring ${LOCAL_STATE_SHOWN}: ${check.why} (start it again with 'npm start', or set REDIS_URL)\n`);
    return env;
  }
  return { ...env, REDIS_URL: check.state.redisUrl, FLEETQ_HOST: env.FLEETQ_HOST || check.state.host };
}

export function cliConfig(overrides: ConfigOverrides = {}): Config {
  return loadConfig(cliEnv(overrides), overrides);
}

/** Config from the environment and flags alone, ./var/fleetq.env left out (what `fleetq start` decides by). */
export function envConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  return loadConfig(env, overrides);
}

/**
 * Is a Redis set in the environment itself (REDIS_URL, a Cluster or Sentinels)?
 * Then `fleetq start` uses it and looks for no other Redis, and commands ignore ./var/fleetq.env.
 */
export function redisUrlInEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.REDIS_URL || env.FLEETQ_REDIS_CLUSTER_NODES || env.FLEETQ_REDIS_SENTINELS);
}

export interface QueueHandle {
  queue: Queue;
  events?: QueueEvents;
  redis: RedisClient;
  close(): Promise<void>;
}

export async function openQueue(cfg: Config, name: string, withEvents = false): Promise<QueueHandle> {
  const redis = await openRedis(cfg, 'command');
  const queue = new Queue(name, { connection: redis, ...queueOptions(cfg.prefix) });
  let events: QueueEvents | undefined;
  let eventsRedis: RedisClient | undefined;
  if (withEvents) {
    // QueueEvents blocks on XREAD: a worker-role client (BullMQ requires maxRetriesPerRequest: null).
    eventsRedis = connectRedis(cfg, 'worker');
    eventsRedis.on('error', () => {});
    await waitReady(eventsRedis, cfg);
    events = new QueueEvents(name, { connection: eventsRedis, prefix: cfg.prefix });
    await events.waitUntilReady();
  }
  return {
    queue,
    events,
    redis,
    async close() {
      await events?.close().catch(() => {});
      await queue.close().catch(() => {});
      await eventsRedis?.quit().catch(() => {});
      await redis.quit().catch(() => {});
    },
  };
}
