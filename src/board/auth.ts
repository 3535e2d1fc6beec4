/** HTTP basic auth for the board, and where its credentials come from. */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { NextFunction, Request, Response } from 'express';

export interface Credentials {
  user: string;
  password: string;
  /** Where they came from, for the start-up message (never the password itself). */
  source: string;
}

/** From FLEETQ_BOARD_USER + FLEETQ_BOARD_PASSWORD or FLEETQ_BOARD_PASSWORD_FILE; undefined when none are set. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const user = env.FLEETQ_BOARD_USER || 'admin';
  if (env.FLEETQ_BOARD_PASSWORD) return { user, password: env.FLEETQ_BOARD_PASSWORD, source: 'FLEETQ_BOARD_USER/FLEETQ_BOARD_PASSWORD' };
  if (env.FLEETQ_BOARD_PASSWORD_FILE) {
    let password: string;
    try {
      password = readFileSync(env.FLEETQ_BOARD_PASSWORD_FILE, 'utf8').trim();
    } catch (err) {
      throw new Error(`FLEETQ_BOARD_PASSWORD_FILE: cannot read ${env.FLEETQ_BOARD_PASSWORD_FILE}: ${(err as Error).message}`);
    }
    if (!password) throw new Error(`FLEETQ_BOARD_PASSWORD_FILE: ${env.FLEETQ_BOARD_PASSWORD_FILE} is empty`);
    return { user, password, source: `FLEETQ_BOARD_PASSWORD_FILE (${env.FLEETQ_BOARD_PASSWORD_FILE})` };
  }
  return undefined;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function basicAuth(creds: Credentials) {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization ?? '';
    const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
    if (m) {
      const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i >= 0 && same(decoded.slice(0, i), creds.user) && same(decoded.slice(i + 1), creds.password)) return next();
    }
    res.set('WWW-Authenticate', 'Basic realm="fleetq", charset="UTF-8"').status(401).type('text/plain').send('authentication required\n');
  };
}

export function isLoopback(bind: string): boolean {
  return bind === 'localhost' || bind === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bind);
}
