/** `fleetq worker` and `fleetq start` (worker + embedded Redis when none is configured). */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { ConfigOverrides } from '../../config/load.js';
import { createLogger } from '../../lib/log.js';
import { onShutdown } from '../../lib/shutdown.js';
import { RedisServerMissingError, redisAnswers, startRedisServer, type RedisServer } from '../../redis/redis-server.js';
import { type RunningWorker, runWorker } from '../../worker/run-worker.js';
import { cliConfig } from '../context.js';
import type { RunningBoard } from '../../board/server.js';
import { launchBoard, localCredentials, portFlag } from './board.js';
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

async function startWorker(flags: WorkerFlags, embedded?: RedisServer, boardPort?: number): Promise<void> {
  const cfg = cliConfig({ ...overrides(flags), redisUrl: embedded?.url });
  const log = createLogger({ level: cfg.logLevel, host: cfg.host });
  // Handlers first: a SIGTERM during start-up must still end in an orderly exit.
  let worker: RunningWorker | undefined;
  let board: RunningBoard | undefined;
  onShutdown(
    async () => {
      await board?.close();
      await worker?.close();
      await embedded?.stop();
    },
    { log, hardExitMs: cfg.shutdownGraceMs + 20_000 },
  );
  worker = await runWorker(cfg, log);
  if (boardPort !== undefined) {
    const creds = localCredentials();
    try {
      board = await launchBoard(cfg, { port: boardPort, bind: '127.0.0.1', auth: true }, creds, log);
      if (creds.source.startsWith('a password generated')) process.stderr.write(`fleetq: board login: ${creds.user} / ${creds.password}\n`);
    } catch (err) {
      process.stderr.write(`fleetq: board not started: ${(err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? `port ${boardPort} is in use (use --board-port)` : (err as Error).message}\n`);
    }
  }
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
      .description('run a worker for this host; without REDIS_URL and with nothing on 127.0.0.1:6379, start a private redis-server'),
  )
    .option('--board-port <n>', 'port of the dashboard started next to the worker', portFlag, 3000)
    .option('--no-board', 'do not start the dashboard')
    .action(async (flags: WorkerFlags & { boardPort: number; board: boolean }) => {
    cliConfig(overrides(flags)); // validate before starting anything
    let embedded: RedisServer | undefined;
    // FLEETQ_EMBEDDED_PROBE_PORT exists for tests only (they cannot stop the machine's Redis on 6379).
    const probePort = Number(process.env.FLEETQ_EMBEDDED_PROBE_PORT ?? 6379);
    if (!process.env.REDIS_URL && !(await redisAnswers('127.0.0.1', probePort))) {
      const dir = resolve('var/redis');
      try {
        embedded = await startRedisServer({ dir, appendOnly: true });
      } catch (err) {
        if (err instanceof RedisServerMissingError) {
          throw new UsageError(
            `no Redis at 127.0.0.1:${probePort} and no redis-server on PATH: install one (apt-get install redis-server), run 'docker compose up -d redis', or set REDIS_URL`,
          );
        }
        throw err;
      }
      process.stderr.write(`fleetq: no REDIS_URL and nothing on 127.0.0.1:${probePort}: started redis-server at ${embedded.url} (data in ${dir})\n`);
    }
    try {
      await startWorker(flags, embedded, flags.board ? flags.boardPort : undefined);
    } catch (err) {
      await embedded?.stop();
      throw err;
    }
  });
}
