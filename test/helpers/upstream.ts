/**
 * A real HTTP server on loopback that serves image bodies, counts requests
 * per path and misbehaves on demand (status codes, resets, truncation,
 * stalls, HTML, redirects).
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  | { kind: 'status'; status: number }
  | { kind: 'reset'; afterBytes: number }
  | { kind: 'truncate'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number }
  | { kind: 'html' }
  | { kind: 'redirect'; to: string }
  | { kind: 'no-length' }
  /** HTTP/1.1 200 with neither Content-Length nor chunked encoding: the body ends when the connection closes (after `afterBytes`, if given). */
  | { kind: 'close-delimited'; afterBytes?: number };

export interface RouteOptions {
  /** Faults applied to successive requests, one per request; afterwards the body is served normally. */
  faults?: Fault[];
  /** Delay between chunks, to make a download take a while. */
  chunkDelayMs?: number;
  chunkSize?: number;
  contentType?: string;
  /** Wait this long before answering (headers included): a slow origin, so that every client asks before any has a response. */
  headersDelayMs?: number;
  /** Honour `Range: bytes=a-` with 206 and Content-Range (default: ignore Range and send the whole body, as many servers do). */
  ranges?: boolean;
}

interface Route extends RouteOptions {
  body: Buffer;
}

export class Upstream extends EventEmitter {
  private readonly routes = new Map<string, Route>();
  private readonly counts = new Map<string, number>();
  /** The Range header of every GET, per path (undefined: none). */
  readonly ranges = new Map<string, Array<string | undefined>>();
  private readonly sockets = new Set<Socket>();
  private server!: Server;
  port = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Serve `body` at `path` (replacing whatever was there: a re-pushed tag). */
  serve(path: string, body: Buffer, opts: RouteOptions = {}): string {
    this.routes.set(path, { body, ...opts, faults: [...(opts.faults ?? [])] });
    return this.url(path);
  }

  /** Number of GET requests received for `path`. */
  gets(path: string): number {
    return this.counts.get(path) ?? 0;
  }

  totalGets(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const delay = this.routes.get((req.url ?? '/').split('?')[0]!)?.headersDelayMs;
    if (delay) {
      setTimeout(() => this.respond(req, res), delay);
      return;
    }
    this.respond(req, res);
  }

  private respond(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET') {
      this.counts.set(path, (this.counts.get(path) ?? 0) + 1);
      this.ranges.set(path, [...(this.ranges.get(path) ?? []), req.headers.range]);
    }
    this.emit('request', path);
    const route = this.routes.get(path);
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const fault = route.faults?.shift();
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'content-type': 'text/plain' }).end(`status ${fault.status}`);
      return;
    }
    if (fault?.kind === 'redirect') {
      res.writeHead(302, { location: fault.to }).end();
      return;
    }
    if (fault?.kind === 'html') {
      const html = Buffer.from('<!DOCTYPE html><html><body>Please log in</body></html>');
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': html.length }).end(html);
      return;
    }
    if (fault?.kind === 'close-delimited') {
      const socket = res.socket!;
      const body = route.body.subarray(0, fault.afterBytes ?? route.body.length);
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: ${route.contentType ?? 'application/octet-stream'}\r\nConnection: close\r\n\r\n`);
      socket.end(body);
      return;
    }
    const headers: Record<string, string | number> = { 'content-type': route.contentType ?? 'application/octet-stream' };
    const m = route.ranges ? /^bytes=(\d+)-$/.exec(req.headers.range ?? '') : null;
    if (m && Number(m[1]) < route.body.length) {
      const from = Number(m[1]);
      headers['content-length'] = route.body.length - from;
      headers['content-range'] = `bytes ${from}-${route.body.length - 1}/${route.body.length}`;
      res.writeHead(206, headers);
      void this.stream({ ...route, body: route.body.subarray(from) }, res, fault);
      return;
    }
    if (m) {
      // As a real server (RFC 9110 §15.5.17): a range starting at or past the end is 416, not the whole body.
      res.writeHead(416, { 'content-range': `bytes */${route.body.length}`, 'content-length': 0 });
      res.end();
      return;
    }
    if (fault?.kind !== 'no-length') headers['content-length'] = route.body.length;
    res.writeHead(200, headers);
    void this.stream(route, res, fault);
  }

  private async stream(route: Route, res: ServerResponse, fault: Fault | undefined): Promise<void> {
    const chunk = route.chunkSize ?? 64 * 1024;
    const limit = fault && 'afterBytes' in fault && fault.afterBytes !== undefined ? Math.min(fault.afterBytes, route.body.length) : route.body.length;
    let sent = 0;
    while (sent < limit) {
      if (res.destroyed) return;
      const end = Math.min(sent + chunk, limit);
      const ok = res.write(route.body.subarray(sent, end));
      sent = end;
      this.emit('sent', sent);
      if (!ok) {
        await new Promise<void>((r) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            r();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      if (route.chunkDelayMs) await new Promise((r) => setTimeout(r, route.chunkDelayMs));
    }
    if (fault?.kind === 'reset') {
      res.socket?.resetAndDestroy();
      return;
    }
    if (fault?.kind === 'truncate') {
      res.socket?.end();
      return;
    }
    if (fault?.kind === 'stall') {
      // Send nothing more; the client's idle timeout must fire. The socket is destroyed on stop().
      return;
    }
    res.end();
  }
}

export async function startUpstream(): Promise<Upstream> {
  return new Upstream().start();
}
