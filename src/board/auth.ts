/** HTTP basic auth for the board, and where its credentials come from. */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import { type Config, ENV_VARS } from '../config/schema.js';
import { LoginLimiter } from './login-limiter.js';

export interface Credentials {
  user: string;
  password: string;
  /** Where they came from, for the start-up message (never the password itself). */
  source: string;
}

/** The board's credential settings (FLEETQ_BOARD_USER, FLEETQ_BOARD_PASSWORD, FLEETQ_BOARD_PASSWORD_FILE). */
export type CredentialConfig = Pick<Config, 'boardUser' | 'boardPassword' | 'boardPasswordFile'>;

/** From the password or the password file; undefined when neither is set. */
export function credentialsFrom(cfg: CredentialConfig): Credentials | undefined {
  const user = cfg.boardUser;
  if (cfg.boardPassword) return { user, password: cfg.boardPassword, source: `${ENV_VARS.boardUser}/${ENV_VARS.boardPassword}` };
  const file = cfg.boardPasswordFile;
  if (file) {
    let password: string;
    try {
      password = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new Error(`${ENV_VARS.boardPasswordFile}: cannot read ${file}: ${(err as Error).message}`);
    }
    if (!password) throw new Error(`${ENV_VARS.boardPasswordFile}: ${file} is empty`);
    return { user, password, source: `${ENV_VARS.boardPasswordFile} (${file})` };
  }
  return undefined;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface BasicAuthOptions {
  log: Logger;
  limiter?: LoginLimiter;
}

/**
 * Basic auth with failed logins logged (user name and client address, never
 * the password) and rate-limited per client address (429 + Retry-After).
 * A request without credentials is the browser's first step (it gets the
 * challenge) and is neither counted nor logged.
 */
export function basicAuth(creds: Credentials, opts: BasicAuthOptions) {
  const limiter = opts.limiter ?? new LoginLimiter();
  const challenge = (res: Response) =>
    res.set('WWW-Authenticate', 'Basic realm="fleetq", charset="UTF-8"').status(401).type('text/plain').send('authentication required\n');
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    if (header === undefined) return challenge(res);
    const client = req.socket.remoteAddress ?? 'unknown';
    const key = LoginLimiter.clientKey(client);
    const verdict = limiter.check(key);
    if (!verdict.allowed) {
      if (verdict.firstRefusal) opts.log.warn({ client, retryAfterS: verdict.retryAfterS }, 'board: too many failed logins from this address: refusing logins for now');
      res.set('Retry-After', String(verdict.retryAfterS)).status(429).type('text/plain').send(`too many failed logins: retry in ${verdict.retryAfterS}s\n`);
      return;
    }
    const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
    let user: string | undefined;
    if (m) {
      const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i >= 0) {
        user = decoded.slice(0, i);
        if (same(user, creds.user) && same(decoded.slice(i + 1), creds.password)) return next();
      }
    }
    limiter.fail(key);
    // The user name is bounded and JSON-escaped by pino; the password is never read into the log.
    opts.log.warn({ user: user === undefined ? null : user.slice(0, 64), client, method: req.method, path: req.path.slice(0, 200) }, 'board: failed login');
    challenge(res);
  };
}

export function isLoopback(bind: string): boolean {
  return bind === 'localhost' || bind === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bind);
}

/**
 * `--no-auth` is only safe while every request really is for the loopback
 * board: a page on any web site can point its own DNS name at 127.0.0.1
 * (DNS rebinding), and its requests then carry that name in `Host`. Only
 * loopback names with the board's port are served; the rest get 421.
 */
export function loopbackHostOnly(port: () => number) {
  return (req: Request, res: Response, next: NextFunction) => {
    const host = (req.headers.host ?? '').toLowerCase();
    const m = /^(\[::1\]|localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d+)$/.exec(host);
    if (m && Number(m[2]) === port()) return next();
    res.status(421).type('text/plain').send('misdirected request: this board (--no-auth) answers only to 127.0.0.1, localhost or [::1] with its port\n');
  };
}
