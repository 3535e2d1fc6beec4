/**
 * The one undici dispatcher of a process: keep-alive pool, timeouts, a
 * destination policy enforced in the connector (before any socket is opened)
 * and bounded, checked redirects.
 *
 * Redirects: our own small interceptor (`guardedRedirect`) instead of undici's
 * `interceptors.redirect`. undici's passes the 3xx through once the limit is
 * reached (which download.ts would see as a retryable HTTP 302), and reports a
 * non-http(s) Location or a loop as generic InvalidArgumentErrors that would
 * have to be recognised by message text. Ours fails every such case with a
 * permanent RedirectError (E_REDIRECT) and a clear message; each hop is
 * dispatched through the same guarded Agent, so the destination policy checks
 * every hop's resolved address too.
 */
import { Agent, type Dispatcher } from 'undici';
import { redactUrl } from '../lib/redact.js';
import type { DestinationPolicy } from './destination-policy.js';
import { RedirectError } from './fetch-errors.js';
import { createGuardedConnector, type LookupAll } from './guarded-connector.js';
import { AUTH_HEADER_NAMES } from './image-auth.js';
import { createReadRingConnector } from './read-ring.js';

export interface HttpClientOptions {
  idleTimeoutMs: number;
  /** Redirect hops followed at most (0..5); one more is a permanent RedirectError. */
  maxRedirects: number;
  /** Where connections may go (FLEETQ_IMAGE_ALLOW, metadata, fleetq's own Redis). */
  policy: DestinationPolicy;
  /** DNS for tests; default dns.lookup(name, { all: true }). */
  lookup?: LookupAll;
}

export function createHttpClient(opts: HttpClientOptions): Dispatcher {
  const agent = new Agent({
    connect: createGuardedConnector({
      policy: opts.policy,
      timeoutMs: opts.idleTimeoutMs,
      // Plain-http sockets read into reused buffers (fetch/read-ring.ts): a pull's memory stays bounded.
      connector: createReadRingConnector(opts.idleTimeoutMs),
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    }),
    headersTimeout: opts.idleTimeoutMs,
    bodyTimeout: opts.idleTimeoutMs,
  });
  return agent.compose(guardedRedirect(opts.maxRedirects));
}

const REDIRECT_STATUSES = new Set([300, 301, 302, 303, 307, 308]);
/** Dropped on a hop to another origin (scheme, host or port differ): every header the credential store may set, too. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'proxy-authorization', ...AUTH_HEADER_NAMES]);

function shown(url: URL | string): string {
  const s = redactUrl(typeof url === 'string' ? url : url.href);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** Request headers as a flat [name, value, …] list, whatever form they came in. */
function flatHeaders(headers: Dispatcher.DispatchOptions['headers']): string[] {
  const out: string[] = [];
  const push = (k: unknown, v: unknown) => {
    if (v === undefined || v === null) return;
    for (const x of Array.isArray(v) ? v : [v]) out.push(String(k), String(x));
  };
  if (!headers) return out;
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [k, v] of headers as unknown as Array<[string, unknown]>) push(k, v);
    else for (let i = 0; i + 1 < headers.length; i += 2) push(headers[i], headers[i + 1]);
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of headers as Iterable<[string, unknown]>) push(k, v);
  } else {
    for (const [k, v] of Object.entries(headers)) push(k, v);
  }
  return out;
}

function requestUrl(opts: Dispatcher.DispatchOptions): URL {
  const url = new URL(opts.path, opts.origin);
  if (opts.query) for (const [k, v] of Object.entries(opts.query)) url.searchParams.append(k, String(v));
  return url;
}

/**
 * Follow at most `maxRedirects` hops; a non-http(s) Location, a loop or one
 * hop too many is a permanent RedirectError. Relative Locations resolve
 * against the current URL; credentials and cookies are not sent to another
 * origin (and stay dropped for the rest of the chain).
 */
export function guardedRedirect(maxRedirects: number): Dispatcher.DispatchInterceptor {
  return (dispatch) => (opts, handler) => {
    // A streamed body cannot be replayed on the next hop: leave such requests alone (fleetq only GETs).
    if (opts.body != null && typeof opts.body !== 'string' && !(opts.body instanceof Uint8Array)) return dispatch(opts, handler);
    const { maxRedirections: _ignored, ...rest } = opts as Dispatcher.DispatchOptions & { maxRedirections?: number };
    return dispatch(rest, new GuardedRedirectHandler(dispatch, maxRedirects, rest, handler));
  };
}

class GuardedRedirectHandler implements Dispatcher.DispatchHandler {
  private url: URL;
  private readonly start: URL;
  private readonly visited = new Set<string>();
  private hops = 0;
  /** Set while the current response is a redirect we follow: its body is discarded. */
  private next: { url: URL; status: number } | undefined;
  private failed = false;

  constructor(
    private readonly dispatch: Dispatcher.Dispatch,
    private readonly maxRedirects: number,
    private opts: Dispatcher.DispatchOptions,
    private readonly handler: Dispatcher.DispatchHandler,
  ) {
    this.url = requestUrl(opts);
    this.url.hash = '';
    this.start = this.url;
    this.visited.add(this.url.href);
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>[2], socket: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>[3]): void {
    this.handler.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    this.next = undefined;
    const raw = REDIRECT_STATUSES.has(statusCode) ? headers.location : undefined;
    const location = Array.isArray(raw) ? raw[0] : raw;
    if (!location) {
      this.handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
      return;
    }
    const err = this.plan(statusCode, location);
    if (err) {
      this.failed = true;
      controller.abort(err);
    }
  }

  private plan(status: number, location: string): RedirectError | undefined {
    const from = this.url;
    let target: URL;
    try {
      target = new URL(location, from);
    } catch {
      return new RedirectError(`${shown(from)} redirected (HTTP ${status}) to an invalid URL ${JSON.stringify(location.slice(0, 200))}`);
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      return new RedirectError(`${shown(from)} redirected (HTTP ${status}) to ${shown(target)}: only http: and https: redirects are followed`);
    }
    target.hash = '';
    if (this.visited.has(target.href)) {
      return new RedirectError(`redirect loop: ${shown(from)} redirected (HTTP ${status}) back to ${shown(target)}`);
    }
    if (this.hops >= this.maxRedirects) {
      return new RedirectError(
        `too many redirects: ${shown(this.start)} still redirects after ${this.maxRedirects} hop${this.maxRedirects === 1 ? '' : 's'}, the limit (next: ${shown(target)})`,
        { settings: ['maxRedirects'] },
      );
    }
    this.next = { url: target, status };
    return undefined;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.failed || this.next) return; // a redirect's body is ignored
    this.handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    if (this.failed) return;
    const next = this.next;
    if (!next) {
      this.handler.onResponseEnd?.(controller, trailers);
      return;
    }
    this.next = undefined;
    this.hops++;
    this.visited.add(next.url.href);
    const crossOrigin = next.url.origin !== this.url.origin;
    let method = this.opts.method;
    let body = this.opts.body;
    const toGet = (next.status === 303 && method !== 'HEAD') || ((next.status === 301 || next.status === 302) && method === 'POST');
    if (toGet) {
      method = 'GET';
      body = null;
    }
    const flat = flatHeaders(this.opts.headers);
    const headers: string[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const name = flat[i]!.toLowerCase();
      if (name === 'host') continue;
      if (crossOrigin && CREDENTIAL_HEADERS.has(name)) continue;
      if (toGet && name.startsWith('content-')) continue;
      headers.push(flat[i]!, flat[i + 1]!);
    }
    this.url = next.url;
    this.opts = { ...this.opts, origin: next.url.origin, path: `${next.url.pathname}${next.url.search}`, query: undefined, method, body, headers };
    this.dispatch(this.opts, this);
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    this.handler.onResponseError?.(controller, err);
  }
}
