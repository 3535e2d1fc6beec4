/**
 * Bench-side helpers for fleets of workers that fetch from each other:
 * the peer settings of a worker, starting many workers without starving a
 * small machine, and forgetting who holds what between runs.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Digest } from '../../src/lib/digest.js';
import { holderKeys } from '../../src/peer/holders.js';
import { startWorker, type BenchWorker, type WorkerSpec } from './procs.js';

/** A fleet token for one bench run (never written anywhere but the workers' environment). */
export function fleetToken(): string {
  return randomBytes(24).toString('hex');
}

/** A worker that serves its blobs to peers on a free loopback port (advertised with the bound port) and fetches from them. */
export function peerEnv(token: string): Record<string, string> {
  return { FLEETQ_PEER_LISTEN: '127.0.0.1:0', FLEETQ_PEER_TOKEN: token };
}

/**
 * Start workers `batch` at a time: a dozen node processes starting at once on
 * two cores can each take longer than startWorker's deadline.
 */
export async function startWorkers(specs: WorkerSpec[], batch = 4): Promise<BenchWorker[]> {
  const out: BenchWorker[] = [];
  try {
    for (let i = 0; i < specs.length; i += batch) out.push(...(await Promise.all(specs.slice(i, i + batch).map((s) => startWorker(s)))));
  } catch (err) {
    await Promise.all(out.map((w) => w.stop()));
    throw err;
  }
  return out;
}

/**
 * The bench removes blobs behind the workers' backs between runs (not
 * through GC, which would drop the host from the digest's holders): drop the
 * holder sets too, so that the next run starts with nobody holding anything
 * instead of with hosts advertised for blobs they no longer have.
 */
export async function clearHolders(redis: Redis, prefix: string, digests: string[]): Promise<void> {
  const k = holderKeys(prefix);
  if (digests.length) await redis.del(...digests.map((d) => k.holders(Digest.parse(d))));
}
