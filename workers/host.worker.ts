/**
 * The per-host worker: consumes `images-{<host>}` and `restores-{<host>}` for
 * FLEETQ_HOST, configured from the environment only (README, "Configuration").
 * The image's CMD, docker-compose's worker services, `npm run worker` and
 * systemd units run it as `node dist/workers/host.worker.js`
 * (flag: src/worker/node-flags.ts). `fleetq worker` runs the same code
 * (src/worker/host-worker.ts), with flags and ./var/fleetq.env on top.
 * Exit codes as the CLI's: 2 for a bad setting, 1 when it cannot start,
 * 0 after an orderly shutdown (SIGTERM/SIGINT).
 */
import { EXIT } from '../src/cli/exit-codes.js';
import { loadConfig } from '../src/config/load.js';
import { messageWithSettings } from '../src/config/setting-hint.js';
import { ConfigError } from '../src/lib/errors.js';
import { redactUrl } from '../src/lib/redact.js';
import { startHostWorker } from '../src/worker/host-worker.js';

try {
  await startHostWorker(loadConfig());
} catch (err) {
  process.stderr.write(`fleetq: ${redactUrl(err instanceof Error ? messageWithSettings(err) : String(err))}\n`);
  process.exit(err instanceof ConfigError ? EXIT.USAGE : EXIT.FAILED);
}
