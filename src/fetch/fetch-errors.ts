import { AppError } from '../lib/errors.js';

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
export class NetworkError extends AppError {
  readonly code = 'E_NETWORK' as const;
  readonly permanent = false;
}

/** The body ended before Content-Length bytes arrived. Transient. */
export class TruncatedBodyError extends AppError {
  readonly code = 'E_TRUNCATED' as const;
  readonly permanent = false;
}

/** No response or no body progress in time, or the whole download took too long. Transient. */
export class DownloadTimeoutError extends AppError {
  readonly code = 'E_TIMEOUT' as const;
  readonly permanent = false;
}

/** Fewer than FLEETQ_MIN_RATE bytes in FLEETQ_RATE_WINDOW (a slowloris or a dying link). Transient. */
export class DownloadStalledError extends AppError {
  readonly code = 'E_STALLED' as const;
  readonly permanent = false;
}

/**
 * The destination (first URL or a redirect hop) is refused by the destination
 * policy (FLEETQ_IMAGE_ALLOW, link-local/metadata, fleetq's own Redis). Decided
 * before any socket is opened, so the message cannot tell an open port from a
 * closed one. Permanent.
 */
export class DestinationRefusedError extends AppError {
  readonly code = 'E_DESTINATION_REFUSED' as const;
  readonly permanent = true;
  constructor(
    /** host:port as requested (plus the resolved address when the host is a name). */
    readonly destination: string,
    readonly reason: string,
  ) {
    super(`destination refused by policy: ${destination} (${reason})`);
  }
}

/** A redirect that must not be followed: non-http(s) target, a loop, or too many hops. Permanent. */
export class RedirectError extends AppError {
  readonly code = 'E_REDIRECT' as const;
  readonly permanent = true;
}
