/**
 * Container/systemd entrypoint: a worker for FLEETQ_HOST, configured from the
 * environment only. Same as `fleetq worker`.
 */
import { loadConfig } from '../src/config/load.js';
import { ConfigError } from '../src/lib/errors.js';
import { createLogger } from '../src/lib/log.js';
import { onShutdown } from '../src/lib/shutdown.js';
import { type RunningWorker, runWorker } from '../src/worker/run-worker.js';

let cfg;
try {
  cfg = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`fleetq: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const log = createLogger({ level: cfg.logLevel, host: cfg.host });
let worker: RunningWorker | undefined;
onShutdown(async () => worker?.close(), { log, hardExitMs: cfg.shutdownGraceMs + 20_000 });
worker = await runWorker(cfg, log);
