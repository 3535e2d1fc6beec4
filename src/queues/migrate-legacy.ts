/**
 * `fleetq migrate`: move jobs from the queue names fleetq ≤ 0.1 used
 * (`images-<host>`, `restores-<host>`) to the hash-tagged ones
 * (`images-{<host>}`, `restores-{<host>}`, names.ts).
 *
 * What moves: waiting, prioritized, delayed, failed and waiting-children jobs,
 * and active jobs whose lock has expired (their worker is gone: BullMQ's
 * stalled check would put them back in waiting, but no worker watches the
 * old queues any more). Each job moves whole, in one Lua script, so it is
 * either in the old queue or in the new one, never both nor neither:
 *   - its hash as it is (id, name, data, options, attempts made, timestamps,
 *     progress, failure reason and stack), its log lines, and for a restore
 *     waiting for its image job, its dependency sets;
 *   - into the same state with the same score: a delayed job keeps its due
 *     time (the delay remaining), a prioritized one its priority and order,
 *     a failed one its finish time; waiting jobs keep their order;
 *   - references between a host's two queues are rewritten (a restore's
 *     pending image job names its parent, the parent names its children), so
 *     a moved flow completes in the new queues;
 *   - its deduplication key (`de:<id>`, with its TTL) comes along, so a
 *     producer adding the same ensure-image again still collapses into it;
 *   - the new queue's worker is woken (BullMQ's marker).
 * Nothing is overwritten: a job whose id already exists in the new queue is
 * left where it is and reported. Running it again moves nothing more.
 * Completed jobs (history) stay in the old queues; `removeOld` drops an old
 * queue once nothing but completed jobs is left in it.
 *
 * The script touches keys of both names (different Cluster slots): fine on a
 * single Redis or Sentinel, which are the only places old names can exist
 * (untagged queues fail on a Cluster at their first command).
 */
import { Queue } from 'bullmq';
import type { RedisClient } from '../redis/connect.js';
import { listHosts } from '../registry/host-registry.js';
import { hostKeys } from '../registry/keys.js';
import { legacyQueueName, parseQueueName, type QueueKind, QUEUE_KINDS, queueName } from './names.js';
import { queueOptions } from './queue-options.js';

/** Old-queue states, in the order they are moved. `paused` is BullMQ < 5's list for a paused queue. */
export const MIGRATED_STATES = ['waiting-children', 'prioritized', 'wait', 'paused', 'delayed', 'failed', 'active'] as const;
export type MigratedState = (typeof MIGRATED_STATES)[number];

/** How a state is reported (BullMQ's names, as `fleetq jobs` shows them). */
const SHOWN: Record<MigratedState, string> = {
  'waiting-children': 'waiting-children',
  prioritized: 'prioritized',
  wait: 'waiting',
  paused: 'waiting',
  delayed: 'delayed',
  failed: 'failed',
  active: 'active (stalled)',
};

/**
 * ARGV: old queue key, new queue key, job id, state, dry ("1"/"0"), then pairs (old queue key, new queue key)
 * whose references are rewritten. Returns moved | would-move | gone | exists | locked.
 */
const MOVE_SCRIPT = `
local rcall = redis.call
local oldQ, newQ, id, state, dry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'
local map = {}
for i = 6, #ARGV, 2 do map[#map + 1] = { ARGV[i], ARGV[i + 1] } end
local isList = state == 'wait' or state == 'paused' or state == 'active'
local oldSet = oldQ .. ':' .. state
local score
if isList then
  if not rcall('LPOS', oldSet, id) then return 'gone' end
else
  score = rcall('ZSCORE', oldSet, id)
  if not score then return 'gone' end
end
local oldJob, newJob = oldQ .. ':' .. id, newQ .. ':' .. id
if rcall('EXISTS', oldJob) == 0 then return 'gone' end
if state == 'active' and rcall('EXISTS', oldJob .. ':lock') == 1 then return 'locked' end
if rcall('EXISTS', newJob) == 1 then return 'exists' end
if dry then return 'would-move' end

local function remapKey(k)
  for _, m in ipairs(map) do
    if k == m[1] then return m[2] end
    if string.sub(k, 1, #m[1] + 1) == m[1] .. ':' then return m[2] .. string.sub(k, #m[1] + 1) end
  end
  return k
end
local function replacePlain(s, from, to)
  local out, i = {}, 1
  while true do
    local a, b = string.find(s, from, i, true)
    if not a then break end
    out[#out + 1] = string.sub(s, i, a - 1)
    out[#out + 1] = to
    i = b + 1
  end
  out[#out + 1] = string.sub(s, i)
  return table.concat(out)
end
local function remapJson(s)
  for _, m in ipairs(map) do s = replacePlain(s, '"' .. m[1] .. '"', '"' .. m[2] .. '"') end
  return s
end
local function chunks(t, step, fn)
  for i = 1, #t, step do fn(i, math.min(i + step - 1, #t)) end
end

-- The job hash, with the references to the host's old queues rewritten.
local h = rcall('HGETALL', oldJob)
for i = 1, #h, 2 do
  local f = h[i]
  if f == 'parentKey' then h[i + 1] = remapKey(h[i + 1])
  elseif f == 'parent' or f == 'opts' then h[i + 1] = remapJson(h[i + 1]) end
end
chunks(h, 200, function(a, b) rcall('HSET', newJob, unpack(h, a, b)) end)
-- Log lines.
local logs = rcall('LRANGE', oldJob .. ':logs', 0, -1)
chunks(logs, 1000, function(a, b) rcall('RPUSH', newJob .. ':logs', unpack(logs, a, b)) end)
-- A parent's children: pending (set), processed and failed (hashes), unsuccessful (zset); members are job keys.
local deps = rcall('SMEMBERS', oldJob .. ':dependencies')
for _, k in ipairs(deps) do rcall('SADD', newJob .. ':dependencies', remapKey(k)) end
for _, suffix in ipairs({ ':processed', ':failed' }) do
  local kv = rcall('HGETALL', oldJob .. suffix)
  for i = 1, #kv, 2 do rcall('HSET', newJob .. suffix, remapKey(kv[i]), kv[i + 1]) end
end
local uns = rcall('ZRANGE', oldJob .. ':unsuccessful', 0, -1, 'WITHSCORES')
for i = 1, #uns, 2 do rcall('ZADD', newJob .. ':unsuccessful', uns[i + 1], remapKey(uns[i])) end

-- Its deduplication key, with what is left of its TTL.
local deid = rcall('HGET', oldJob, 'deid')
if deid then
  local oldDe = oldQ .. ':de:' .. deid
  if rcall('GET', oldDe) == id then
    local newDe = newQ .. ':de:' .. deid
    if state ~= 'failed' and rcall('EXISTS', newDe) == 0 then
      local ttl = rcall('PTTL', oldDe)
      if ttl > 0 then rcall('SET', newDe, id, 'PX', ttl) else rcall('SET', newDe, id) end
    end
    rcall('DEL', oldDe)
  end
end

-- Out of the old queue.
if isList then rcall('LREM', oldSet, 0, id) else rcall('ZREM', oldSet, id) end
rcall('SREM', oldQ .. ':stalled', id)
rcall('DEL', oldJob, oldJob .. ':logs', oldJob .. ':dependencies', oldJob .. ':processed', oldJob .. ':failed', oldJob .. ':unsuccessful', oldJob .. ':lock')

-- Into the new one, in the same state (a stalled active job: waiting), and wake its worker.
local paused = rcall('HEXISTS', newQ .. ':meta', 'paused') == 1
if isList then
  rcall('LPUSH', newQ .. ':wait', id)
  if not paused then rcall('ZADD', newQ .. ':marker', 0, '0') end
elseif state == 'prioritized' then
  rcall('ZADD', newQ .. ':prioritized', score, id)
  if not paused then rcall('ZADD', newQ .. ':marker', 0, '0') end
elseif state == 'delayed' then
  rcall('ZADD', newQ .. ':delayed', score, id)
  local first = rcall('ZRANGE', newQ .. ':delayed', 0, 0, 'WITHSCORES')
  if first[2] then rcall('ZADD', newQ .. ':marker', tonumber(first[2]) / 0x1000, '1') end
else
  rcall('ZADD', newQ .. ':' .. state, score, id)
end
return 'moved'
`;

export interface LegacyQueue {
  host: string;
  kind: QueueKind;
  from: string;
  to: string;
}

export interface QueueMigration extends LegacyQueue {
  /** Jobs moved (or, dry run, that would move), by state. */
  moved: Record<string, number>;
  /** Jobs left in the old queue, and why. */
  skipped: Array<{ id: string; state: string; why: string }>;
  /** Completed jobs left in the old queue (history). */
  completed: number;
  /** The old queue was removed (`removeOld`, nothing but completed jobs left). */
  removed: boolean;
}

export interface MigrationReport {
  dryRun: boolean;
  queues: QueueMigration[];
  moved: number;
  skipped: number;
}

const WHY: Record<string, string> = {
  exists: 'a job with this id is already in the new queue (left here; remove one of them)',
  locked: 'active: its worker holds the lock (an old worker still runs: stop it, then run migrate again)',
};

/** Old queues: both kinds of every registered host, and every old-named queue found in Redis (SCAN for :meta and :id). */
export async function findLegacyQueues(redis: RedisClient, prefix: string, downAfterMs = 30_000): Promise<LegacyQueue[]> {
  const found = new Map<string, LegacyQueue>();
  const add = (kind: QueueKind, host: string) => {
    const from = legacyQueueName(kind, host);
    if (!found.has(from)) found.set(from, { host, kind, from, to: queueName(kind, host) });
  };
  for (const h of await listHosts(redis, prefix, downAfterMs)) for (const kind of QUEUE_KINDS) add(kind, h.host);
  for (const suffix of ['meta', 'id']) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*:${suffix}`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const parsed = parseQueueName(key.slice(prefix.length + 1, -(suffix.length + 1)));
        if (parsed?.legacy) add(parsed.kind, parsed.host);
      }
    } while (cursor !== '0');
  }
  // Restores first: a restore waiting for its image job moves before that job.
  return [...found.values()].sort((a, b) => a.host.localeCompare(b.host) || (a.kind === b.kind ? 0 : a.kind === 'restores' ? -1 : 1));
}

export interface MigrateOptions {
  prefix: string;
  dryRun?: boolean | undefined;
  /** Obliterate an old queue once only completed jobs are left in it. */
  removeOld?: boolean | undefined;
  /** Jobs per pipeline. */
  batch?: number | undefined;
  downAfterMs?: number | undefined;
}

type MoveCommand = (oldQ: string, newQ: string, id: string, state: string, dry: string, ...map: string[]) => Promise<string>;

export async function migrateLegacyQueues(redis: RedisClient, opts: MigrateOptions): Promise<MigrationReport> {
  const { prefix } = opts;
  const batch = opts.batch ?? 200;
  if (!('fleetqMigrateJob' in redis)) redis.defineCommand('fleetqMigrateJob', { numberOfKeys: 0, lua: MOVE_SCRIPT });
  const qkey = (name: string) => `${prefix}:${name}`;
  const report: MigrationReport = { dryRun: Boolean(opts.dryRun), queues: [], moved: 0, skipped: 0 };
  for (const q of await findLegacyQueues(redis, prefix, opts.downAfterMs)) {
    const map = QUEUE_KINDS.flatMap((kind) => [qkey(legacyQueueName(kind, q.host)), qkey(queueName(kind, q.host))]);
    const result: QueueMigration = { ...q, moved: {}, skipped: [], completed: 0, removed: false };
    for (const state of MIGRATED_STATES) {
      const key = `${qkey(q.from)}:${state}`;
      const type = await redis.type(key);
      if (type === 'none') continue;
      // Lists are read newest first (LPUSH); move the oldest first so LPUSH keeps the order.
      const ids = type === 'list' ? (await redis.lrange(key, 0, -1)).reverse() : await redis.zrange(key, 0, -1);
      for (let i = 0; i < ids.length; i += batch) {
        const page = ids.slice(i, i + batch);
        const pipe = redis.pipeline();
        const move = (pipe as unknown as { fleetqMigrateJob: MoveCommand }).fleetqMigrateJob.bind(pipe);
        for (const id of page) void move(qkey(q.from), qkey(q.to), id, state, opts.dryRun ? '1' : '0', ...map);
        const replies = (await pipe.exec()) ?? [];
        for (const [j, id] of page.entries()) {
          const [err, outcome] = replies[j] ?? [new Error('no reply from Redis'), undefined];
          if (err) throw err;
          if (outcome === 'moved' || outcome === 'would-move') {
            result.moved[SHOWN[state]] = (result.moved[SHOWN[state]] ?? 0) + 1;
            report.moved++;
          } else if (outcome === 'exists' || outcome === 'locked') {
            result.skipped.push({ id, state: SHOWN[state], why: WHY[outcome]! });
            report.skipped++;
          }
        }
      }
    }
    result.completed = await redis.zcard(`${qkey(q.from)}:completed`);
    if (opts.removeOld && !opts.dryRun && result.skipped.length === 0 && (await leftOver(redis, qkey(q.from))) === 0) {
      const old = new Queue(q.from, { connection: redis, ...queueOptions(prefix), skipMetasUpdate: true });
      old.on('error', () => {});
      try {
        await old.obliterate({ force: true });
        await redis.hdel(hostKeys(prefix, q.host).dlqSwept, q.from);
        result.removed = true;
      } finally {
        await old.close().catch(() => {});
      }
    }
    report.queues.push(result);
  }
  return report;
}

/** Jobs in an old queue that are not completed. */
async function leftOver(redis: RedisClient, oldQ: string): Promise<number> {
  let n = 0;
  for (const state of MIGRATED_STATES) {
    const key = `${oldQ}:${state}`;
    const type = await redis.type(key);
    if (type === 'list') n += await redis.llen(key);
    else if (type === 'zset') n += await redis.zcard(key);
  }
  return n;
}
