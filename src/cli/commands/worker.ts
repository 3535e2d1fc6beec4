/**
 * `fleetq worker` and `fleetq start` (worker + board, and an embedded Redis
 * when none is configured).
 *
 * `fleetq start` without REDIS_URL uses 127.0.0.1:6379 when something answers
 * there, else starts redis-server on a free port (data in ./var/redis). Either
 * way it records the choice in ./var/fleetq.env (see ../context.ts), prints
 * the one line a user needs, and removes the file when it stops.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { Redis } from 'ioredis';
import type { ConfigOverrides } from '../../config/load.js';
import { redactUrl } from '../../lib/redact.js';
import { sleep } from '../../lib/shutdown.js';
import { RedisServerMissingError, redisAnswers, startRedisServer, type RedisServer } from '../../redis/redis-server.js';
import { describeRedisTarget, redisTarget } from '../../redis/target.js';
import { startHostWorker } from '../../worker/host-worker.js';
import { checkLocalState, cliConfig, envConfig, type LocalState, LOCAL_STATE_SHOWN, localStatePath, redisUrlInEnv, removeLocalState, writeLocalState } from '../context.js';
import type { RunningBoard } from '../../board/server.js';
import { launchBoard, localCredentials, portFlag } from '../board-launch.js';
import { hostFlag } from '../flags.js';
import { positiveIntFlag, UsageError } from '../usage-error.js';

interface WorkerFlags {
  host?: string;
  root?: string;
  concurrency?: number;
  restoreConcurrency?: number;
}

function overrides(flags: WorkerFlags): ConfigOverrides {
  return { host: flags.host, root: flags.root, concurrency: flags.concurrency, restoreConcurrency: flags.restoreConcurrency };
}

/** What `fleetq start` chose for Redis. */
interface StartRedis {
  /** Set when start chose the Redis (no REDIS_URL): passed to the worker and saved in ./var/fleetq.env. */
  url?: string | undefined;
  embedded?: RedisServer | undefined;
  /** Set before the embedded Redis is stopped on purpose. */
  stopping?: boolean;
}

async function startWorker(flags: WorkerFlags, redis?: StartRedis, boardPort?: number): Promise<void> {
  const cfg = cliConfig({ ...overrides(flags), redisUrl: redis?.url });
  const statePath = localStatePath();
  const embedded = redis?.embedded;
  let board: RunningBoard | undefined;
  // Nothing works without the embedded Redis: if it dies, say so, drop the state file and stop.
  embedded?.process.once('exit', (code, signal) => {
    if (redis?.stopping) return;
    removeLocalState(statePath);
    process.stderr.write(`fleetq: the embedded redis-server exited (${signal ?? `code ${code}`}): stopping\n`);
    process.exit(1);
  });
  const { log } = await startHostWorker(cfg, {
    beforeStop: async () => {
      if (redis) redis.stopping = true;
      await board?.close();
    },
    afterStop: async () => {
      if (redis?.url) removeLocalState(statePath);
      await embedded?.stop();
    },
  });
  if (redis) {
    if (redis.url) {
      writeLocalState(statePath, { redisUrl: redis.url, host: cfg.host, pid: process.pid, redisPid: embedded?.process.pid });
      process.stderr.write(`REDIS_URL=${redis.url} FLEETQ_HOST=${cfg.host} (saved to ${LOCAL_STATE_SHOWN}; fleetq commands in this directory use it)\n`);
    } else {
      const target = redisTarget(cfg);
      const shown = target.mode === 'single' ? `REDIS_URL=${redactUrl(target.url)}` : `Redis: ${describeRedisTarget(target)}`;
      process.stderr.write(`${shown} FLEETQ_HOST=${cfg.host} (from your environment)\n`);
    }
  }
  if (boardPort !== undefined) {
    const creds = localCredentials(cfg);
    try {
      board = await launchBoard(cfg, { port: boardPort, bind: '127.0.0.1', auth: true }, creds, log);
      if (creds.source.startsWith('a password generated')) process.stderr.write(`fleetq: board login: ${creds.user} / ${creds.password}\n`);
    } catch (err) {
      process.stderr.write(`fleetq: board not started: ${(err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? `port ${boardPort} is in use (use --board-port)` : (err as Error).message}\n`);
    }
  }
}

/**
 * A state file whose `fleetq start` is gone (killed, machine crashed). Its
 * redis-server may still run (it has its own process group) and hold
 * ./var/redis: shut it down (AOF flushed) so that a new one can start on the
 * same data, but only if it really is the one serving that directory.
 */
async function retireStaleState(state: LocalState | undefined, redisDir: string): Promise<void> {
  const port = state ? /^redis:\/\/127\.0\.0\.1:(\d+)$/.exec(state.redisUrl)?.[1] : undefined;
  if (port && (await redisAnswers('127.0.0.1', Number(port)))) {
    const r = new Redis(Number(port), '127.0.0.1', { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      const [, dir] = (await r.config('GET', 'dir')) as [string, string];
      if (sameDir(dir, redisDir)) {
        await r.call('SHUTDOWN').catch(() => {}); // the connection drops: that is the answer
        for (let i = 0; i < 100 && (await redisAnswers('127.0.0.1', Number(port))); i++) await sleep(100);
        process.stderr.write(`fleetq: stopped the redis-server an earlier fleetq start (pid ${state!.pid}) left running on ${state!.redisUrl}\n`);
      }
    } catch {
      // not ours, or not answering any more
    } finally {
      r.disconnect();
    }
  }
  removeLocalState(localStatePath(), state?.pid ?? -1);
}

function sameDir(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/** Decide where `fleetq start` gets its Redis when REDIS_URL is not set. */
async function chooseRedis(probePort: number): Promise<StartRedis> {
  const check = checkLocalState(localStatePath(), { ping: false });
  if (check.status === 'usable') {
    throw new UsageError(
      `fleetq start already runs in this directory (pid ${check.state.pid}, Redis at ${check.state.redisUrl}): stop it first, or run 'npx fleetq worker' to add a worker to it`,
    );
  }
  const redisDir = resolve('var/redis');
  if (check.status === 'stale') await retireStaleState(check.state, redisDir);
  if (await redisAnswers('127.0.0.1', probePort)) return { url: `redis://127.0.0.1:${probePort}` };
  let embedded: RedisServer;
  try {
    embedded = await startRedisServer({ dir: redisDir, appendOnly: true, detached: true });
  } catch (err) {
    if (err instanceof RedisServerMissingError) {
      throw new UsageError(
        `no Redis at 127.0.0.1:${probePort} and no redis-server on PATH: install one (apt-get install redis-server), start one with 'docker compose up -d redis-local' (it listens on 127.0.0.1:6379), or set REDIS_URL`,
      );
    }
    throw err;
  }
  process.stderr.write(`fleetq: no REDIS_URL and nothing on 127.0.0.1:${probePort}: started redis-server at ${embedded.url} (data in ${redisDir})\n`);
  return { url: embedded.url, embedded };
}

function workerOptions(cmd: Command): Command {
  return cmd
    .option('--host <id>', "this host's id (FLEETQ_HOST, default: the machine's hostname)", hostFlag)
    .option('--root <dir>', 'cocoon root directory (FLEETQ_ROOT, default ./var/cocoon)')
    .option('--concurrency <n>', 'parallel image pulls (FLEETQ_CONCURRENCY, default 4)', positiveIntFlag('--concurrency'))
    .option('--restore-concurrency <n>', 'parallel restores (FLEETQ_RESTORE_CONCURRENCY, default 2)', positiveIntFlag('--restore-concurrency'));
}

export function registerWorker(program: Command): void {
  workerOptions(program.command('worker').description("consume this host's queues")).action(async (flags: WorkerFlags) => {
    await startWorker(flags);
  });

  workerOptions(
    program
      .command('start')
      .description(
        `run a worker for this host and the board; without REDIS_URL, use 127.0.0.1:6379 or start a private redis-server, and save the choice in ${LOCAL_STATE_SHOWN} for the other commands`,
      ),
  )
    .option('--board-port <n>', 'port of the dashboard started next to the worker', portFlag, 3000)
    .option('--no-board', 'do not start the dashboard')
    .action(async (flags: WorkerFlags & { boardPort: number; board: boolean }) => {
      const cfg = envConfig(overrides(flags)); // validate before starting anything
      // FLEETQ_EMBEDDED_PROBE_PORT (default 6379) exists for tests only: they cannot stop the machine's Redis on 6379.
      const redis: StartRedis = redisUrlInEnv() ? {} : await chooseRedis(cfg.embeddedProbePort);
      try {
        await startWorker(flags, redis, flags.board ? flags.boardPort : undefined);
      } catch (err) {
        redis.stopping = true;
        if (redis.url) removeLocalState(localStatePath());
        await redis.embedded?.stop();
        throw err;
      }
    });
}
