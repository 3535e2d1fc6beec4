/**
 * A handle on the whole fleet for operator commands: the hosts the registry
 * knows, and BullMQ Queue objects for their queues (opened lazily, closed once).
 */
import { type Job, Queue } from 'bullmq';
import type { Config } from '../config/schema.js';
import { errorKind } from '../lib/errors.js';
import { openRedis, type RedisClient, type RedisRole } from '../redis/connect.js';
import { type QueueKind, queueName } from '../queues/names.js';
import { queueOptions } from '../queues/queue-options.js';
import { type HostInfo, listHosts } from '../registry/host-registry.js';
import { bullStates, type JobFilter, matches, type UserState } from './job-filter.js';

export interface QueueRef {
  host: string;
  kind: QueueKind;
  name: string;
  queue: Queue;
}

export class Fleet {
  private readonly queues = new Map<string, Queue>();
  private constructor(
    readonly cfg: Config,
    readonly redis: RedisClient,
  ) {}

  /** `role`: `command` for a CLI command (gives up when Redis stays away), `service` for the board (reconnects forever). */
  static async open(cfg: Config, role: Extract<RedisRole, 'command' | 'service'> = 'command'): Promise<Fleet> {
    return new Fleet(cfg, await openRedis(cfg, role));
  }

  /** The registered hosts; hosts silent for FLEETQ_HOST_RETENTION are dropped on the way (bounded, best effort). */
  hosts(): Promise<HostInfo[]> {
    return listHosts(this.redis, this.cfg.prefix, this.cfg.hostDownAfterMs, Date.now(), { retentionMs: this.cfg.hostRetentionMs });
  }

  /** Validate host names against the registry; `undefined` means every known host. */
  async resolveHosts(requested?: string[]): Promise<string[]> {
    const known = (await this.hosts()).map((h) => h.host);
    if (!requested || requested.length === 0 || (requested.length === 1 && requested[0] === 'all')) return known;
    for (const h of requested) {
      if (!known.includes(h)) throw new UnknownHostError(`unknown host ${JSON.stringify(h)} (known: ${known.join(', ') || 'none — no worker has registered'})`);
    }
    return requested;
  }

  queue(host: string, kind: QueueKind): QueueRef {
    const name = queueName(kind, host);
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.redis, ...queueOptions(this.cfg.prefix) });
      q.on('error', () => {});
      this.queues.set(name, q);
    }
    return { host, kind, name, queue: q };
  }

  queuesFor(hosts: string[], kinds: QueueKind[] = ['images', 'restores']): QueueRef[] {
    return hosts.flatMap((h) => kinds.map((k) => this.queue(h, k)));
  }

  /**
   * Page through jobs in the given states of the given queues, `batch` at a
   * time (never a whole state at once), yielding those that match.
   */
  async *scan(refs: QueueRef[], states: UserState[], filter: JobFilter, batch = 200): AsyncGenerator<{ ref: QueueRef; job: Job; state: string }> {
    for (const ref of refs) {
      for (const s of states) {
        for (const bs of bullStates(s)) {
          for (let start = 0; ; start += batch) {
            const jobs = await ref.queue.getJobs([bs], start, start + batch - 1, true);
            for (const job of jobs) if (job && matches(job, filter)) yield { ref, job, state: bs === 'wait' ? 'waiting' : bs };
            if (jobs.length < batch) break;
          }
        }
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => {})));
    await this.redis.quit().catch(() => {});
  }
}

/** A host named on the command line has never registered. */
export class UnknownHostError extends errorKind('E_UNKNOWN_HOST', true) {}
