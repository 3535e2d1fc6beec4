/**
 * One-pass download: undici stream → sha256 → temp file, with the size cap,
 * body sniffing, progress and abort wired in. On any failure the temp file is
 * removed; on success it is fsynced and its digest verified against the pin.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { type Dispatcher, request } from 'undici';
import type { PullProgress } from '../jobs/contracts/ensure-image.js';
import { AppError } from '../lib/errors.js';
import { redactUrl } from '../lib/redact.js';
import { formatBytes } from '../lib/units.js';
import { removeIfExists } from '../store/fs-atomic.js';
import { SNIFF_BYTES, type Sniffed, sniff } from '../store/sniff.js';
import { BodyRejectedError, DigestMismatchError } from '../store/store-errors.js';
import { DownloadTimeoutError, HttpStatusError, NetworkError, TruncatedBodyError } from './fetch-errors.js';

export interface DownloadOptions {
  url: string;
  tempPath: string;
  dispatcher: Dispatcher;
  maxBytes: number;
  totalTimeoutMs: number;
  /** When set, the body must hash to this digest. */
  expectDigest?: string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: ((p: PullProgress) => void) | undefined;
  progressIntervalMs?: number;
  userAgent?: string;
}

export interface Downloaded {
  tempPath: string;
  digest: string;
  bytes: number;
  sniffed: Sniffed;
}

const WRITE_BATCH = 1024 * 1024;

export async function download(opts: DownloadOptions): Promise<Downloaded> {
  const shownUrl = redactUrl(opts.url);
  const deadline = AbortSignal.timeout(opts.totalTimeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
  const fh = await open(opts.tempPath, 'wx', 0o600);
  let closed = false;
  try {
    const res = await request(opts.url, {
      method: 'GET',
      dispatcher: opts.dispatcher,
      signal,
      headers: { 'user-agent': opts.userAgent ?? 'fleetq', 'accept-encoding': 'identity' },
    });
    if (res.statusCode !== 200) {
      await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
      throw new HttpStatusError(res.statusCode, shownUrl);
    }
    const lengthHeader = res.headers['content-length'];
    const declared = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
    if (declared !== null && declared > opts.maxBytes) {
      res.body.destroy();
      throw new BodyRejectedError(
        `image at ${shownUrl} is ${formatBytes(declared)}, over the ${formatBytes(opts.maxBytes)} cap (FLEETQ_MAX_IMAGE_SIZE)`,
      );
    }

    const hash = createHash('sha256');
    let bytes = 0;
    let sniffed: Sniffed | undefined;
    const head: Buffer[] = [];
    let headLength = 0;
    let pending: Buffer[] = [];
    let pendingLength = 0;
    const started = Date.now();
    const interval = opts.progressIntervalMs ?? 1000;
    let lastProgress = 0;
    const report = (force: boolean) => {
      const now = Date.now();
      if (!opts.onProgress || (!force && now - lastProgress < interval)) return;
      lastProgress = now;
      const secs = Math.max((now - started) / 1000, 0.001);
      opts.onProgress({ bytes, total: declared, rate: Math.round(bytes / secs) });
    };
    const flush = async () => {
      if (pendingLength === 0) return;
      const bufs = pending;
      pending = [];
      pendingLength = 0;
      await fh.writev(bufs);
    };
    const checkHead = (final: boolean) => {
      if (sniffed || (!final && headLength < SNIFF_BYTES)) return;
      sniffed = sniff(Buffer.concat(head, headLength), final ? bytes : Math.max(bytes, declared ?? 0));
      head.length = 0;
      if (sniffed.kind === 'rejected') throw new BodyRejectedError(`rejected body from ${shownUrl}: ${sniffed.reason}`);
    };

    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > opts.maxBytes) {
        res.body.destroy();
        throw new BodyRejectedError(`image at ${shownUrl} exceeds the ${formatBytes(opts.maxBytes)} cap (FLEETQ_MAX_IMAGE_SIZE)`);
      }
      if (!sniffed) {
        head.push(chunk);
        headLength += chunk.length;
        checkHead(false);
      }
      hash.update(chunk);
      pending.push(chunk);
      pendingLength += chunk.length;
      if (pendingLength >= WRITE_BATCH) await flush();
      report(false);
    }
    await flush();
    if (declared !== null && bytes !== declared) {
      throw new TruncatedBodyError(`body of ${shownUrl} ended after ${bytes} of ${declared} bytes`);
    }
    checkHead(true);
    await fh.sync();
    closed = true;
    await fh.close();
    report(true);

    const digest = `sha256:${hash.digest('hex')}`;
    if (opts.expectDigest && digest !== opts.expectDigest) {
      throw new DigestMismatchError(opts.expectDigest, digest, shownUrl);
    }
    return { tempPath: opts.tempPath, digest, bytes, sniffed: sniffed! };
  } catch (err) {
    if (!closed) await fh.close().catch(() => {});
    await removeIfExists(opts.tempPath);
    throw classifyDownloadError(err, opts.signal, deadline, shownUrl, opts.totalTimeoutMs);
  }
}

function classifyDownloadError(err: unknown, outer: AbortSignal | undefined, deadline: AbortSignal, url: string, totalMs: number): unknown {
  if (outer?.aborted) return outer.reason ?? err;
  if (err instanceof AppError) return err;
  if (deadline.aborted) {
    return new DownloadTimeoutError(`download of ${url} did not finish within ${totalMs / 1000}s (FLEETQ_DOWNLOAD_TIMEOUT)`, { cause: err });
  }
  const code = (err as { code?: string }).code ?? '';
  const message = (err as Error).message ?? String(err);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new DownloadTimeoutError(`no data from ${url} within the idle timeout (FLEETQ_DOWNLOAD_IDLE_TIMEOUT): ${message}`, { cause: err });
  }
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return new TruncatedBodyError(`body of ${url} was truncated: ${message}`, { cause: err });
  }
  return new NetworkError(`network error fetching ${url}: ${code ? `${code} ` : ''}${message}`, { cause: err });
}
