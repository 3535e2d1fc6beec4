/**
 * The whole configuration of fleetq in one zod schema. Pure: no env access here.
 * `ENV_VARS` maps each key to the environment variable that sets it, so errors
 * (and the docker-compose test) can name the variable.
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { parseDuration, parseSize } from '../lib/units.js';

/** Host ids end up in queue names and Redis keys: keep them boring. */
export const HostId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 characters of letters, digits, ".", "_" or "-", starting with a letter or digit');

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** An optional path, made absolute; "" counts as unset. */
const optionalPath = z
  .string()
  .optional()
  .transform((p) => (p ? resolve(p) : undefined));

const positiveInt = z.coerce.number({ error: 'must be a whole number' }).int('must be a whole number').positive('must be at least 1');

/** `host:port` or `[v6]:port` (port 0-65535; 0 = any free port, for tests): split into its parts. */
const hostPort = z.string().transform((v, ctx) => {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: 'must be host:port (e.g. 0.0.0.0:7480, [::]:7480 or peer1.example.net:7480)' });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2])!, port };
});

/** The machine's hostname, reduced to a valid host id. */
export function defaultHostId(): string {
  const h = hostname().split('.')[0]?.replace(/[^A-Za-z0-9._-]/g, '-') || 'localhost';
  return /^[A-Za-z0-9]/.test(h) ? h.slice(0, 63) : `h${h}`.slice(0, 63);
}

/** One `host:port` of a Redis node or sentinel (port 1-65535). */
function redisNode(v: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  return m && port >= 1 && port <= 65535 ? { host: (m[1] ?? m[2])!, port } : undefined;
}

/** `host:port,host:port,…` (Cluster seed nodes, Sentinels): at least one, duplicates dropped. */
const redisNodeList = z.string().transform((v, ctx) => {
  const parts = v.split(',').map((x) => x.trim()).filter(Boolean);
  const nodes = parts.map(redisNode);
  const bad = parts.filter((_, i) => nodes[i] === undefined);
  if (parts.length === 0 || bad.length) {
    ctx.addIssue({ code: 'custom', message: `must be a comma-separated list of host:port (e.g. redis-1:7000,redis-2:7000${bad.length ? `; not host:port: ${bad.map((b) => JSON.stringify(b.slice(0, 60))).join(', ')}` : ''})` });
    return z.NEVER;
  }
  const seen = new Set<string>();
  return nodes.filter((n) => !seen.has(`${n!.host}:${n!.port}`) && seen.add(`${n!.host}:${n!.port}`)) as Array<{ host: string; port: number }>;
});

const onOff = z
  .union([z.boolean(), z.string()])
  .transform((v, ctx) => {
    if (typeof v === 'boolean') return v;
    const s = v.trim().toLowerCase();
    if (['on', 'true', '1', 'yes'].includes(s)) return true;
    if (['off', 'false', '0', 'no'].includes(s)) return false;
    ctx.addIssue({ code: 'custom', message: 'must be on or off' });
    return z.NEVER;
  });

/** REDIS_URL when none is set and no Cluster or Sentinel is configured (redis/target.ts). */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export const ConfigSchema = z.object({
  /**
   * A single Redis (unset: DEFAULT_REDIS_URL, unless Cluster or Sentinel is configured). No credentials
   * in it (a URL is copied into process listings, compose files and logs): FLEETQ_REDIS_USERNAME and
   * FLEETQ_REDIS_PASSWORD_FILE; the only query parameter is `db`.
   */
  redisUrl: z
    .string()
    .refine((v) => /^rediss?:\/\//.test(v), 'must be a redis:// or rediss:// URL')
    .refine((v) => !/^rediss?:\/\/[^/?#]*@/.test(v), 'must not hold credentials (a URL is shown in process listings, compose files and logs): put the password in a file named by FLEETQ_REDIS_PASSWORD_FILE (mode 0600) and an ACL user in FLEETQ_REDIS_USERNAME')
    .refine((v) => {
      const q = v.indexOf('?');
      return q < 0 || [...new URLSearchParams(v.slice(q + 1).split('#')[0]).keys()].every((k) => k === 'db');
    }, 'takes no query parameter but ?db=N (credentials go in FLEETQ_REDIS_USERNAME / FLEETQ_REDIS_PASSWORD_FILE, TLS in rediss:// and FLEETQ_REDIS_TLS_CA_FILE)')
    .optional(),
  /** Redis Cluster: seed nodes (`host:port,…`); the rest of the cluster is discovered from them. */
  redisClusterNodes: redisNodeList.optional(),
  /** Redis Sentinel: the sentinels (`host:port,…`), with redisSentinelName. */
  redisSentinels: redisNodeList.optional(),
  /** The master group name the sentinels monitor (`sentinel monitor <name> …`). */
  redisSentinelName: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_" or "-" (the name in `sentinel monitor <name> …`)')
    .optional(),
  /** Redis ACL user (not a secret); the password is in redisPasswordFile. */
  redisUsername: z
    .string()
    .regex(/^[^\s]{1,128}$/, 'must be 1-128 characters without blanks')
    .optional(),
  /** File (mode 0600) whose first line is the Redis password, for every node (redis/credentials.ts reads it). */
  redisPasswordFile: optionalPath,
  /** File (mode 0600) whose first line is the sentinels' own password (`requirepass` in sentinel.conf), if they have one. */
  redisSentinelPasswordFile: optionalPath,
  /** TLS to Redis: unset = from REDIS_URL's scheme (rediss://); with Cluster or Sentinel, on or off (default off). */
  redisTls: onOff.optional(),
  /** PEM CA bundle that signs the Redis servers' certificates (default: Node's CA store). */
  redisTlsCaFile: optionalPath,
  host: HostId.default(defaultHostId),
  root: z
    .string()
    .min(1)
    .default('./var/cocoon')
    .transform((p) => resolve(p)),
  /**
   * Everything fleetq writes is under `<prefix>:`. fleetq tags its keys for Redis Cluster itself
   * (docs/ARCHITECTURE.md, "Redis keys"); a `{tag}` in the prefix overrides all those tags and puts
   * every key of the fleet in one slot (works, without scale-out). Braces only as one whole, non-empty tag.
   */
  prefix: z
    .string()
    .regex(/^(?=.)[A-Za-z0-9_.-]*(?:\{[A-Za-z0-9_.-]+\})?[A-Za-z0-9_.-]*$/, 'must be letters, digits, "_", ".", "-", with at most one whole {hash-tag} (which puts every key in one Cluster slot)')
    .default('fleetq'),
  concurrency: positiveInt.max(256, 'must be at most 256').default(4),
  restoreConcurrency: positiveInt.max(64, 'must be at most 64').default(2),
  lockTtlMs: duration.pipe(z.number().min(1000, 'must be at least 1s')).default(30_000),
  maxImageSize: size.pipe(z.number().min(4, 'must be at least 4 bytes')).default(20 * 1024 ** 3),
  downloadTimeoutMs: duration.pipe(z.number().positive()).default(30 * 60_000),
  downloadIdleTimeoutMs: duration.pipe(z.number().positive()).default(60_000),
  maxRedirects: z.coerce.number().int().min(0).max(5, 'must be at most 5').default(5),
  /** A download slower than minRate bytes over rateWindowMs is aborted as a stall (slowloris). 0 disables. */
  minRate: size.default(64 * 1024),
  rateWindowMs: duration.pipe(z.number().min(1000, 'must be at least 1s')).default(30_000),
  /**
   * Allowed image destinations: comma-separated origins (https://h:443), hosts (h, *.example.com)
   * or CIDRs (10.0.0.0/8). Unset = any public or private address except the always-refused ones
   * (link-local/metadata, fleetq's own Redis). Parsed by fetch/destination-policy.
   */
  imageAllow: z.string().optional(),
  /**
   * The workers' image credential store: a JSON file (mode 0600) mapping an origin, or origin + path
   * prefix, to request headers (authorization…). Read by fetch/image-auth at worker start only.
   */
  imageAuthFile: optionalPath,
  /** A pull that hit a full store is retried this much later (no attempt used); meanwhile the host takes no pulls. */
  storeFullRetryMs: duration.pipe(z.number().min(1000, 'must be at least 1s')).default(5 * 60_000),
  attempts: positiveInt.max(100).default(5),
  backoffMs: duration.default(5_000),
  jobLockMs: duration.pipe(z.number().min(1000, 'must be at least 1s')).default(30_000),
  stalledIntervalMs: duration.pipe(z.number().min(500, 'must be at least 500ms')).default(30_000),
  shutdownGraceMs: duration.default(30_000),
  tempMaxAgeMs: duration.default(3_600_000),
  qemuImg: z.string().min(1).default('qemu-img'),
  cocoonBin: z.string().min(1).default('cocoon'),
  cocoonTimeoutMs: duration.pipe(z.number().positive()).default(10 * 60_000),
  /** cocoon's own --config file (root_dir in it is overridden by --root-dir = root). */
  cocoonConfig: optionalPath,
  /** cocoon's --run-dir (its default /var/lib/cocoon/run does not follow the root). */
  cocoonRunDir: optionalPath,
  /** cocoon's --log-dir (default /var/log/cocoon). */
  cocoonLogDir: optionalPath,
  heartbeatMs: duration.pipe(z.number().min(100, 'must be at least 100ms')).default(5_000),
  hostDownAfterMs: duration.pipe(z.number().min(500, 'must be at least 500ms')).default(30_000),
  queues: z
    .string()
    .default('images,restores')
    .transform((v, ctx) => {
      const parts = [...new Set(v.split(',').map((x) => x.trim()).filter(Boolean))];
      const bad = parts.filter((x) => x !== 'images' && x !== 'restores');
      if (bad.length || parts.length === 0) {
        ctx.addIssue({ code: 'custom', message: 'must be a comma-separated list of "images" and "restores"' });
        return z.NEVER;
      }
      return parts as Array<'images' | 'restores'>;
    }),
  unsafeLegacyUrlCache: z
    .union([z.boolean(), z.enum(['0', '1', 'true', 'false'])])
    .default(false)
    .transform((v) => v === true || v === '1' || v === 'true'),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** json (one object per line), pretty (human lines), auto (pretty on a TTY, else json). */
  logFormat: z.enum(['json', 'pretty', 'auto'], { error: 'must be json, pretty or auto' }).default('auto'),
  /** When set, each worker serves /metrics and /healthz on this port (127.0.0.1 unless FLEETQ_METRICS_BIND). */
  metricsPort: z.coerce.number({ error: 'must be a port number' }).int().min(0).max(65535).optional(),
  metricsBind: z.string().min(1).default('127.0.0.1'),
  /** Dead letters older than this are dropped (the DLQ is bounded). */
  dlqMaxAgeMs: duration.pipe(z.number().min(60_000, 'must be at least 1m')).default(30 * 86_400_000),
  /** A host without a heartbeat this long is dropped from the registry (`fleetq hosts rm` drops one at once). */
  hostRetentionMs: duration.pipe(z.number().min(60_000, 'must be at least 1m')).default(7 * 86_400_000),
  /** The board's basic-auth user. */
  boardUser: z.string().min(1).default('admin'),
  /** The board's basic-auth password (or boardPasswordFile; board/auth.ts reads the file). */
  boardPassword: z.string().optional(),
  boardPasswordFile: optionalPath,
  /** Tests only: the port `fleetq start` probes for a local Redis before it starts its own (tests cannot stop the machine's 6379). */
  embeddedProbePort: z.coerce.number({ error: 'must be a port number' }).int().min(1).max(65535).default(6379),
  /** NO_COLOR (no-color.org): any non-empty value turns colours off in pretty logs. */
  noColor: z
    .union([z.boolean(), z.string()])
    .default(false)
    .transform((v) => v === true || (typeof v === 'string' && v !== '')),
  /** When set (host:port, [v6]:port), the worker serves its committed blobs to peers there (src/peer/). Off when unset. */
  peerListen: hostPort.optional(),
  /** The address peers reach this host at, put into the host registry; default: the listen address (its bound port). */
  peerAdvertise: hostPort.optional(),
  /** The fleet token peers present (`Authorization: Bearer …`), or peerTokenFile (mode 0600; read by peer/peer-config.ts). */
  peerToken: z.string().min(16, 'must be at least 16 characters').optional(),
  peerTokenFile: optionalPath,
  /** Bytes/s served to peers, all responses together: serving never starves the host's own restores. */
  peerMaxRate: size.pipe(z.number().min(1024, 'must be at least 1K (bytes per second)')).default(100 * 1024 ** 2),
  /** TLS for the peer server: both or neither. */
  peerTlsCert: optionalPath,
  peerTlsKey: optionalPath,
}).superRefine((c, ctx) => {
  if (c.redisClusterNodes && c.redisSentinels) {
    ctx.addIssue({ code: 'custom', path: ['redisClusterNodes'], message: 'FLEETQ_REDIS_CLUSTER_NODES (Redis Cluster) and FLEETQ_REDIS_SENTINELS (Sentinel) select different modes: set one' });
  } else if ((c.redisClusterNodes || c.redisSentinels) && c.redisUrl !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['redisUrl'], message: `is for a single Redis: unset it when ${c.redisClusterNodes ? 'FLEETQ_REDIS_CLUSTER_NODES' : 'FLEETQ_REDIS_SENTINELS'} is set` });
  }
  if (c.redisSentinels && c.redisSentinelName === undefined) {
    ctx.addIssue({ code: 'custom', path: ['redisSentinelName'], message: 'is required when FLEETQ_REDIS_SENTINELS is set: the master group name the sentinels monitor (`sentinel monitor <name> …`)' });
  }
  if (!c.redisSentinels && c.redisSentinelName !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['redisSentinelName'], message: 'needs FLEETQ_REDIS_SENTINELS (the sentinels to ask for that master)' });
  }
  if (!c.redisSentinels && c.redisSentinelPasswordFile !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['redisSentinelPasswordFile'], message: 'needs FLEETQ_REDIS_SENTINELS (it is the sentinels\' own password)' });
  }
  const single = !c.redisClusterNodes && !c.redisSentinels;
  const urlTls = (c.redisUrl ?? DEFAULT_REDIS_URL).startsWith('rediss://');
  if (single && c.redisTls !== undefined && c.redisTls !== urlTls) {
    ctx.addIssue({ code: 'custom', path: ['redisTls'], message: `is ${c.redisTls ? 'on' : 'off'} but REDIS_URL is ${urlTls ? 'rediss:// (TLS)' : 'redis:// (no TLS)'}: for a single Redis, TLS follows the URL's scheme` });
  }
  const tls = single ? urlTls : c.redisTls === true;
  if (c.redisTlsCaFile !== undefined && !tls) {
    ctx.addIssue({ code: 'custom', path: ['redisTlsCaFile'], message: single ? 'needs TLS: use a rediss:// REDIS_URL' : 'needs TLS: set FLEETQ_REDIS_TLS=on' });
  }
  if (c.peerToken !== undefined && c.peerTokenFile !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['peerToken'], message: 'set FLEETQ_PEER_TOKEN or FLEETQ_PEER_TOKEN_FILE, not both' });
  } else if (c.peerListen !== undefined && c.peerToken === undefined && c.peerTokenFile === undefined) {
    ctx.addIssue({ code: 'custom', path: ['peerToken'], message: 'is required when FLEETQ_PEER_LISTEN is set (or FLEETQ_PEER_TOKEN_FILE): peers authenticate with the fleet token' });
  }
  if ((c.peerTlsCert === undefined) !== (c.peerTlsKey === undefined)) {
    ctx.addIssue({ code: 'custom', path: [c.peerTlsCert === undefined ? 'peerTlsCert' : 'peerTlsKey'], message: 'FLEETQ_PEER_TLS_CERT and FLEETQ_PEER_TLS_KEY go together: set both or neither' });
  }
});

export type Config = Readonly<z.output<typeof ConfigSchema>>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** Environment variable for each configuration key. */
export const ENV_VARS = {
  redisUrl: 'REDIS_URL',
  redisClusterNodes: 'FLEETQ_REDIS_CLUSTER_NODES',
  redisSentinels: 'FLEETQ_REDIS_SENTINELS',
  redisSentinelName: 'FLEETQ_REDIS_SENTINEL_NAME',
  redisUsername: 'FLEETQ_REDIS_USERNAME',
  redisPasswordFile: 'FLEETQ_REDIS_PASSWORD_FILE',
  redisSentinelPasswordFile: 'FLEETQ_REDIS_SENTINEL_PASSWORD_FILE',
  redisTls: 'FLEETQ_REDIS_TLS',
  redisTlsCaFile: 'FLEETQ_REDIS_TLS_CA_FILE',
  host: 'FLEETQ_HOST',
  root: 'FLEETQ_ROOT',
  prefix: 'FLEETQ_PREFIX',
  concurrency: 'FLEETQ_CONCURRENCY',
  restoreConcurrency: 'FLEETQ_RESTORE_CONCURRENCY',
  lockTtlMs: 'FLEETQ_LOCK_TTL',
  maxImageSize: 'FLEETQ_MAX_IMAGE_SIZE',
  downloadTimeoutMs: 'FLEETQ_DOWNLOAD_TIMEOUT',
  downloadIdleTimeoutMs: 'FLEETQ_DOWNLOAD_IDLE_TIMEOUT',
  maxRedirects: 'FLEETQ_MAX_REDIRECTS',
  minRate: 'FLEETQ_MIN_RATE',
  rateWindowMs: 'FLEETQ_RATE_WINDOW',
  imageAllow: 'FLEETQ_IMAGE_ALLOW',
  imageAuthFile: 'FLEETQ_IMAGE_AUTH_FILE',
  storeFullRetryMs: 'FLEETQ_STORE_FULL_RETRY',
  attempts: 'FLEETQ_ATTEMPTS',
  backoffMs: 'FLEETQ_BACKOFF',
  jobLockMs: 'FLEETQ_JOB_LOCK',
  stalledIntervalMs: 'FLEETQ_STALLED_INTERVAL',
  shutdownGraceMs: 'FLEETQ_SHUTDOWN_GRACE',
  tempMaxAgeMs: 'FLEETQ_TEMP_MAX_AGE',
  qemuImg: 'FLEETQ_QEMU_IMG',
  cocoonBin: 'FLEETQ_COCOON_BIN',
  cocoonTimeoutMs: 'FLEETQ_COCOON_TIMEOUT',
  cocoonConfig: 'FLEETQ_COCOON_CONFIG',
  cocoonRunDir: 'FLEETQ_COCOON_RUN_DIR',
  cocoonLogDir: 'FLEETQ_COCOON_LOG_DIR',
  heartbeatMs: 'FLEETQ_HEARTBEAT',
  hostDownAfterMs: 'FLEETQ_HOST_DOWN_AFTER',
  queues: 'FLEETQ_QUEUES',
  unsafeLegacyUrlCache: 'FLEETQ_UNSAFE_LEGACY_URL_CACHE',
  logLevel: 'FLEETQ_LOG_LEVEL',
  logFormat: 'FLEETQ_LOG_FORMAT',
  metricsPort: 'FLEETQ_METRICS_PORT',
  metricsBind: 'FLEETQ_METRICS_BIND',
  dlqMaxAgeMs: 'FLEETQ_DLQ_MAX_AGE',
  hostRetentionMs: 'FLEETQ_HOST_RETENTION',
  boardUser: 'FLEETQ_BOARD_USER',
  boardPassword: 'FLEETQ_BOARD_PASSWORD',
  boardPasswordFile: 'FLEETQ_BOARD_PASSWORD_FILE',
  embeddedProbePort: 'FLEETQ_EMBEDDED_PROBE_PORT',
  noColor: 'NO_COLOR',
  peerListen: 'FLEETQ_PEER_LISTEN',
  peerAdvertise: 'FLEETQ_PEER_ADVERTISE',
  peerToken: 'FLEETQ_PEER_TOKEN',
  peerTokenFile: 'FLEETQ_PEER_TOKEN_FILE',
  peerMaxRate: 'FLEETQ_PEER_MAX_RATE',
  peerTlsCert: 'FLEETQ_PEER_TLS_CERT',
  peerTlsKey: 'FLEETQ_PEER_TLS_KEY',
} as const satisfies Record<keyof Config, string>;

/** Keys whose values are secrets: never echoed in a ConfigError (or anywhere else). */
export const SECRET_KEYS: ReadonlySet<keyof Config> = new Set<keyof Config>(['boardPassword', 'peerToken']);

/** Variables fleetq itself does not read but its libraries do (express): still known, so compose files may set them. */
export const EXTRA_ENV_VARS = ['NODE_ENV'] as const;

export const KNOWN_ENV_VARS: ReadonlySet<string> = new Set<string>([...Object.values(ENV_VARS), ...EXTRA_ENV_VARS]);
