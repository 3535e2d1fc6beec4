/**
 * The peer blob server: `GET|HEAD /blobs/sha256:<64 hex>` and nothing else.
 *
 *   - every request must carry the fleet token (`Authorization: Bearer …`),
 *     else 401 with WWW-Authenticate — before anything else is looked at;
 *   - the path is parsed with `Digest` before any file is touched; any other
 *     path (index, listing, traversal, encoded dots, a blob file name) is 404;
 *   - only what the BlobSource has (verified committed blobs, downloads in
 *     progress) is served, with Content-Length, Accept-Ranges and single
 *     `Range` requests (206/416); a download in progress is sent as it is
 *     written, and cut short if it is aborted;
 *   - every body goes through one RateLimiter shared by all responses;
 *   - at most `maxStreams` GET responses stream at once (FLEETQ_PEER_MAX_STREAMS):
 *     beyond that a GET is answered 503 with Retry-After and a plain-text
 *     reason, before any file is opened, so the receiver tries another holder
 *     (a restore wave fans out as a tree: each holder feeds only as many
 *     receivers as its rate keeps at a WAN pull's pace). A slot is taken
 *     synchronously when the request is accepted and given back when its
 *     response is over (sent, failed or aborted by the receiver); HEAD takes
 *     none (no body);
 *   - the number of streaming responses (the serving load) is reported on
 *     change, and a digest for which a request was turned away is reported
 *     (`onFreed`) when a slot frees, so the hosts waiting for it can look again.
 *
 * HTTP, or HTTPS when a certificate and key are given. Requests are never
 * logged with their headers (the token).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { Digest } from '../lib/digest.js';
import { errorMessage } from '../lib/errors.js';
import type { BlobSource } from './blob-source.js';
import { tokenChecker } from './peer-token.js';
import { decideRange } from './range.js';
import { RateLimiter } from './rate-limiter.js';

export const BLOB_PATH_PREFIX = '/blobs/';
/**
 * Bytes the server may send ahead of its rate (the token bucket's depth). 1 MiB (10 ms at the default
 * 100 MiB/s): a timer that fires a few ms late on a busy host is not lost budget, so a stream behind a
 * download in progress keeps its share (with 64 KiB, 0.6 ms, the receivers of a wave fell further behind).
 */
export const RATE_BURST = 1024 * 1024;
/** The Retry-After of a busy answer (s); receivers look for another holder at once and come back no sooner. */
export const BUSY_RETRY_AFTER_S = 1;

export interface BlobServerOptions {
  host: string;
  port: number;
  token: string;
  /** Bytes/s across all responses. */
  maxRate: number;
  /** GET responses streaming at once; more are answered 503 (busy). */
  maxStreams: number;
  tls?: { cert: Buffer; key: Buffer } | undefined;
  source: BlobSource;
  log: Logger;
  /** Called with the number of streaming blob responses whenever it changes. */
  onLoad?: ((open: number) => void) | undefined;
  /** A slot freed after a request for `digest` was turned away (busy): once per digest and freeing. */
  onFreed?: ((digest: Digest) => void) | undefined;
}

export interface BlobServer {
  /** The bound address (port resolved when 0 was asked). */
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /** Bytes sent in bodies so far (for tests and metrics). */
  bytesServed(): number;
  /** GET responses streaming now, and the most there ever were at once. */
  streams(): number;
  peakStreams(): number;
  /** GETs answered 503 (busy) so far. */
  busyAnswers(): number;
  close(): Promise<void>;
}

class Throttle extends Transform {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly signal: AbortSignal,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.limiter.take(chunk.length, this.signal).then(() => cb(null, chunk), cb);
  }
}

export async function startBlobServer(o: BlobServerOptions): Promise<BlobServer> {
  const authorized = tokenChecker(o.token);
  const limiter = new RateLimiter(o.maxRate, RATE_BURST);
  let served = 0;
  let open = 0;
  let peak = 0;
  let busy = 0;
  /** Digests for which a request was turned away since a slot last freed. */
  const refused = new Map<string, Digest>();

  /** A stream slot, taken now (synchronously: the count is exact), or undefined when all are taken. */
  const takeSlot = (): { release(): void } | undefined => {
    if (open >= o.maxStreams) return undefined;
    open++;
    peak = Math.max(peak, open);
    o.onLoad?.(open);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        open--;
        o.onLoad?.(open);
        const waiting = [...refused.values()];
        refused.clear();
        for (const d of waiting) o.onFreed?.(d);
      },
    };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (!authorized(req.headers.authorization)) {
      res.writeHead(401, { 'WWW-Authenticate': 'Bearer realm="fleetq-peer"', 'Content-Length': 0 }).end();
      return;
    }
    const url = req.url ?? '';
    const digest = url.startsWith(BLOB_PATH_PREFIX) ? Digest.from(url.slice(BLOB_PATH_PREFIX.length)) : undefined;
    if (!digest) {
      res.writeHead(404, { 'Content-Length': 0 }).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Length': 0 }).end();
      return;
    }
    const slot = req.method === 'GET' ? takeSlot() : undefined;
    if (req.method === 'GET' && !slot) {
      busy++;
      refused.set(digest.hex, digest);
      o.log.debug({ digest: digest.value, streams: open, maxStreams: o.maxStreams }, 'peer: busy, blob request turned away');
      const body = `busy: this peer streams at most ${o.maxStreams} blob response${o.maxStreams === 1 ? '' : 's'} at once (FLEETQ_PEER_MAX_STREAMS); fetch from another holder or retry later\n`;
      res.writeHead(503, { 'Retry-After': String(BUSY_RETRY_AFTER_S), 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' }).end(body);
      return;
    }
    try {
      await serveBlob(req, res, digest);
    } finally {
      slot?.release();
    }
  };

  const serveBlob = async (req: IncomingMessage, res: ServerResponse, digest: Digest) => {
    const blob = await o.source.open(digest);
    if (!blob) {
      res.writeHead(404, { 'Content-Length': 0 }).end();
      return;
    }
    try {
      const range = decideRange(req.headers.range, blob.size);
      if (range.kind === 'unsatisfiable') {
        res.writeHead(416, { 'Content-Range': `bytes */${blob.size}`, 'Accept-Ranges': 'bytes', 'Content-Length': 0 }).end();
        return;
      }
      const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, blob.size - 1];
      const headers: Record<string, string | number> = {
        'Content-Type': 'application/octet-stream',
        'Content-Length': end - start + 1,
        'Accept-Ranges': 'bytes',
        'Cache-Control': 'no-store',
      };
      if (range.kind === 'partial') headers['Content-Range'] = `bytes ${start}-${end}/${blob.size}`;
      res.writeHead(range.kind === 'partial' ? 206 : 200, headers);
      o.log.debug({ digest: digest.value, from: blob.kind, start, end, size: blob.size, method: req.method, streams: open }, 'peer: serving blob');
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const gone = new AbortController();
      res.once('close', () => gone.abort());
      const count = new Transform({
        transform(chunk: Buffer, _e, cb) {
          served += chunk.length;
          cb(null, chunk);
        },
      });
      await pipeline(blob.stream(start, end), new Throttle(limiter, gone.signal), count, res).catch((err) => {
        if (!gone.signal.aborted) o.log.debug({ digest: digest.value, err: errorMessage(err) }, 'peer: blob response failed');
        res.destroy();
      });
    } finally {
      await blob.close().catch(() => {});
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err) => {
      o.log.warn({ err: errorMessage(err) }, 'peer: request failed');
      if (!res.headersSent) res.writeHead(500, { 'Content-Length': 0 }).end();
      else res.destroy();
    });
  };
  const server: Server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, onRequest) : createHttpServer(onRequest);
  server.headersTimeout = 10_000;
  server.requestTimeout = 0; // bodies are long and throttled; idle sockets still time out (keepAliveTimeout)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    host: o.host,
    port: addr.port,
    tls: o.tls !== undefined,
    bytesServed: () => served,
    streams: () => open,
    peakStreams: () => peak,
    busyAnswers: () => busy,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
