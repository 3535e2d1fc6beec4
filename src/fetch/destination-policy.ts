/**
 * Where may an image download connect? Pure decision logic (no DNS, no
 * sockets): the guarded connector (guarded-connector.ts) resolves the name,
 * asks `decideDestination` for every address and connects only to an allowed
 * one, so the verdict is reached before any socket to the destination exists.
 *
 * Always refused, whatever FLEETQ_IMAGE_ALLOW says:
 *  - link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, their
 *    IPv4-mapped forms, fd00:ec2::254, Alibaba 100.100.100.200, Azure 168.63.129.16);
 *  - fleetq's own Redis: host:port of REDIS_URL, or of every Cluster seed node
 *    (FLEETQ_REDIS_CLUSTER_NODES) or sentinel (FLEETQ_REDIS_SENTINELS). When one
 *    is on a loopback host, every loopback alias (127.0.0.0/8, ::1), the
 *    unspecified address (0.0.0.0, ::) and this machine's own interface
 *    addresses count as that host. (Cluster nodes not listed as seeds, and a
 *    Sentinel group's data nodes, are only known once connected: not covered.)
 *
 * FLEETQ_IMAGE_ALLOW (optional, comma-separated) narrows the rest. Entries:
 *  - origin  `https://img.example.com`, `http://127.0.0.1:8080`: scheme + hostname + port of the URL;
 *  - host    `img.example.com`, `127.0.0.1`: the URL's hostname, any port;
 *  - wildcard `*.example.com`: any subdomain of example.com (not example.com itself);
 *  - CIDR    `10.0.0.0/8`, `fd00::/8`, `127.0.0.1/32`: the resolved address actually connected to.
 * Empty or unset = no allow list (anything not always-refused may be fetched).
 */
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ConfigError } from '../lib/errors.js';

/** The config key of the allow-list (the worker shows its variable). */
export const ALLOW_SETTING = 'imageAllow';

export type AllowEntry =
  | { readonly kind: 'origin'; readonly text: string; readonly protocol: 'http:' | 'https:'; readonly hostname: string; readonly port: number }
  | { readonly kind: 'host'; readonly text: string; readonly hostname: string }
  | { readonly kind: 'wildcard'; readonly text: string; readonly suffix: string }
  | { readonly kind: 'cidr'; readonly text: string; readonly network: string; readonly prefix: number; readonly list: BlockList };

export interface RedisTarget {
  /** Hostname or IP of REDIS_URL, normalised (lower case, no brackets). */
  readonly host: string;
  readonly port: number;
  /** The Redis host is this machine (loopback / unspecified / "localhost"). */
  readonly loopback: boolean;
  /** Addresses Redis is known to live at (the IP literal, or what its name resolved to). */
  readonly addresses: readonly string[];
  /** Every address that reaches Redis's host (addresses + loopback aliases when loopback). */
  readonly sameHost: BlockList;
}

export interface DestinationPolicy {
  /** Parsed FLEETQ_IMAGE_ALLOW; undefined = no allow list. */
  readonly allow: readonly AllowEntry[] | undefined;
  /** fleetq's own Redis endpoints (empty: none known). */
  readonly redis: readonly RedisTarget[];
  /** This machine's interface addresses (count as loopback when Redis is local). */
  readonly localAddresses: readonly string[];
}

export interface Destination {
  /** "http:" or "https:" (the trailing colon is optional). */
  protocol: string;
  /** The URL's hostname (IPv6 with or without brackets). */
  hostname: string;
  /** "" or undefined = the scheme's default port. */
  port: number | string | undefined;
  /** The IP address that would be connected to. */
  address: string;
}

export type Decision = { allowed: true } | { allowed: false; reason: string };

export const REASON_METADATA = 'link-local/metadata address';
export const REASON_REDIS = "fleetq's own Redis";
export const REASON_NOT_ALLOWED = 'not in the image allow-list';

const METADATA = new BlockList();
METADATA.addSubnet('169.254.0.0', 16, 'ipv4'); // link-local; AWS/GCP/Azure/OCI/DO metadata at .169.254
METADATA.addSubnet('fe80::', 10, 'ipv6'); // IPv6 link-local
METADATA.addSubnet('::ffff:169.254.0.0', 112, 'ipv6'); // IPv4-mapped link-local (BlockList also maps, belt and braces)
METADATA.addSubnet('64:ff9b::a9fe:0', 112, 'ipv6'); // NAT64 form of 169.254.0.0/16
METADATA.addAddress('fd00:ec2::254', 'ipv6'); // AWS IMDS over IPv6
METADATA.addAddress('100.100.100.200', 'ipv4'); // Alibaba Cloud metadata
METADATA.addAddress('168.63.129.16', 'ipv4'); // Azure WireServer

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addSubnet('0.0.0.0', 8, 'ipv4'); // "this host": connecting to 0.0.0.0 reaches local listeners
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addAddress('::', 'ipv6');

function family(ip: string): 'ipv4' | 'ipv6' | undefined {
  const f = isIP(ip);
  return f === 4 ? 'ipv4' : f === 6 ? 'ipv6' : undefined;
}

function check(list: BlockList, ip: string): boolean {
  const f = family(ip);
  return f ? list.check(ip, f) : false;
}

/** Lower case, no brackets, no trailing dot; IP literals in canonical form (IPv4-mapped IPv6 → dotted IPv4). */
export function normalizeHost(hostname: string): string {
  let h = hostname.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return canonicalIp(h) ?? h;
}

/** Canonical text of an IP literal, or undefined when `ip` is not one. */
export function canonicalIp(ip: string): string | undefined {
  const f = isIP(ip);
  if (f === 4) return ip;
  if (f !== 6) return undefined;
  let h = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    h = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return h;
}

function defaultPort(protocol: string): number {
  return protocol === 'https:' ? 443 : 80;
}

function badEntry(entry: string, why: string): ConfigError {
  return new ConfigError(
    `invalid image allow-list entry ${JSON.stringify(entry)}: ${why} ` +
      '(entries are origins like https://img.example.com, hosts like img.example.com or *.example.com, or CIDRs like 10.0.0.0/8)',
    undefined,
    { settings: [ALLOW_SETTING] },
  );
}

/** A bare hostname (no port, path, credentials), normalised; undefined when `text` is not one. */
function parseHostname(text: string): string | undefined {
  if (!/^[A-Za-z0-9._\-\u0080-\uffff]+$/.test(text)) return undefined;
  let url: URL;
  try {
    url = new URL(`http://${text}/`);
  } catch {
    return undefined;
  }
  if (url.host !== url.hostname || url.pathname !== '/' || url.username || url.password) return undefined;
  const h = normalizeHost(url.hostname);
  return h && !h.startsWith('.') && !h.includes('..') ? h : undefined;
}

function parseEntry(entry: string): AllowEntry {
  if (entry.includes('://')) {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw badEntry(entry, 'not a valid URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badEntry(entry, `scheme ${url.protocol} is not http: or https:`);
    if (url.username || url.password) throw badEntry(entry, 'an origin must not contain credentials');
    if (url.pathname !== '/' || url.search || url.hash || /^[a-z]+:\/\/[^/]+\/./i.test(entry)) {
      throw badEntry(entry, 'an origin is scheme://host[:port] with no path, query or fragment');
    }
    if (!url.hostname) throw badEntry(entry, 'no host');
    return {
      kind: 'origin',
      text: entry,
      protocol: url.protocol,
      hostname: normalizeHost(url.hostname),
      port: url.port ? Number(url.port) : defaultPort(url.protocol),
    };
  }
  if (entry.includes('/')) {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(entry);
    const addr = m?.[1];
    const f = addr ? family(addr) : undefined;
    if (!m || !addr || !f) throw badEntry(entry, 'not a CIDR (address/prefix-length)');
    const prefix = Number(m[2]);
    if (prefix > (f === 'ipv4' ? 32 : 128)) throw badEntry(entry, `prefix length /${prefix} is too long for ${f === 'ipv4' ? 'IPv4' : 'IPv6'}`);
    const list = new BlockList();
    list.addSubnet(addr, prefix, f);
    return { kind: 'cidr', text: entry, network: addr, prefix, list };
  }
  const ip = canonicalIp(entry.startsWith('[') && entry.endsWith(']') ? entry.slice(1, -1) : entry);
  if (ip) return { kind: 'host', text: entry, hostname: ip };
  if (entry.startsWith('*.')) {
    const rest = parseHostname(entry.slice(2));
    if (!rest || canonicalIp(rest)) throw badEntry(entry, 'a wildcard is *.domain with a valid domain name');
    return { kind: 'wildcard', text: entry, suffix: `.${rest}` };
  }
  if (entry.includes('*')) throw badEntry(entry, 'a wildcard must be the whole leftmost label (*.example.com)');
  if (entry.includes(':')) throw badEntry(entry, 'a host entry has no port; write an origin (http://host:port) to name a port');
  const host = parseHostname(entry);
  if (!host) throw badEntry(entry, 'not a valid hostname');
  return { kind: 'host', text: entry, hostname: host };
}

/** Parse FLEETQ_IMAGE_ALLOW. Throws ConfigError naming the variable and the first bad entry. */
export function parseAllowList(allow: string | undefined): AllowEntry[] | undefined {
  const entries = (allow ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  return entries.length ? entries.map(parseEntry) : undefined;
}

function localInterfaceAddresses(): string[] {
  try {
    return Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .map((i) => i.address.split('%')[0]!)
      .filter((a) => isIP(a));
  } catch {
    return [];
  }
}

function buildRedisTarget(host: string, port: number, addresses: readonly string[], localAddresses: readonly string[]): RedisTarget {
  const addrs = [...new Set(addresses.map((a) => canonicalIp(a)).filter((a): a is string => !!a))];
  const loopback = host === 'localhost' || host.endsWith('.localhost') || addrs.some((a) => check(LOOPBACK, a)) || localAddresses.includes(host);
  const sameHost = new BlockList();
  for (const a of addrs) sameHost.addAddress(a, family(a)!);
  if (loopback) {
    sameHost.addSubnet('127.0.0.0', 8, 'ipv4');
    sameHost.addSubnet('0.0.0.0', 8, 'ipv4');
    sameHost.addAddress('::1', 'ipv6');
    sameHost.addAddress('::', 'ipv6');
    for (const a of localAddresses) {
      const c = canonicalIp(a);
      if (c) sameHost.addAddress(c, family(c)!);
    }
  }
  return { host, port, loopback, addresses: addrs, sameHost };
}

function redisEndpointTarget(endpoint: { host: string; port: number }, localAddresses: readonly string[]): RedisTarget {
  const host = normalizeHost(endpoint.host || '127.0.0.1');
  const ip = canonicalIp(host);
  return buildRedisTarget(host, endpoint.port, ip ? [ip] : [], localAddresses);
}

function redisUrlEndpoint(redisUrl: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(redisUrl);
  } catch {
    throw new ConfigError('invalid REDIS_URL: not a URL', 'REDIS_URL');
  }
  return { host: url.hostname || '127.0.0.1', port: url.port ? Number(url.port) : 6379 };
}

export interface PolicyOptions {
  /** fleetq's own Redis endpoints (redis/target.ts redisEndpoints): always refused as destinations. */
  redis?: ReadonlyArray<{ host: string; port: number }> | undefined;
  /** The same, as a single REDIS_URL. */
  redisUrl?: string | undefined;
  /** This machine's interface addresses; default: os.networkInterfaces(). */
  localAddresses?: readonly string[] | undefined;
}

export function parseDestinationPolicy(allow: string | undefined, opts: PolicyOptions = {}): DestinationPolicy {
  const localAddresses = opts.localAddresses ?? localInterfaceAddresses();
  const endpoints = [...(opts.redis ?? []), ...(opts.redisUrl ? [redisUrlEndpoint(opts.redisUrl)] : [])];
  return Object.freeze({
    allow: parseAllowList(allow),
    redis: Object.freeze(endpoints.map((e) => redisEndpointTarget(e, localAddresses))),
    localAddresses,
  });
}

/** Redis host names the policy needs resolved (names, not IP literals). */
export function redisHostsToResolve(policy: DestinationPolicy): string[] {
  return [...new Set(policy.redis.filter((r) => !canonicalIp(r.host)).map((r) => r.host))];
}

/** The policy with a Redis host name's resolved addresses added (default: the first name to resolve; the I/O is the caller's). */
export function withRedisAddresses(policy: DestinationPolicy, addresses: readonly string[], host = redisHostsToResolve(policy)[0]): DestinationPolicy {
  if (host === undefined) return policy;
  const redis = policy.redis.map((r) => (r.host === host ? buildRedisTarget(r.host, r.port, [...r.addresses, ...addresses], policy.localAddresses) : r));
  return Object.freeze({ ...policy, redis: Object.freeze(redis) });
}

function matchesEntry(e: AllowEntry, protocol: string, host: string, port: number, address: string): boolean {
  switch (e.kind) {
    case 'origin':
      return e.protocol === protocol && e.hostname === host && e.port === port;
    case 'host':
      return e.hostname === host;
    case 'wildcard':
      return host.length > e.suffix.length && host.endsWith(e.suffix);
    case 'cidr':
      return check(e.list, address);
  }
}

/** May we connect to `address` for a request to protocol://hostname:port? */
export function decideDestination(policy: DestinationPolicy, dest: Destination): Decision {
  const protocol = dest.protocol.endsWith(':') ? dest.protocol : `${dest.protocol}:`;
  if (protocol !== 'http:' && protocol !== 'https:') return { allowed: false, reason: `scheme ${protocol} is not http: or https:` };
  const host = normalizeHost(dest.hostname);
  const port = dest.port === undefined || dest.port === '' ? defaultPort(protocol) : Number(dest.port);
  const address = canonicalIp(dest.address);
  if (!address || !Number.isInteger(port)) return { allowed: false, reason: 'not an IP address' };

  const hostIp = canonicalIp(host);
  if (check(METADATA, address) || (hostIp && check(METADATA, hostIp))) return { allowed: false, reason: REASON_METADATA };

  for (const r of policy.redis) {
    if (port === r.port && (check(r.sameHost, address) || host === r.host || (hostIp !== undefined && check(r.sameHost, hostIp)))) {
      return { allowed: false, reason: REASON_REDIS };
    }
  }

  if (policy.allow && !policy.allow.some((e) => matchesEntry(e, protocol, host, port, address))) {
    return { allowed: false, reason: REASON_NOT_ALLOWED };
  }
  return { allowed: true };
}

/** "host:port" as shown in refusals (IPv6 in brackets, default ports spelled out). */
export function formatDestination(hostname: string, port: number | string | undefined, protocol: string): string {
  const h = normalizeHost(hostname);
  const p = port === undefined || port === '' ? defaultPort(protocol.endsWith(':') ? protocol : `${protocol}:`) : Number(port);
  return `${isIP(h) === 6 ? `[${h}]` : h}:${p}`;
}
