import { AppError, type AppErrorOptions, errorKind } from '../lib/errors.js';

/**
 * Upstream answered with a non-200 status. 4xx (but 408/425/429) is permanent; 5xx is transient.
 * The message never promises a retry: it becomes the job's failed reason, which is
 * also the final word after the last attempt (how many were used is said by whoever reports it).
 */
export class HttpStatusError extends AppError {
  readonly code = 'E_HTTP_STATUS' as const;
  readonly permanent: boolean;
  constructor(
    readonly statusCode: number,
    url: string,
  ) {
    const hint =
      statusCode === 404 || statusCode === 410
        ? ' (image not found: check the URL)'
        : statusCode === 401 || statusCode === 403
          ? ' (access denied: check credentials)'
          : statusCode >= 500
            ? ' (upstream server error)'
            : '';
    super(`GET ${url} answered HTTP ${statusCode}${hint}`);
    this.permanent = statusCode >= 400 && statusCode < 500 && ![408, 425, 429].includes(statusCode);
  }
}

/** Connection refused/reset, DNS, TLS, socket closed mid-body. Transient. */
export class NetworkError extends errorKind('E_NETWORK', false) {}

/** A resumed GET (`Range: bytes=n-`) got something other than the rest of the body. Transient. */
export class RangeResponseError extends errorKind('E_RANGE_RESPONSE', false) {}

/** The body ended before Content-Length bytes arrived. Transient. */
export class TruncatedBodyError extends errorKind('E_TRUNCATED', false) {}

/** No response or no body progress in time, or the whole download took too long. Transient. */
export class DownloadTimeoutError extends errorKind('E_TIMEOUT', false) {}

/** Fewer than FLEETQ_MIN_RATE bytes in FLEETQ_RATE_WINDOW (a slowloris or a dying link). Transient. */
export class DownloadStalledError extends errorKind('E_STALLED', false) {}

/**
 * The destination (first URL or a redirect hop) is refused by the destination
 * policy (FLEETQ_IMAGE_ALLOW, link-local/metadata, fleetq's own Redis). Decided
 * before any socket is opened, so the message cannot tell an open port from a
 * closed one. Permanent.
 */
export class DestinationRefusedError extends errorKind('E_DESTINATION_REFUSED', true) {
  constructor(
    /** host:port as requested (plus the resolved address when the host is a name). */
    readonly destination: string,
    readonly reason: string,
    options?: AppErrorOptions,
  ) {
    super(`destination refused by policy: ${destination} (${reason})`, options);
  }
}

/** A redirect that must not be followed: non-http(s) target, a loop, or too many hops. Permanent. */
export class RedirectError extends errorKind('E_REDIRECT', true) {}
