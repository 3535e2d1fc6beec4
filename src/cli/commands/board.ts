/** `fleetq board`: the dashboard. Refuses to start without credentials unless on loopback with --no-auth. */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { credentialsFromEnv, type Credentials, isLoopback } from '../../board/auth.js';
import type { RunningBoard } from '../../board/server.js';
import type { Config } from '../../config/schema.js';
import { createLogger } from '../../lib/log.js';
import { onShutdown } from '../../lib/shutdown.js';
import { cliConfig } from '../context.js';
import { flagParser, UsageError } from '../usage-error.js';

export const portFlag = flagParser('--port', (v) => {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new Error(`must be a port number 0..65535 (got ${JSON.stringify(v)})`);
  return Number(v);
});

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

export interface BoardFlags {
  port: number;
  bind: string;
  auth: boolean;
  readOnly?: boolean;
  /** The origin operators use when a reverse proxy in front rewrites Host (CSRF check). */
  origin?: string;
}

/** Decide credentials; throws a UsageError when the board would be open to the network. */
export function boardCredentials(flags: BoardFlags, env = process.env): Credentials | undefined {
  let creds: Credentials | undefined;
  try {
    creds = credentialsFromEnv(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (!flags.auth) {
    if (!isLoopback(flags.bind)) throw new UsageError(`--no-auth: only allowed when bound to loopback (got --bind ${flags.bind})`);
    return undefined;
  }
  if (!creds) {
    throw new UsageError('the board needs credentials: set FLEETQ_BOARD_USER and FLEETQ_BOARD_PASSWORD (or FLEETQ_BOARD_PASSWORD_FILE), or use --no-auth on a loopback --bind');
  }
  return creds;
}

export async function launchBoard(cfg: Config, flags: BoardFlags, creds: Credentials | undefined, log: Logger): Promise<RunningBoard> {
  // Loaded on demand: express and Bull Board cost ~15 MB of RSS that a plain worker should not carry.
  const { startBoard } = await import('../../board/server.js');
  const board = await startBoard({ cfg, port: flags.port, bind: flags.bind, credentials: creds, readOnly: Boolean(flags.readOnly), log, origin: flags.origin });
  const who = creds ? `user "${creds.user}", credentials from ${creds.source}` : 'NO authentication (--no-auth, loopback only)';
  process.stderr.write(`fleetq: board at ${board.url} (${who}${flags.readOnly ? ', read-only' : ''})\n`);
  log.info({ url: board.url, auth: creds ? creds.source : 'none', readOnly: Boolean(flags.readOnly) }, 'board started');
  return board;
}

/** For `fleetq start`: env credentials, or a random password generated for this run. */
export function localCredentials(env = process.env): Credentials {
  return credentialsFromEnv(env) ?? { user: 'admin', password: randomBytes(9).toString('base64url'), source: 'a password generated for this run' };
}

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
      const creds = boardCredentials(flags);
      const cfg = cliConfig();
      const log = createLogger({ level: cfg.logLevel, name: 'fleetq-board' });
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
