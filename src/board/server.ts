/**
 * The dashboard: Bull Board at `/` for every host's queues (picked up live as
 * hosts register), behind basic auth; `/healthz` (no auth) and `/metrics`.
 * Read-only mode refuses every write at the API, not only in the UI.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import express from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { redactDeep } from '../lib/redact.js';
import { Fleet } from '../ops/fleet.js';
import { basicAuth, type Credentials } from './auth.js';
import { createMetricsRenderer } from './metrics-endpoint.js';

export interface BoardOptions {
  cfg: Config;
  port: number;
  bind: string;
  /** undefined = no auth (only allowed on loopback; checked by the caller). */
  credentials?: Credentials | undefined;
  readOnly: boolean;
  log: Logger;
  refreshMs?: number;
}

export interface RunningBoard {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startBoard(opts: BoardOptions): Promise<RunningBoard> {
  const fleet = await Fleet.open(opts.cfg);
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath('/');
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: `fleetq${opts.readOnly ? ' (read-only)' : ''}` } },
  });

  const shown = new Set<string>();
  const sync = async () => {
    const hosts = await fleet.hosts();
    for (const ref of fleet.queuesFor(hosts.map((h) => h.host))) {
      if (shown.has(ref.name)) continue;
      const adapter = new BullMQAdapter(ref.queue, { readOnlyMode: opts.readOnly, description: `${ref.kind} on ${ref.host}` });
      adapter.setFormatter('data', (d: unknown) => redactDeep(d));
      adapter.setFormatter('returnValue', (d: unknown) => redactDeep(d));
      board.addQueue(adapter);
      shown.add(ref.name);
      opts.log.info({ queue: ref.name }, 'board: queue added');
    }
  };
  await sync();
  const timer = setInterval(() => sync().catch((err) => opts.log.warn({ err: (err as Error).message }, 'board: host sync failed')), opts.refreshMs ?? 3000);
  timer.unref();

  const renderMetrics = createMetricsRenderer(fleet);
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', async (_req, res) => {
    try {
      await Promise.race([fleet.redis.ping(), new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), 1000))]);
      res.status(200).json({ status: 'ok' });
    } catch (err) {
      res.status(503).json({ status: 'unavailable', error: `redis: ${(err as Error).message}` });
    }
  });
  if (opts.credentials) app.use(basicAuth(opts.credentials));
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
  app.use('/', serverAdapter.getRouter());

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(opts.port, opts.bind);
    s.once('listening', () => resolve(s));
    s.once('error', reject);
  }).catch(async (err) => {
    clearInterval(timer);
    await fleet.close();
    throw err;
  }) as Server;
  const port = (server.address() as AddressInfo).port;
  const host = opts.bind.includes(':') ? `[${opts.bind}]` : opts.bind;
  return {
    url: `http://${host}:${port}/`,
    port,
    async close() {
      clearInterval(timer);
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await fleet.close();
    },
  };
}
