/** `fleetq board`: the dashboard. Refuses to start without credentials unless on loopback with --no-auth. */
import type { Command } from 'commander';
import type { RunningBoard } from '../../board/server.js';
import { createLogger } from '../../lib/log.js';
import { onShutdown } from '../../lib/shutdown.js';
import { type BoardFlags, boardCredentials, launchBoard, portFlag } from '../board-launch.js';
import { cliConfig } from '../context.js';
import { flagParser, UsageError } from '../usage-error.js';

export const originFlag = flagParser('--origin', (v) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`must be an origin such as https://board.example.com (got ${JSON.stringify(v)})`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw new Error(`must be an origin such as https://board.example.com: scheme, host and port only (got ${JSON.stringify(v)})`);
  }
  return u.origin;
});

export function registerBoard(program: Command): void {
  program
    .command('board')
    .description('serve the Bull Board dashboard for every host, /healthz and /metrics')
    .option('--port <n>', 'port to listen on', portFlag, 3000)
    .option('--bind <addr>', 'address to bind', '127.0.0.1')
    .option('--no-auth', 'serve without authentication (loopback --bind only)')
    .option('--read-only', 'refuse every write (retry, remove, clean, pause…) at the API')
    .option('--origin <url>', 'the origin operators open the board at, when a reverse proxy in front rewrites Host (default: the request\'s Host)', originFlag)
    .action(async (flags: BoardFlags) => {
      const cfg = cliConfig();
      const creds = boardCredentials(flags, cfg);
      const log = createLogger({ level: cfg.logLevel, name: 'fleetq-board', format: cfg.logFormat, color: !cfg.noColor });
      let board: RunningBoard;
      try {
        board = await launchBoard(cfg, flags, creds, log);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError(`--port: ${flags.port} is already in use on ${flags.bind}`);
        throw err;
      }
      onShutdown(() => board.close(), { log, hardExitMs: 10_000 });
    });
}
