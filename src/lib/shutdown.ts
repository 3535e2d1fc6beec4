/**
 * Two-stage shutdown: the first SIGTERM/SIGINT runs the graceful path once;
 * a second signal forces exit. A hard-exit backstop timer is unref()'d.
 */
import type { Logger } from 'pino';

export function onShutdown(graceful: (signal: NodeJS.Signals) => Promise<void>, opts: { log: Logger; hardExitMs: number }): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      opts.log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    opts.log.info({ signal }, 'shutting down');
    setTimeout(() => {
      opts.log.error('shutdown did not finish in time: exiting');
      process.exit(1);
    }, opts.hardExitMs).unref();
    graceful(signal).then(
      () => process.exit(0),
      (err) => {
        opts.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
