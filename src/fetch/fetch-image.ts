/**
 * HTTP bytes of an image, and nothing else: one GET through the host's undici
 * dispatcher (destination policy, redirects, timeouts), the response framing
 * (Content-Length, chunked or close-delimited), a minimum-rate watchdog, and
 * network errors classified. Where the bytes go is the store's business
 * (`store/blob-writer.ts`).
 */
import { type Dispatcher, request } from 'undici';
import type { PullProgress } from '../jobs/contracts/ensure-image.js';
import { AppError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';
import { formatBytes } from '../lib/units.js';
import { DownloadStalledError, DownloadTimeoutError, HttpStatusError, NetworkError, RangeResponseError, TruncatedBodyError } from './fetch-errors.js';
import { releaseReadBuffers } from './read-ring.js';

export interface FetchImageOptions {
  url: string;
  dispatcher: Dispatcher;
  /** Whole-download deadline (FLEETQ_DOWNLOAD_TIMEOUT). */
  totalTimeoutMs: number;
  /** Abort when fewer than `minRate` bytes arrive in any `rateWindowMs` (FLEETQ_MIN_RATE / FLEETQ_RATE_WINDOW); 0 = off. */
  minRate: number;
  rateWindowMs: number;
  signal?: AbortSignal | undefined;
  /** At most once per `progressIntervalMs` while bytes arrive, and once at the end. */
  onProgress?: ((p: PullProgressReport) => void) | undefined;
  /** Once as the body passes 25, 50 and 75 % of a known Content-Length (job-log milestones). */
  onMilestone?: ((percent: Milestone, p: PullProgressReport) => void) | undefined;
  progressIntervalMs?: number;
  userAgent?: string | undefined;
  /**
   * Credential headers for this URL from the worker's store (`fetch/image-auth.ts`). Sent to the
   * URL's origin only: the dispatcher's redirect interceptor drops them on a hop to another origin.
   */
  headers?: Readonly<Record<string, string>> | undefined;
  /**
   * Resume: ask for the bytes from this offset on (`Range: bytes=<n>-`). A 206
   * must say `Content-Range: bytes <n>-<total-1>/<total>` with the matching
   * Content-Length; a 200 (a server that ignores Range) is the whole body, and
   * its first n bytes are skipped — unless `partialOnly`, then it is a
   * RangeResponseError. Either way `chunks()` yields the bytes from n on.
   */
  rangeStart?: number | undefined;
  partialOnly?: boolean | undefined;
}

/**
 * A pull's progress as the job reports it. `progress` is 0–100 (whole percent) for
 * Bull Board's ring, from `bytes` of `total`; it stays 0 while the total is
 * unknown (no Content-Length: chunked or close-delimited), where `bytes` and
 * `rate` still move; the last report, once the body has ended, has
 * `total = bytes` and 100. `rate` is bytes per second since the response began.
 */
export type PullProgressReport = PullProgress;

export type Milestone = 25 | 50 | 75;
const MILESTONES: readonly Milestone[] = [25, 50, 75];

/** `rateBytes`: the bytes this response moved (a resumed one starts at an offset); default `bytes`. */
export function progressReport(bytes: number, total: number | null, elapsedMs: number, rateBytes = bytes): PullProgressReport {
  const progress = total === null ? 0 : total <= 0 ? 100 : Math.min(100, Math.floor((bytes * 100) / total));
  return { progress, bytes, total, rate: Math.round(rateBytes / Math.max(elapsedMs / 1000, 0.001)) };
}

/** How the response says where its body ends. `close`: only by closing the connection — a cut body looks complete. */
export type Framing = 'content-length' | 'chunked' | 'close';

export interface ImageResponse {
  /** The URL with secrets redacted, for messages. */
  shownUrl: string;
  /** The bytes `chunks()` will yield (from `start` on), when the response says. */
  declaredLength: number | null;
  /** The whole body's size (from Content-Range, or Content-Length of a 200), when known. */
  totalLength: number | null;
  /** The offset of the first byte `chunks()` yields (`rangeStart`, else 0). */
  start: number;
  /** 206: the server honoured the Range; 200: the whole body (a prefix is skipped when resuming). */
  status: 200 | 206;
  framing: Framing;
  /** The body, chunk by chunk; errors come out classified (NetworkError, TruncatedBodyError, …). */
  chunks(): AsyncGenerator<Buffer>;
  /** Stop reading (the store refused the body). */
  destroy(): void;
  /**
   * The caller has hashed and written every chunk before `chunk`: their socket
   * read buffers may be reused (`read-ring.ts`). Never call it for bytes still held.
   */
  release(chunk: Uint8Array): void;
}

export async function fetchImage(opts: FetchImageOptions): Promise<ImageResponse> {
  const shownUrl = redactUrl(opts.url);
  const start = opts.rangeStart ?? 0;
  const deadline = AbortSignal.timeout(opts.totalTimeoutMs);
  const stall = new AbortController();
  const signals = [deadline, stall.signal, ...(opts.signal ? [opts.signal] : [])];
  const signal = AbortSignal.any(signals);
  const classify = (err: unknown) => classifyFetchError(err, opts, deadline, stall.signal, shownUrl);

  let res: Dispatcher.ResponseData;
  try {
    res = await request(opts.url, {
      method: 'GET',
      dispatcher: opts.dispatcher,
      signal,
      headers: {
        ...opts.headers,
        'user-agent': opts.userAgent ?? 'fleetq',
        'accept-encoding': 'identity',
        ...(start > 0 ? { range: `bytes=${start}-` } : {}),
      },
    });
  } catch (err) {
    throw classify(err);
  }
  const refuse = async (err: Error): Promise<never> => {
    await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
    throw err;
  };
  const status = res.statusCode;
  if (status !== 200 && !(status === 206 && start > 0)) await refuse(new HttpStatusError(status, shownUrl));
  const lengthHeader = res.headers['content-length'];
  const contentLength = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
  let declaredLength = contentLength;
  let totalLength = contentLength;
  let skip = 0;
  if (status === 206) {
    const cr = parseContentRange(res.headers['content-range']);
    if (!cr || cr.start !== start || cr.total === null || cr.end !== cr.total - 1 || (contentLength !== null && contentLength !== cr.end - cr.start + 1)) {
      await refuse(new RangeResponseError(`${shownUrl} answered Range bytes=${start}- with Content-Range ${JSON.stringify(String(res.headers['content-range'] ?? ''))} and Content-Length ${contentLength ?? 'none'}: not the rest of the body`));
    }
    totalLength = cr!.total;
    declaredLength = cr!.end - cr!.start + 1;
  } else if (start > 0) {
    if (opts.partialOnly) await refuse(new RangeResponseError(`${shownUrl} ignored Range bytes=${start}- (HTTP 200)`));
    if (contentLength !== null && contentLength <= start) await refuse(new RangeResponseError(`${shownUrl} answered Range bytes=${start}- with the whole body of ${contentLength} bytes: shorter than what was already received`));
    skip = start;
    declaredLength = contentLength === null ? null : contentLength - start;
  }
  const te = String(res.headers['transfer-encoding'] ?? '').toLowerCase();
  const framing: Framing = contentLength !== null ? 'content-length' : te.includes('chunked') ? 'chunked' : 'close';
  const body = res.body;

  async function* chunks(): AsyncGenerator<Buffer> {
    let bytes = 0; // of this response's body, skipped prefix included
    let toSkip = skip;
    let windowBytes = 0;
    const started = Date.now();
    let lastProgress = 0;
    const interval = opts.progressIntervalMs ?? 1000;
    // Progress and milestones count from the start of the whole body (a resumed pull goes on from its offset).
    const report = (now: number) => progressReport(start + bytes - skip, totalLength, now - started, bytes);
    // Milestones: only with a known, non-zero length; the next one's byte count, checked per chunk.
    let milestone = opts.onMilestone && totalLength ? 0 : MILESTONES.length;
    const milestoneBytes = (i: number) => Math.ceil((totalLength! * MILESTONES[i]!) / 100);
    while (milestone < MILESTONES.length && start >= milestoneBytes(milestone)) milestone++; // passed before this response
    // Slowloris: one byte now and then keeps the idle timer happy; the rate window does not.
    const watchdog =
      opts.minRate > 0
        ? setInterval(() => {
            if (windowBytes < opts.minRate) {
              stall.abort(new DownloadStalledError(`download of ${shownUrl} moved ${formatBytes(windowBytes)} in ${opts.rateWindowMs / 1000}s, under the minimum ${formatBytes(opts.minRate)}: stalled`, { settings: ['minRate', 'rateWindowMs'] }));
            }
            windowBytes = 0;
          }, opts.rateWindowMs)
        : undefined;
    watchdog?.unref();
    try {
      for await (const raw of body as AsyncIterable<Buffer>) {
        bytes += raw.length;
        windowBytes += raw.length;
        let chunk = raw;
        if (toSkip > 0) {
          // A server that ignored Range: drop what was already received.
          const n = Math.min(toSkip, chunk.length);
          toSkip -= n;
          if (n === chunk.length) continue;
          chunk = chunk.subarray(n);
        }
        yield chunk;
        const now = Date.now();
        if (opts.onProgress && now - lastProgress >= interval) {
          lastProgress = now;
          opts.onProgress(report(now));
        }
        while (milestone < MILESTONES.length && start + bytes - skip >= milestoneBytes(milestone)) {
          opts.onMilestone!(MILESTONES[milestone++]!, report(now));
        }
      }
      if (contentLength !== null && bytes !== contentLength) {
        throw new TruncatedBodyError(`body of ${shownUrl} ended after ${bytes} of ${contentLength} bytes`);
      }
      if (toSkip > 0) throw new TruncatedBodyError(`body of ${shownUrl} ended after ${bytes} bytes, before the ${skip} already received`);
      // The body is complete: a total unknown until now is what arrived.
      const end = Date.now();
      opts.onProgress?.(progressReport(start + bytes - skip, totalLength ?? start + bytes - skip, end - started, bytes));
    } catch (err) {
      body.destroy();
      // undici reports a server's close before Content-Length bytes as a socket error ("other side closed"): a cut body.
      if (contentLength !== null && bytes < contentLength && (err as { code?: string }).code === 'UND_ERR_SOCKET') throw new TruncatedBodyError(`body of ${shownUrl} ended after ${bytes} of ${contentLength} bytes`, { cause: err });
      throw classify(err);
    } finally {
      if (watchdog) clearInterval(watchdog);
    }
  }

  return { shownUrl, declaredLength, totalLength, start, status: status as 200 | 206, framing, chunks, destroy: () => body.destroy(), release: releaseReadBuffers };
}

/** `Content-Range: bytes a-b/total` (total may be `*`); undefined when absent or malformed. */
export function parseContentRange(v: string | string[] | undefined): { start: number; end: number; total: number | null } | undefined {
  const m = typeof v === 'string' ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim()) : null;
  if (!m) return undefined;
  const [a, b] = [Number(m[1]), Number(m[2])];
  const total = m[3] === '*' ? null : Number(m[3]);
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b < a || (total !== null && (!Number.isSafeInteger(total) || b >= total))) return undefined;
  return { start: a, end: b, total };
}

function classifyFetchError(err: unknown, opts: FetchImageOptions, deadline: AbortSignal, stall: AbortSignal, url: string): unknown {
  if (opts.signal?.aborted) return opts.signal.reason ?? err;
  if (stall.aborted) return stall.reason;
  if (err instanceof AppError) return err;
  if (deadline.aborted) {
    return new DownloadTimeoutError(`download of ${url} did not finish within ${opts.totalTimeoutMs / 1000}s`, { cause: err, settings: ['downloadTimeoutMs'] });
  }
  const code = (err as { code?: string }).code ?? '';
  const message = (err as Error).message ?? String(err);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new DownloadTimeoutError(`no data from ${url} within the idle timeout: ${message}`, { cause: err, settings: ['downloadIdleTimeoutMs'] });
  }
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return new TruncatedBodyError(`body of ${url} was truncated: ${message}`, { cause: err });
  }
  return new NetworkError(`network error fetching ${url}: ${code ? `${code} ` : ''}${message}`, { cause: err });
}
