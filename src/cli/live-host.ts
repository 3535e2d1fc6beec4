/**
 * Before enqueueing: is a live worker consuming the target queue? If not, the
 * job would wait silently (the README once enqueued to `h1` while the worker
 * registered as the machine's hostname). Warn on stderr, or refuse under
 * --require-live-host.
 */
import type { RedisClient } from '../redis/connect.js';
import type { Config } from '../config/schema.js';
import { type HostInfo, listHosts } from '../registry/host-registry.js';
import { printErr } from './output.js';
import { UsageError } from './usage-error.js';

/** Why a queue has no live consumer, or undefined when it has one. Pure. */
export function noLiveWorker(hosts: HostInfo[], host: string, queue: string): string | undefined {
  const h = hosts.find((x) => x.host === host);
  const others = hosts.length === 0 ? 'no worker has registered with this Redis and prefix' : `hosts: ${hosts.map((x) => `${x.host} ${x.state}`).join(', ')}`;
  if (!h || h.state !== 'up' || h.workers.length === 0) return `no live worker for host ${host}; the job will wait (${others})`;
  // An announcement without queues predates the field: count it as consuming everything.
  if (!h.workers.some((w) => w.queues.length === 0 || w.queues.includes(queue))) {
    return `host ${host} is up but none of its workers consumes ${queue} (FLEETQ_QUEUES); the job will wait (${others})`;
  }
  return undefined;
}

/** Warn (or, with `require`, refuse before anything is written) when no live worker takes `queue`. */
export async function checkLiveHost(redis: RedisClient, cfg: Config, host: string, queue: string, require: boolean): Promise<void> {
  const why = noLiveWorker(await listHosts(redis, cfg.prefix, cfg.hostDownAfterMs), host, queue);
  if (!why) return;
  if (require) throw new UsageError(`--require-live-host: ${why.replace('; the job will wait', '; nothing was enqueued')}`);
  printErr(`fleetq: warning: ${why}`);
}
