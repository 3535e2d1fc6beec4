/**
 * The dashboard: Bull Board at `/` for every host's queues (picked up live as
 * hosts register), behind basic auth; `/healthz` (no auth) and `/metrics`.
 *
 * Held up to the open network (issue 10):
 *   - `--no-auth` answers only to loopback Host names (DNS rebinding): 421;
 *   - failed logins are logged and rate-limited per address: 429 + Retry-After;
 *   - state-changing requests must be same-origin (Sec-Fetch-Site / Origin,
 *     and the XSRF-TOKEN double submit Bull Board's UI speaks): 403;
 *   - read-only mode refuses every write at the API, not only in the UI: 405;
 *   - add / update-data (Duplicate, Edit data, Add job) are refused: 405;
 *     their forms are filled from redacted data and would write it back;
 *   - job payloads are redacted and capped at 64 KiB per field;
 *   - every asset is served from the installed package (no font CDN), under
 *     a CSP that allows no other origin.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { Fleet } from '../ops/fleet.js';
import { boardNaming } from '../queues/names.js';
import { oldestWaitingSeconds } from '../metrics/queue-age.js';
import { basicAuth, type Credentials, loopbackHostOnly } from './auth.js';
import { csrfProtection } from './csrf.js';
import { LoginLimiter } from './login-limiter.js';
import { createMetricsRenderer } from './metrics-endpoint.js';
import { capText, capValue, MAX_JOBS_PER_PAGE, sanitizeResponseBody } from './sanitize.js';
import { prepareOfflineUi } from './ui-assets.js';

export interface BoardOptions {
  cfg: Config;
  port: number;
  bind: string;
  /** undefined = no auth (only allowed on loopback; checked by the caller). */
  credentials?: Credentials | undefined;
  readOnly: boolean;
  log: Logger;
  refreshMs?: number;
  /** The origin operators reach the board at, when a proxy in front rewrites Host (e.g. https://board.example). */
  origin?: string | undefined;
  /** Failed logins per client address before 429 (default 10), and the time to earn them all back (default 60 s). */
  loginAttempts?: number | undefined;
  loginWindowMs?: number | undefined;
}

export interface RunningBoard {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Routes that write what operators see as job data: their forms are filled from the redacted view. */
const NO_HAND_WRITES = new Set(['/api/queues/:queueName/add', '/api/queues/:queueName/:jobId/update-data']);
export const HAND_WRITE_REFUSAL =
  'fleetq jobs come from producers (fleetq enqueue, prewarm, the library); the board does not add jobs or edit job data: what it shows is redacted, and writing it back would break the job. Retry, promote or remove the job instead.';

/** The page may load nothing from any other origin (fonts included) and may not be framed. */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // Bull Board's template and theme use inline <style> and style attributes.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function securityHeaders(_req: Request, res: Response, next: NextFunction) {
  res.set({
    'Content-Security-Policy': CSP,
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'same-origin',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  });
  next();
}

export async function startBoard(opts: BoardOptions): Promise<RunningBoard> {
  const ui = await prepareOfflineUi();
  if (ui.removed.length) opts.log.debug({ removed: ui.removed }, 'board: external references removed from the UI template');
  let fleet: Fleet;
  try {
    fleet = await Fleet.open(opts.cfg, 'service'); // reconnects by itself after a failover
    // A Sentinel client that ioredis ended after a failover and that connects again (redis/sentinel-client.ts).
    fleet.redis.on('revive', (tries: number) => opts.log.warn({ tries }, 'board: Sentinel client ended without being closed; reconnecting'));
  } catch (err) {
    await ui.cleanup();
    throw err;
  }
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath('/');
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: {
      uiBasePath: ui.uiBasePath,
      // The overview, like the sidebar, groups queues by host (board names are `<host>:<queue>`, queues/names.ts).
      uiConfig: { boardTitle: `fleetq${opts.readOnly ? ' (read-only)' : ''}`, overview: { groupByDelimiter: true } },
      handlerHooks: {
        before: ({ route, request }) => {
          if (NO_HAND_WRITES.has(route)) return { allow: false, status: 405, errorKey: 'ERRORS.FORBIDDEN', message: HAND_WRITE_REFUSAL };
          // The server only enforces a minimum; a huge page would read every job of a state from Redis.
          const q = request.query as Record<string, unknown> | undefined;
          if (q && typeof q.jobsPerPage === 'string' && Number(q.jobsPerPage) > MAX_JOBS_PER_PAGE) q.jobsPerPage = String(MAX_JOBS_PER_PAGE);
          return undefined;
        },
        after: ({ route }, result) => ({ ...result, body: sanitizeResponseBody(route, result.body) as never }),
      },
    },
  });

  // Board name (`<host>:<queue>`, queues/names.ts boardNaming) → queue name, for the queues on the board.
  const shown = new Map<string, string>();
  // The host view: each queue's description says whether its host is up and how old its oldest waiting job is.
  const descriptions = new Map<string, string>();
  const sync = async () => {
    const hosts = await fleet.hosts();
    const refs = fleet.queuesFor(hosts.map((h) => h.host));
    const now = Date.now();
    for (const h of hosts) {
      for (const ref of fleet.queuesFor([h.host])) {
        const oldest = await oldestWaitingSeconds(fleet.redis, ref.queue, now).catch(() => undefined);
        const seen = Math.max(0, Math.round((now - h.lastSeen) / 1000));
        const store = h.health === 'ok' ? '' : `, store ${h.health}`;
        const waiting = oldest === undefined ? '' : oldest > 0 ? `, oldest waiting ${formatAge(oldest)}` : ', nothing waiting';
        descriptions.set(boardNaming(ref.kind, ref.host).name, `${ref.kind} on ${ref.host}: host ${h.state} (seen ${formatAge(seen)} ago)${store}${waiting}`);
      }
    }
    // A host dropped from the registry (`fleetq hosts rm`, retention) leaves the board too.
    const current = new Set(refs.map((ref) => boardNaming(ref.kind, ref.host).name));
    for (const [name, queue] of shown) {
      if (current.has(name)) continue;
      board.removeQueue(name);
      shown.delete(name);
      opts.log.info({ queue }, 'board: queue removed (host no longer registered)');
    }
    for (const ref of refs) {
      // One mapping: the sidebar groups by host (split on ":", which no host id or queue name contains).
      const naming = boardNaming(ref.kind, ref.host);
      if (shown.has(naming.name)) continue;
      const adapter = new BullMQAdapter(ref.queue, { readOnlyMode: opts.readOnly, description: `${ref.kind} on ${ref.host}`, ...naming.adapterOptions });
      adapter.getDescription = () => descriptions.get(naming.name) ?? `${ref.kind} on ${ref.host}`;
      // Redacted and capped at 64 KiB per field (the after hook does the rest: failed reasons, stacks, logs, flows, schedulers).
      adapter.setFormatter('data', (d: unknown) => capValue(d));
      adapter.setFormatter('returnValue', (d: unknown) => capValue(d));
      adapter.setFormatter('progress', (d: unknown) => (typeof d === 'number' ? d : capValue(d)));
      adapter.setFormatter('name', (j: { name?: unknown }) => String(capText(typeof j.name === 'string' ? j.name : '')));
      board.addQueue(adapter);
      shown.set(naming.name, ref.name);
      opts.log.info({ queue: ref.name }, 'board: queue added');
    }
  };
  try {
    await sync();
  } catch (err) {
    await fleet.close();
    await ui.cleanup();
    throw err;
  }
  const timer = setInterval(() => sync().catch((err) => opts.log.warn({ err: (err as Error).message }, 'board: host sync failed')), opts.refreshMs ?? 3000);
  timer.unref();

  const renderMetrics = createMetricsRenderer(fleet);
  let listeningPort = 0;
  const app = express();
  app.disable('x-powered-by');
  if (!opts.credentials) app.use(loopbackHostOnly(() => listeningPort));
  app.use(securityHeaders);
  app.get('/healthz', async (_req, res) => {
    try {
      await Promise.race([fleet.redis.ping(), new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), 1000))]);
      res.status(200).json({ status: 'ok' });
    } catch (err) {
      res.status(503).json({ status: 'unavailable', error: `redis: ${(err as Error).message}` });
    }
  });
  if (opts.credentials) {
    const limiter = new LoginLimiter({ attempts: opts.loginAttempts, windowMs: opts.loginWindowMs });
    app.use(basicAuth(opts.credentials, { log: opts.log, limiter }));
  }
  app.get('/metrics', async (_req, res) => {
    try {
      const m = await renderMetrics();
      res.type(m.contentType).send(m.body);
    } catch (err) {
      res.status(503).type('text/plain').send(`metrics unavailable: ${(err as Error).message}\n`);
    }
  });
  if (opts.readOnly) {
    // Belt and braces: Bull Board's readOnlyMode answers 405 for its own write routes; refuse any write here first.
    app.use((req, res, next) => {
      if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
      res.status(405).json({ error: 'the board is read-only' });
    });
  }
  app.use(
    csrfProtection({
      origin: opts.origin,
      onRefused: (req, reason) => opts.log.warn({ method: req.method, path: req.path.slice(0, 200), client: req.socket.remoteAddress, reason }, 'board: cross-site request refused'),
    }),
  );
  app.use('/', serverAdapter.getRouter());

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(opts.port, opts.bind);
    s.once('listening', () => resolve(s));
    s.once('error', reject);
  }).catch(async (err) => {
    clearInterval(timer);
    await fleet.close();
    await ui.cleanup();
    throw err;
  }) as Server;
  const port = (server.address() as AddressInfo).port;
  listeningPort = port;
  const host = opts.bind.includes(':') ? `[${opts.bind}]` : opts.bind;
  return {
    url: `http://${host}:${port}/`,
    port,
    async close() {
      clearInterval(timer);
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await fleet.close();
      await ui.cleanup();
    },
  };
}

/** 42s, 7m, 3h, 2d: the board's host view. */
function formatAge(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}
