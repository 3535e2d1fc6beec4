/**
 * Failed-login limiter for the board's basic auth: one token bucket per client
 * address. Every wrong password costs a token; with the bucket empty, requests
 * that carry credentials get 429 + Retry-After *before* the password is
 * checked, so guessing stops. Tokens come back one per `windowMs / attempts`,
 * so a locked-out operator is back in within seconds, and a correct password
 * costs nothing.
 *
 * Why not express-rate-limit: it counts requests and then un-counts the
 * "successful" ones from the response status, which cannot tell a wrong
 * password (what we limit) from the 401 challenge every browser gets first,
 * or from a 404/405 of an authenticated operator; and it would be a new
 * runtime dependency for ~60 lines. Memory is bounded: full buckets are
 * dropped, and at most `maxClients` addresses are tracked (oldest evicted).
 */
import { isIPv6 } from 'node:net';

export interface LoginLimiterOptions {
  /** Failed logins allowed in a burst per client address. */
  attempts?: number;
  /** Time for an empty bucket to fill up again. */
  windowMs?: number;
  maxClients?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** A 429 for this address was logged since its last failure (one log line per lockout). */
  lockoutLogged: boolean;
}

export type LimitVerdict = { allowed: true } | { allowed: false; retryAfterS: number; firstRefusal: boolean };

export class LoginLimiter {
  readonly attempts: number;
  readonly windowMs: number;
  private readonly maxClients: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(opts: LoginLimiterOptions = {}) {
    this.attempts = opts.attempts ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
    this.maxClients = opts.maxClients ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** IPv6 clients are keyed by their /64: one host usually owns a whole /64 and could rotate through it. */
  static clientKey(address: string | undefined): string {
    const a = (address ?? 'unknown').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
    if (!isIPv6(a)) return a;
    const [head = '', tail = ''] = a.split('::');
    const left = head ? head.split(':') : [];
    const right = tail ? tail.split(':') : [];
    const groups = a.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
    return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
  }

  private refill(key: string): Bucket | undefined {
    const b = this.buckets.get(key);
    if (!b) return undefined;
    const t = this.now();
    b.tokens = Math.min(this.attempts, b.tokens + ((t - b.at) * this.attempts) / this.windowMs);
    b.at = t;
    if (b.tokens >= this.attempts) {
      this.buckets.delete(key);
      return undefined;
    }
    return b;
  }

  /** May this client try a password now? */
  check(key: string): LimitVerdict {
    const b = this.refill(key);
    if (!b || b.tokens >= 1) return { allowed: true };
    const retryAfterS = Math.max(1, Math.ceil(((1 - b.tokens) * this.windowMs) / this.attempts / 1000));
    const firstRefusal = !b.lockoutLogged;
    b.lockoutLogged = true;
    return { allowed: false, retryAfterS, firstRefusal };
  }

  /** A wrong password: take a token. */
  fail(key: string): void {
    const b = this.refill(key);
    if (b) {
      b.tokens = Math.max(0, b.tokens - 1);
      b.lockoutLogged = false;
      // Map order = least recently failed first.
      this.buckets.delete(key);
      this.buckets.set(key, b);
      return;
    }
    this.buckets.set(key, { tokens: this.attempts - 1, at: this.now(), lockoutLogged: false });
    if (this.buckets.size > this.maxClients) this.buckets.delete(this.buckets.keys().next().value!);
  }

  get size(): number {
    return this.buckets.size;
  }
}
