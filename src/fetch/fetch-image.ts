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
import { DownloadStalledError, DownloadTimeoutError, HttpStatusError, NetworkError, TruncatedBodyError } from './fetch-errors.js';
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

export function progressReport(bytes: number, total: number | null, elapsedMs: number): PullProgressReport {
  const progress = total === null ? 0 : total <= 0 ? 100 : Math.min(100, Math.floor((bytes * 100) / total));
  return { progress, bytes, total, rate: Math.round(bytes / Math.max(elapsedMs / 1000, 0.001)) };
}

/** How the response says where its body ends. `close`: only by closing the connection — a cut body looks complete. */
export type Framing = 'content-length' | 'chunked' | 'close';

export interface ImageResponse {
  /** The URL with secrets redacted, for messages. */
  shownUrl: string;
  declaredLength: number | null;
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
      headers: { ...opts.headers, 'user-agent': opts.userAgent ?? 'fleetq', 'accept-encoding': 'identity' },
    });
  } catch (err) {
    throw classify(err);
  }
  if (res.statusCode !== 200) {
    await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
    throw new HttpStatusError(res.statusCode, shownUrl);
  }
  const lengthHeader = res.headers['content-length'];
  const declaredLength = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
  const te = String(res.headers['transfer-encoding'] ?? '').toLowerCase();
  const framing: Framing = declaredLength !== null ? 'content-length' : te.includes('chunked') ? 'chunked' : 'close';
  const body = res.body;

  async function* chunks(): AsyncGenerator<Buffer> {
    let bytes = 0;
    let windowBytes = 0;
    const started = Date.now();
    let lastProgress = 0;
    const interval = opts.progressIntervalMs ?? 1000;
    // Milestones: only with a known, non-zero length; the next one's byte count, checked per chunk.
    let milestone = opts.onMilestone && declaredLength ? 0 : MILESTONES.length;
    const milestoneBytes = (i: number) => Math.ceil((declaredLength! * MILESTONES[i]!) / 100);
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
      for await (const chunk of body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        windowBytes += chunk.length;
        yield chunk;
        const now = Date.now();
        if (opts.onProgress && now - lastProgress >= interval) {
          lastProgress = now;
          opts.onProgress(progressReport(bytes, declaredLength, now - started));
        }
        while (milestone < MILESTONES.length && bytes >= milestoneBytes(milestone)) {
          opts.onMilestone!(MILESTONES[milestone++]!, progressReport(bytes, declaredLength, now - started));
        }
      }
      if (declaredLength !== null && bytes !== declaredLength) {
        throw new TruncatedBodyError(`body of ${shownUrl} ended after ${bytes} of ${declaredLength} bytes`);
      }
      // The body is complete: a total unknown until now is what arrived.
      opts.onProgress?.(progressReport(bytes, declaredLength ?? bytes, Date.now() - started));
    } catch (err) {
      body.destroy();
      // undici reports a server's close before Content-Length bytes as a socket error ("other side closed"): a cut body.
      if (declaredLength !== null && bytes < declaredLength && (err as { code?: string }).code === 'UND_ERR_SOCKET') throw new TruncatedBodyError(`body of ${shownUrl} ended after ${bytes} of ${declaredLength} bytes`, { cause: err });
      throw classify(err);
    } finally {
      if (watchdog) clearInterval(watchdog);
    }
  }

  return { shownUrl, declaredLength, framing, chunks, destroy: () => body.destroy(), release: releaseReadBuffers };
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
