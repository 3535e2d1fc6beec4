/**
 * Starting the board from the CLI, and its credentials: `fleetq board`
 * (commands/board.ts) and `fleetq start` (commands/worker.ts) both use this.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { type CredentialConfig, credentialsFrom, type Credentials, isLoopback } from '../board/auth.js';
import type { RunningBoard } from '../board/server.js';
import type { Config } from '../config/schema.js';
import { flagParser, UsageError } from './usage-error.js';

export const portFlag = flagParser('--port', (v) => {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new Error(`must be a port number 0..65535 (got ${JSON.stringify(v)})`);
  return Number(v);
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
export function boardCredentials(flags: BoardFlags, cfg: CredentialConfig): Credentials | undefined {
  let creds: Credentials | undefined;
  try {
    creds = credentialsFrom(cfg);
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

/** For `fleetq start`: the configured credentials, or a random password generated for this run. */
export function localCredentials(cfg: CredentialConfig): Credentials {
  return credentialsFrom(cfg) ?? { user: 'admin', password: randomBytes(9).toString('base64url'), source: 'a password generated for this run' };
}

export async function launchBoard(cfg: Config, flags: BoardFlags, creds: Credentials | undefined, log: Logger): Promise<RunningBoard> {
  // Loaded on demand: express and Bull Board cost ~15 MB of RSS that a plain worker should not carry.
  const { startBoard } = await import('../board/server.js');
  const board = await startBoard({ cfg, port: flags.port, bind: flags.bind, credentials: creds, readOnly: Boolean(flags.readOnly), log, origin: flags.origin });
  const who = creds ? `user "${creds.user}", credentials from ${creds.source}` : 'NO authentication (--no-auth, loopback only)';
  process.stderr.write(`fleetq: board at ${board.url} (${who}${flags.readOnly ? ', read-only' : ''})\n`);
  log.info({ url: board.url, auth: creds ? creds.source : 'none', readOnly: Boolean(flags.readOnly) }, 'board started');
  return board;
}
