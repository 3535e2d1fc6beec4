/**
 * Publishes this host's cocoon snapshots for placement (`--host auto`): runs
 * `cocoon snapshot ls --format json` with fleetq's global flags (the same
 * --root-dir/--config/--run-dir/--log-dir as every restore) and replaces the
 * host's catalog in Redis (placement/snapshot-catalog.ts).
 *
 * When: at start, then every FLEETQ_SNAPSHOT_REFRESH (default 1m: a process
 * spawn, so not on every heartbeat), and soon after `refreshSoon()` (a
 * restore that failed with "snapshot not found" says the list is stale).
 * Runs never overlap; a request during a run makes one more run after it.
 * Only a worker that consumes the restores queue starts one (run-worker.ts):
 * a host without cocoon's restores publishes nothing.
 *
 * A failed listing (cocoon missing, a bad config, a timeout) is logged, once
 * per distinct error, and recorded in the catalog's meta; it never stops the
 * worker. The last good list stays published until the key's TTL.
 */
import type { RedisClient as Redis } from '../redis/connect.js';
import type { Logger } from 'pino';
import { errorMessage } from '../lib/errors.js';
import { type CatalogMeta, catalogFrom, publishCatalog, recordCatalogError } from '../placement/snapshot-catalog.js';
import type { CocoonCli } from '../restore/cocoon-cli.js';

export interface SnapshotPublisherOptions {
  redis: Redis;
  prefix: string;
  host: string;
  /** Recorded in the catalog's meta (default: this process's). */
  pid?: number;
  cocoon: Pick<CocoonCli, 'listSnapshots'>;
  intervalMs: number;
  log: Logger;
}

export interface SnapshotPublisher {
  /** List again as soon as the current run (if any) is over. */
  refreshSoon(): void;
  /** The run in flight, or a new one; resolves when it has published (or recorded its failure). */
  refresh(): Promise<void>;
  /** Stop the timer, abort a listing in flight, wait for it. */
  stop(): Promise<void>;
}

/** How long a catalog outlives its last refresh: a dead worker's list expires, a live one's never does. */
export function catalogTtlMs(intervalMs: number): number {
  return Math.max(3_600_000, intervalMs * 3);
}

export function startSnapshotPublisher(o: SnapshotPublisherOptions): SnapshotPublisher {
  const ttlMs = catalogTtlMs(o.intervalMs);
  const pid = o.pid ?? process.pid;
  const log = o.log.child({ component: 'snapshot-publisher' });
  const abort = new AbortController();
  let last: CatalogMeta | undefined;
  let lastError: string | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const once = async () => {
    try {
      const listed = await o.cocoon.listSnapshots({ signal: abort.signal });
      const catalog = catalogFrom(listed.snapshots);
      last = await publishCatalog(o.redis, o.prefix, o.host, catalog, { pid, ttlMs });
      if (lastError !== undefined) log.info({ published: last.published }, 'cocoon snapshot ls works again: snapshots published');
      lastError = undefined;
      const noted = { count: catalog.count, published: last.published, truncated: catalog.truncated || undefined, unnamed: catalog.unnamed || undefined, invalid: listed.invalid || undefined };
      if (catalog.truncated || listed.invalid) log.warn(noted, 'snapshots published, some left out (over the cap, or records that do not parse)');
      else log.debug(noted, 'snapshots published');
    } catch (err) {
      if (abort.signal.aborted) return;
      const message = errorMessage(err);
      if (message !== lastError) log.warn({ err: message }, 'cannot list cocoon snapshots (cocoon snapshot ls): --host auto sees this host\'s last published list, if any');
      lastError = message;
      last = await recordCatalogError(o.redis, o.prefix, o.host, message, { pid, ttlMs, last }).catch((e: unknown) => {
        log.debug({ err: errorMessage(e) }, 'could not record the listing error');
        return last;
      });
    }
  };

  const schedule = () => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => void refresh(), o.intervalMs);
    timer.unref();
  };

  const refresh = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await once();
      } while (again && !stopped);
    })().finally(() => {
      running = undefined;
      schedule();
    });
    return running;
  };

  void refresh();
  return {
    refresh,
    refreshSoon() {
      void refresh();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      abort.abort();
      await running?.catch(() => {});
    },
  };
}
