/**
 * `--host auto`: gather what placement decides by, then let score.ts decide.
 * Reads only: the host registry (up/down, which queues live workers consume,
 * store health), each candidate's published snapshots (snapshot-catalog.ts),
 * the live holders of the base digest (peer/holders.ts), and the restore
 * queue of each host still in the running. Nothing is written.
 *
 * Two producers placing at the same moment can both see the same queue
 * length and pick the same host: placement is a best guess at enqueue time,
 * not a reservation.
 */
import { Queue } from 'bullmq';
import type { RedisClient as Redis } from '../redis/connect.js';
import type { Digest } from '../lib/digest.js';
import { AppError } from '../lib/errors.js';
import { listHolders } from '../peer/holders.js';
import { restoreQueueName } from '../queues/names.js';
import { queueOptions } from '../queues/queue-options.js';
import { type HostInfo, listHosts } from '../registry/host-registry.js';
import { type CandidateFacts, decidePlacement, type HolderFacts, type PlacementDecision, type PlacementInput, rejection } from './score.js';
import { lookupSnapshot } from './snapshot-catalog.js';

export interface PlaceRestoreOptions {
  /** FLEETQ_PREFIX. */
  prefix: string;
  /** FLEETQ_HOST_DOWN_AFTER: a host (or holder) silent this long is down. */
  downAfterMs: number;
  /** Only these hosts are candidates (`--hosts`); default: every registered host. */
  hosts?: readonly string[] | undefined;
  now?: number | undefined;
}

export interface PlacementRequest {
  /** The snapshot the restore clones or restores (a name or a full cocoon ID). */
  snapshot: string;
  /** The job's pinned base digest, when it has one. */
  imageDigest?: Digest | undefined;
}

/** No host can take the restore: the message names every host considered and why it was rejected. */
export class NoPlacementError extends AppError {
  readonly code = 'E_NO_PLACEMENT' as const;
  /** A host may come up or publish the snapshot later. */
  readonly permanent = false;
  constructor(readonly decision: PlacementDecision) {
    super(decision.reason);
  }
}

/** Jobs counted as a host's restore queue. */
const QUEUE_STATES = ['waiting', 'prioritized', 'waiting-children', 'active', 'delayed'] as const;

function consumesRestores(h: HostInfo): boolean {
  const name = restoreQueueName(h.host);
  // An announcement without queues predates the field: it consumed everything.
  return h.workers.some((w) => w.queues.length === 0 || w.queues.includes(name));
}

async function restoreQueueLength(redis: Redis, prefix: string, host: string): Promise<number> {
  const queue = new Queue(restoreQueueName(host), { connection: redis, ...queueOptions(prefix) });
  queue.on('error', () => {});
  try {
    const c = await queue.getJobCounts(...QUEUE_STATES);
    return QUEUE_STATES.reduce((n, s) => n + (c[s] ?? 0), 0);
  } finally {
    await queue.close().catch(() => {});
  }
}

/** Decide where a restore of `req.snapshot` goes (see score.ts); `chosen` is undefined when no host can take it. */
export async function placeRestore(redis: Redis, req: PlacementRequest, opts: PlaceRestoreOptions): Promise<PlacementDecision> {
  const now = opts.now ?? Date.now();
  const registry = await listHosts(redis, opts.prefix, opts.downAfterMs, now);
  const byHost = new Map(registry.map((h) => [h.host, h]));
  const names = opts.hosts?.length ? [...new Set(opts.hosts)] : registry.map((h) => h.host);

  const candidates: CandidateFacts[] = await Promise.all(
    names.map(async (host): Promise<CandidateFacts> => {
      const h = byHost.get(host);
      if (!h) return { host, registered: false, up: false, consumesRestores: false, health: 'ok' };
      const facts: CandidateFacts = { host, registered: true, up: h.state === 'up', lastSeen: h.lastSeen, consumesRestores: consumesRestores(h), health: h.health };
      if (!facts.up || !facts.consumesRestores) return facts;
      const found = await lookupSnapshot(redis, opts.prefix, host, req.snapshot);
      if (found) {
        facts.snapshots = {
          has: found.entry !== undefined,
          digest: found.entry?.digest,
          count: found.meta?.published ?? 0,
          listedAt: found.meta?.listedAt,
          error: found.meta?.error,
        };
      }
      return facts;
    }),
  );

  // The digests to score: the job's pin, else what each host's snapshot records.
  const digests = new Map<string, Digest>();
  if (req.imageDigest) digests.set(req.imageDigest.value, req.imageDigest);
  else for (const c of candidates) if (c.snapshots?.digest) digests.set(c.snapshots.digest.value, c.snapshots.digest);
  const holders = new Map<string, HolderFacts[]>();
  for (const [value, d] of digests) {
    const live = await listHolders(redis, opts.prefix, d, { downAfterMs: opts.downAfterMs, now });
    holders.set(
      value,
      live.map((h) => ({ host: h.host, state: h.state, size: h.size })),
    );
  }

  const input: PlacementInput = { snapshot: req.snapshot, jobDigest: req.imageDigest, candidates, holders, liveHosts: registry.filter((h) => h.state === 'up').length, now };
  // Queue lengths only for the hosts still in the running (a down host's queue is not worth a round trip).
  await Promise.all(
    candidates
      .filter((c) => rejection(input, c) === undefined)
      .map(async (c) => {
        c.restoreQueue = await restoreQueueLength(redis, opts.prefix, c.host);
      }),
  );
  return decidePlacement(input);
}
