/**
 * `fleetq_queue_oldest_waiting_seconds{host,queue}`: how long the oldest job
 * that could run now has been waiting, read from Redis at scrape time (the
 * board for every host's queues, a worker for its own).
 *
 * "Waiting" is BullMQ's wait list and its prioritized set (not delayed jobs,
 * nor restores parked for their image job). A job waits since it was added or
 * since its last attempt started, whichever is later (BullMQ keeps no time of
 * "became ready"; a retried job's age so includes its last attempt and backoff).
 * The wait list is taken from its consuming end (BullMQ pushes at the other):
 * its last 16 entries, which covers LIFO jobs and woken parents pushed there.
 * The prioritized set is read once per distinct priority: within one priority
 * BullMQ scores jobs in order of arrival, so each priority's first is its oldest.
 * One Lua script per queue, O(distinct priorities), no scan of the queue.
 */
import type { RedisClient } from '../redis/connect.js';

const SCRIPT = `
local best = false
local function consider(id)
  local f = redis.call('HMGET', ARGV[1] .. id, 'timestamp', 'processedOn')
  local since = tonumber(f[1])
  if not since then return end
  local started = tonumber(f[2])
  if started and started > since then since = started end
  if not best or since < best then best = since end
end
for _, id in ipairs(redis.call('LRANGE', KEYS[1], -tonumber(ARGV[2]), -1)) do consider(id) end
local band = 4294967296
local lo = '0'
for i = 1, tonumber(ARGV[3]) do
  local r = redis.call('ZRANGEBYSCORE', KEYS[2], lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #r == 0 then break end
  consider(r[1])
  lo = string.format('%.0f', (math.floor(tonumber(r[2]) / band) + 1) * band)
end
if best then return tostring(best) end
return false
`;

/** What this needs of a BullMQ Queue or Worker: its key names. */
export interface QueueKeysLike {
  readonly keys: { readonly [key: string]: string };
  toKey(type: string): string;
}

/**
 * When (ms since the epoch) the oldest waiting job of `q` began to wait, or
 * undefined when none waits. `redis`: a connection without keyPrefix (BullMQ's).
 */
export async function oldestWaitingSince(redis: RedisClient, q: QueueKeysLike): Promise<number | undefined> {
  const r = (await redis.eval(SCRIPT, 2, q.keys.wait ?? q.toKey('wait'), q.keys.prioritized ?? q.toKey('prioritized'), q.toKey(''), 16, 64)) as string | null;
  return r === null ? undefined : Number(r);
}

/** Seconds the oldest waiting job of `q` has waited (0 when none waits). */
export async function oldestWaitingSeconds(redis: RedisClient, q: QueueKeysLike, now = Date.now()): Promise<number> {
  const since = await oldestWaitingSince(redis, q);
  return since === undefined ? 0 : Math.max(0, (now - since) / 1000);
}
