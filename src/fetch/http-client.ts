/** The one undici dispatcher of a process: keep-alive pool, timeouts, bounded redirects. */
import { Agent, type Dispatcher, interceptors } from 'undici';

export interface HttpClientOptions {
  idleTimeoutMs: number;
  maxRedirects: number;
}

export function createHttpClient(opts: HttpClientOptions): Dispatcher {
  const agent = new Agent({
    connect: { timeout: opts.idleTimeoutMs },
    headersTimeout: opts.idleTimeoutMs,
    bodyTimeout: opts.idleTimeoutMs,
  });
  return opts.maxRedirects > 0 ? agent.compose(interceptors.redirect({ maxRedirections: opts.maxRedirects })) : agent;
}
