/**
 * One host worker process: its logger, orderly shutdown on SIGTERM/SIGINT
 * (a second signal exits at once), and the worker itself. The per-host entry
 * point (workers/host.worker.ts: the image's CMD, `npm run worker`) and
 * `fleetq worker` / `fleetq start` all run this; they differ only in where
 * the Config comes from and, for `fleetq start`, what stops with the worker.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createLogger } from '../lib/log.js';
import { onShutdown } from '../lib/shutdown.js';
import { type RunningWorker, runWorker } from './run-worker.js';

export interface HostWorkerHooks {
  /** Runs first on shutdown, before the worker stops (`fleetq start`: the board). */
  beforeStop?: () => Promise<void> | void;
  /** Runs once the worker has stopped (`fleetq start`: its state file, the embedded Redis). */
  afterStop?: () => Promise<void> | void;
}

export interface HostWorker {
  worker: RunningWorker;
  log: Logger;
}

export async function startHostWorker(cfg: Config, hooks: HostWorkerHooks = {}): Promise<HostWorker> {
  const log = createLogger({ level: cfg.logLevel, host: cfg.host, format: cfg.logFormat, color: !cfg.noColor });
  // Handlers first: a SIGTERM during start-up must still end in an orderly exit.
  let worker: RunningWorker | undefined;
  onShutdown(
    async () => {
      await hooks.beforeStop?.();
      await worker?.close();
      await hooks.afterStop?.();
    },
    { log, hardExitMs: cfg.shutdownGraceMs + 20_000 },
  );
  worker = await runWorker(cfg, log);
  return { worker, log };
}
