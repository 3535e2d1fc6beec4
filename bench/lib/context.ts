/** What every scenario gets from the runner. */
import type { Redis } from 'ioredis';
import type { BenchHttpServer } from './http.js';
import type { BenchImage } from './images.js';

export interface BenchContext {
  quick: boolean;
  /** Measured runs per figure (after one warm-up run). */
  runs: number;
  /** Private temp directory of this bench run (removed at the end). */
  tmp: string;
  redisUrl: string;
  /** pid of the private redis-server (for its CPU time). */
  redisPid: number;
  /** Admin connection to the private redis-server (INFO, counts). */
  redis: Redis;
  prefix: string;
  http: BenchHttpServer;
  /** Directory the HTTP server serves from. */
  serveDir: string;
  /** A qcow2 image of about `bytes` under serveDir, made once per key. */
  image(key: string, bytes: number): Promise<BenchImage>;
  /** Progress line on stderr. */
  log(msg: string): void;
}

/**
 * One warm-up run (index 0, result discarded) and then `ctx.runs` measured
 * runs. `warmUp: false` when an earlier warm-up in the same processes already
 * covered this code path (the cache-hit growth sizes).
 */
export async function measured<T>(ctx: BenchContext, label: string, fn: (run: number, warmUp: boolean) => Promise<T>, opts: { warmUp?: boolean } = {}): Promise<T[]> {
  const out: T[] = [];
  for (let i = opts.warmUp === false ? 1 : 0; i <= ctx.runs; i++) {
    const warm = i === 0;
    ctx.log(`${label}: ${warm ? 'warm-up' : `run ${i}/${ctx.runs}`}`);
    const r = await fn(i, warm);
    if (!warm) out.push(r);
  }
  return out;
}
