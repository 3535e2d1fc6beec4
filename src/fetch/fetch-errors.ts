import { AppError } from '../lib/errors.js';

/** Upstream answered with a non-200 status. 4xx (but 408/425/429) is permanent; 5xx is transient. */
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
            ? ' (upstream error: will retry)'
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
