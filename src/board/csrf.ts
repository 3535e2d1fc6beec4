/**
 * Cross-site request forgery: a page on another site can make an operator's
 * browser send a form (`text/plain` or urlencoded, no preflight) to the board,
 * and the browser attaches the cached basic-auth credentials (or, with
 * `--no-auth`, needs none). So every state-changing request (anything but
 * GET/HEAD/OPTIONS) must show it comes from the board's own page:
 *
 *   1. `Sec-Fetch-Site`, when the browser sends it, must be `same-origin`
 *      (`same-site` is refused too: another port on the same host is
 *      same-site);
 *   2. `Origin`, when sent, must be the board's origin (`--origin`, or the
 *      request's own `Host`); `Origin: null` is refused;
 *   3. and always: the `X-XSRF-TOKEN` header must equal the `XSRF-TOKEN`
 *      cookie (double submit). The board sets that cookie (random,
 *      SameSite=Strict, readable by the page) and Bull Board's UI copies it
 *      into the header on same-origin requests; this is the recipe Bull
 *      Board documents. A cross-site form can set neither the header nor
 *      (with SameSite=Strict) send the cookie; a cross-origin script cannot
 *      set the header without a CORS preflight, which the board never grants.
 *
 * Scripts (curl) do the same: GET any board page once to get the cookie, then
 * send it back as both cookie and header.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

export const XSRF_COOKIE = 'XSRF-TOKEN';
export const XSRF_HEADER = 'x-xsrf-token';
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface CsrfOptions {
  /** The origin the board is reached at (behind a proxy that rewrites Host); default: the request's Host. */
  origin?: string | undefined;
}

export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0 || part.slice(0, i).trim() !== name) continue;
    const v = part.slice(i + 1).trim();
    try {
      out.push(decodeURIComponent(v));
    } catch {
      out.push(v);
    }
  }
  return out;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && x.length >= 16 && timingSafeEqual(x, y);
}

/** Why the request is refused, or undefined when it is same-origin. */
export function crossSiteReason(req: Request, opts: CsrfOptions = {}): string | undefined {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return `Sec-Fetch-Site: ${String(site).slice(0, 40)}`;
  const origin = req.headers.origin;
  if (origin !== undefined) {
    if (origin === 'null') return 'Origin: null';
    let o: URL;
    try {
      o = new URL(origin);
    } catch {
      return 'unparsable Origin';
    }
    const ok = opts.origin ? o.origin === opts.origin : o.host === (req.headers.host ?? '').toLowerCase();
    if (!ok) return `foreign Origin ${o.origin.slice(0, 100)}`;
  }
  const header = req.headers[XSRF_HEADER];
  if (typeof header !== 'string' || header === '') return `no ${XSRF_HEADER} header`;
  if (!cookieValues(req.headers.cookie, XSRF_COOKIE).some((c) => sameToken(c, header))) return `${XSRF_HEADER} does not match the ${XSRF_COOKIE} cookie`;
  return undefined;
}

/**
 * Hands out the XSRF-TOKEN cookie on safe requests (keeping one the browser
 * already has) and refuses unsafe ones that are not same-origin with 403.
 */
export function csrfProtection(opts: CsrfOptions & { onRefused?: (req: Request, reason: string) => void } = {}) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (SAFE.has(req.method)) {
      if (cookieValues(req.headers.cookie, XSRF_COOKIE).length === 0) {
        res.cookie(XSRF_COOKIE, randomBytes(32).toString('base64url'), { path: '/', sameSite: 'strict', httpOnly: false, secure: req.secure });
      }
      return next();
    }
    const reason = crossSiteReason(req, opts);
    if (reason === undefined) return next();
    opts.onRefused?.(req, reason);
    res.status(403).json({ error: 'cross-site request refused', message: `state-changing requests must come from the board's own page (${reason})` });
  };
}
