/**
 * The I/O half of the destination policy: an undici connector that resolves
 * the hostname itself (dns.lookup, all addresses), asks `decideDestination`
 * about every address and hands undici's own connector the first allowed
 * address (hostname replaced by that IP, SNI/Host kept as the name). No socket
 * is created for a refused destination, and DNS cannot be rebound between the
 * check and the connect because the checked IP is what is connected to.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { buildConnector, errors } from 'undici';
import {
  ALLOW_SETTING,
  canonicalIp,
  decideDestination,
  type DestinationPolicy,
  formatDestination,
  REASON_NOT_ALLOWED,
  redisHostsToResolve,
  withRedisAddresses,
} from './destination-policy.js';
import { DestinationRefusedError } from './fetch-errors.js';

export type LookupAll = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

export interface GuardedConnectorOptions {
  policy: DestinationPolicy;
  /** Connect timeout (also bounds the DNS lookup). */
  timeoutMs: number;
  /** For tests; default dns.lookup(hostname, { all: true }). */
  lookup?: LookupAll;
  /** The connector that opens the socket; default undici's buildConnector({ timeout }). */
  connector?: buildConnector.connector;
  /** How long Redis's resolved addresses are reused. */
  redisResolveTtlMs?: number;
}

/** Errors that mean "this address did not work, another one might". */
const TRY_NEXT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EAFNOSUPPORT']);
const MAX_ADDRESSES_TRIED = 4;

const defaultLookup: LookupAll = (hostname) => dnsLookup(hostname, { all: true });

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new errors.ConnectTimeoutError(`${what} timed out after ${ms}ms`)), ms);
    timer.unref?.();
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export function createGuardedConnector(opts: GuardedConnectorOptions): buildConnector.connector {
  const connect = opts.connector ?? buildConnector({ timeout: opts.timeoutMs });
  const lookup = opts.lookup ?? defaultLookup;
  const redisNames = redisHostsToResolve(opts.policy);
  const ttl = opts.redisResolveTtlMs ?? 60_000;
  /** Per Redis host name: its last resolved addresses. */
  const redisCache = new Map<string, { at: number; addresses: string[] }>();
  let resolvedPolicy: DestinationPolicy = opts.policy;

  /** The policy with the Redis endpoints' current addresses (those named by host); stale-but-known beats nothing. */
  const currentPolicy = async (): Promise<DestinationPolicy> => {
    if (redisNames.length === 0) return opts.policy;
    const now = Date.now();
    const stale = redisNames.filter((name) => now - (redisCache.get(name)?.at ?? -Infinity) >= ttl);
    if (stale.length === 0) return resolvedPolicy;
    await Promise.all(
      stale.map(async (name) => {
        try {
          const addrs = await withTimeout(lookup(name), opts.timeoutMs, `DNS lookup of ${name}`);
          redisCache.set(name, { at: Date.now(), addresses: addrs.map((a) => a.address) });
        } catch {
          // Keep the previous answer; without one the name comparison in decideDestination still applies.
        }
      }),
    );
    let p = opts.policy;
    for (const [name, c] of redisCache) p = withRedisAddresses(p, c.addresses, name);
    resolvedPolicy = p;
    return resolvedPolicy;
  };

  const resolveAndCheck = async (o: buildConnector.Options): Promise<string[]> => {
    const hostname = o.hostname.startsWith('[') ? o.hostname.slice(1, -1) : o.hostname;
    const literal = canonicalIp(hostname);
    const [policy, addresses] = await Promise.all([
      currentPolicy(),
      literal ? Promise.resolve([literal]) : withTimeout(lookup(hostname), opts.timeoutMs, `DNS lookup of ${hostname}`).then((r) => r.map((a) => a.address)),
    ]);
    const allowed: string[] = [];
    let refusal: DestinationRefusedError | undefined;
    for (const address of addresses) {
      const d = decideDestination(policy, { protocol: o.protocol, hostname, port: o.port, address });
      if (d.allowed) allowed.push(address);
      else {
        const shown = formatDestination(hostname, o.port, o.protocol);
        refusal ??= new DestinationRefusedError(literal ? shown : `${shown} via ${address}`, d.reason, d.reason === REASON_NOT_ALLOWED ? { settings: [ALLOW_SETTING] } : undefined);
      }
    }
    if (allowed.length === 0) throw refusal ?? new DestinationRefusedError(formatDestination(hostname, o.port, o.protocol), 'no address');
    return allowed.slice(0, MAX_ADDRESSES_TRIED);
  };

  return (o, callback) => {
    resolveAndCheck(o).then(
      (addresses) => {
        const hostname = o.hostname.startsWith('[') ? o.hostname.slice(1, -1) : o.hostname;
        // SNI is a name, never an IP; undici derives it from `host` when servername is unset.
        const servername = o.servername || (isIP(hostname) ? undefined : hostname);
        const attempt = (i: number) => {
          connect({ ...o, hostname: addresses[i]!, ...(servername ? { servername } : {}) }, (err, socket) => {
            if (err && i + 1 < addresses.length && TRY_NEXT.has((err as NodeJS.ErrnoException).code ?? '')) return attempt(i + 1);
            if (err) return callback(err, null);
            callback(null, socket!);
          });
        };
        attempt(0);
      },
      (err: Error) => callback(err, null),
    );
  };
}
