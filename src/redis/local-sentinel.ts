/**
 * A real Redis Sentinel set-up on loopback for tests: one primary, R
 * replicas and S sentinels (`redis-sentinel`, or `redis-server --sentinel`),
 * each on a free port with its own directory; short detection and failover
 * timeouts so that a test sees a failover within seconds.
 *
 * Ready when the replicas are synced, every sentinel knows the others
 * (SENTINEL CKQUORUM says all are usable) and sees every replica.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../lib/free-port.js';
import { type RedisProcess, startRedisProcess } from './redis-process.js';

export interface LocalSentinelOptions {
  dir: string;
  /** The monitored master's name (FLEETQ_REDIS_SENTINEL_NAME). Default "fleetq". */
  name?: string;
  replicas?: number;
  sentinels?: number;
  /** Sentinels that must agree the primary is down (default: a majority). */
  quorum?: number;
  /** sentinel down-after-milliseconds (default 1000). */
  downAfterMs?: number;
  /** sentinel failover-timeout (default 5000). */
  failoverTimeoutMs?: number;
  /** More redis-server arguments for the data nodes, e.g. ['--min-replicas-to-write', '1']. */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

export interface DataNode {
  proc: RedisProcess;
  port: number;
}

export interface LocalSentinel {
  name: string;
  /** The nodes that hold data; `nodes[0]` started as the primary. */
  nodes: DataNode[];
  sentinels: RedisProcess[];
  /** "127.0.0.1:p1,…" (every sentinel): FLEETQ_REDIS_SENTINELS. */
  seeds: string;
  /** An admin connection to a data node or a sentinel (fails fast while it is down). */
  admin(port: number): Redis;
  /** The primary's port according to a majority of live sentinels (undefined while they disagree). */
  primaryPort(): Promise<number | undefined>;
  /** The data node the sentinels name as primary now. */
  primary(): Promise<DataNode>;
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** kill -9 the primary; resolves once the sentinels name a replica that says it is master, with the time from the kill. */
  crashPrimary(timeoutMs?: number): Promise<{ killed: DataNode; promoted: DataNode; ms: number }>;
  /**
   * SENTINEL FAILOVER; resolves once the sentinels name the new primary
   * (`switchedMs`) and once the old primary has been turned into a replica
   * (`demotedMs`): in between it still accepts writes from clients that
   * have not moved.
   */
  gracefulFailover(timeoutMs?: number): Promise<{ old: DataNode; promoted: DataNode; switchedMs: number; demotedMs: number }>;
  /** How many times the sentinels switched the primary so far (+switch-master in their logs; the most any one logged). */
  switchCount(): Promise<number>;
  /**
   * Restart a killed data node as a replica of the current primary, with
   * replica-priority 0 until it has synced (then 100); wait until healthy.
   */
  revive(node: DataNode, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** /usr/bin/redis-sentinel when installed (Debian's redis-sentinel), else `redis-server … --sentinel`. */
function sentinelCommand(): { bin: string; args: string[] } {
  for (const p of ['/usr/bin/redis-sentinel', '/usr/local/bin/redis-sentinel']) if (existsSync(p)) return { bin: p, args: [] };
  return { bin: 'redis-server', args: ['--sentinel'] };
}

function info(text: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim();
}

/** SENTINEL MASTER/REPLICAS answers come as flat [k, v, k, v, …] arrays. */
function pairs(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const a = flat as string[];
  for (let i = 0; i + 1 < a.length; i += 2) out[a[i]!] = a[i + 1]!;
  return out;
}

export async function startLocalSentinel(opts: LocalSentinelOptions): Promise<LocalSentinel> {
  const name = opts.name ?? 'fleetq';
  const nReplicas = opts.replicas ?? 1;
  const nSentinels = opts.sentinels ?? 3;
  const quorum = opts.quorum ?? Math.floor(nSentinels / 2) + 1;
  const deadline = opts.startTimeoutMs ?? 60_000;
  const nodes: DataNode[] = [];
  const sentinels: RedisProcess[] = [];
  const admins = new Map<number, Redis>();
  const stopAll = async () => {
    for (const a of admins.values()) a.disconnect();
    await Promise.all([...sentinels.map((s) => s.kill()), ...nodes.map((n) => n.proc.kill())]);
  };
  // No delay before a full sync (default 5 s, to batch replicas): a replica is ready sooner.
  const dataArgs = ['--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', '--repl-diskless-sync-delay', '0', ...(opts.nodeArgs ?? [])];
  try {
    for (let i = 0; i <= nReplicas; i++) {
      const port = await freePort();
      const replicaOf = i === 0 ? [] : ['--replicaof', '127.0.0.1', String(nodes[0]!.port)];
      const proc = await startRedisProcess({ name: `data node ${port}`, port, dir: join(opts.dir, `data-${port}`), args: [...dataArgs, ...replicaOf] });
      nodes.push({ proc, port });
    }
    const cmd = sentinelCommand();
    for (let i = 0; i < nSentinels; i++) {
      const port = await freePort();
      const dir = join(opts.dir, `sentinel-${port}`);
      await mkdir(dir, { recursive: true });
      // A sentinel rewrites its config file (known replicas, other sentinels, epochs): it must be its own and writable.
      const conf = join(dir, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `sentinel monitor ${name} 127.0.0.1 ${nodes[0]!.port} ${quorum}`,
          `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 5000}`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      sentinels.push(await startRedisProcess({ name: `sentinel ${port}`, port, dir, bin: cmd.bin, configFile: conf, args: cmd.args }));
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  const admin = (port: number): Redis => {
    let a = admins.get(port);
    if (!a) {
      a = new Redis({ host: '127.0.0.1', port, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1000, commandTimeout: 3000, retryStrategy: () => 100 });
      a.on('error', () => {});
      admins.set(port, a);
    }
    return a;
  };
  const poll = async (what: string, timeoutMs: number, probe: () => Promise<boolean>) => {
    const until = Date.now() + timeoutMs;
    let lastErr: unknown;
    for (;;) {
      try {
        if (await probe()) return;
        lastErr = undefined;
      } catch (err) {
        lastErr = err;
      }
      if (Date.now() > until) throw new Error(`sentinel set-up: timed out after ${timeoutMs}ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const liveSentinels = () => sentinels.filter((s) => s.alive);
  const role = async (port: number): Promise<string | undefined> => ((await admin(port).role().catch(() => [])) as unknown[])[0] as string | undefined;

  const primaryPort = async (): Promise<number | undefined> => {
    const votes = new Map<number, number>();
    for (const s of liveSentinels()) {
      const addr = (await admin(s.port).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name).catch(() => null)) as [string, string] | null;
      if (addr) votes.set(Number(addr[1]), (votes.get(Number(addr[1])) ?? 0) + 1);
    }
    for (const [p, v] of votes) if (v >= quorum) return p;
    return undefined;
  };
  const nodeOf = (port: number) => {
    const n = nodes.find((x) => x.port === port);
    if (!n) throw new Error(`the sentinels name port ${port}, which this harness did not start`);
    return n;
  };

  const healthy = async (): Promise<boolean> => {
    if (nodes.some((n) => !n.proc.alive) || liveSentinels().length !== nSentinels) return false;
    const p = await primaryPort();
    if (p === undefined || (await role(p)) !== 'master') return false;
    for (const n of nodes) {
      if (n.port === p) continue;
      const ri = await admin(n.port).info('replication');
      if (info(ri, 'role') !== 'slave' || info(ri, 'master_port') !== String(p) || info(ri, 'master_link_status') !== 'up' || info(ri, 'master_sync_in_progress') !== '0') return false;
    }
    for (const s of sentinels) {
      const a = admin(s.port);
      const ck = (await a.call('SENTINEL', 'CKQUORUM', name).catch(() => '')) as string;
      if (!ck.startsWith(`OK ${nSentinels} usable`)) return false;
      const m = pairs(await a.call('SENTINEL', 'MASTER', name));
      if (Number(m.port) !== p || /s_down|o_down|failover/.test(m.flags ?? '') || Number(m['num-other-sentinels']) !== nSentinels - 1) return false;
      const reps = ((await a.call('SENTINEL', 'REPLICAS', name)) as unknown[]).map(pairs);
      const good = reps.filter((r) => !/s_down|disconnected/.test(r.flags ?? '') && r['master-link-status'] === 'ok');
      if (good.length !== nReplicas) return false;
    }
    return true;
  };

  const primary = async () => {
    const p = await primaryPort();
    if (p === undefined) throw new Error('the sentinels do not agree on a primary');
    return nodeOf(p);
  };

  const set: LocalSentinel = {
    name,
    nodes,
    sentinels,
    seeds: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
    admin,
    primaryPort,
    primary,
    waitHealthy: (timeoutMs = deadline) => poll('synced replicas, the primary, and every sentinel seeing them', timeoutMs, healthy),
    async crashPrimary(timeoutMs = 30_000) {
      const killed = await primary();
      const t0 = Date.now();
      await killed.proc.kill();
      let promoted: DataNode | undefined;
      await poll(`the sentinels to promote a replica of ${killed.port}`, timeoutMs, async () => {
        const p = await primaryPort();
        if (p === undefined || p === killed.port || (await role(p)) !== 'master') return false;
        promoted = nodeOf(p);
        return true;
      });
      return { killed, promoted: promoted!, ms: Date.now() - t0 };
    },
    async gracefulFailover(timeoutMs = 40_000) {
      const old = await primary();
      const t0 = Date.now();
      await admin(liveSentinels()[0]!.port).call('SENTINEL', 'FAILOVER', name);
      let promoted: DataNode | undefined;
      await poll(`the sentinels to name a new primary after SENTINEL FAILOVER`, timeoutMs, async () => {
        const p = await primaryPort();
        if (p === undefined || p === old.port || (await role(p)) !== 'master') return false;
        promoted = nodeOf(p);
        return true;
      });
      const switchedMs = Date.now() - t0;
      await poll(`the old primary ${old.port} to become a replica`, timeoutMs, async () => (await role(old.port)) === 'slave');
      return { old, promoted: promoted!, switchedMs, demotedMs: Date.now() - t0 };
    },
    async switchCount() {
      let most = 0;
      for (const s of sentinels) {
        const log = await readFile(s.logFile, 'utf8').catch(() => '');
        most = Math.max(most, log.split('+switch-master').length - 1);
      }
      return most;
    },
    async revive(node, timeoutMs = deadline) {
      const p = await primary();
      // Started as a replica of the current primary (never a second master, not even for a moment), and not
      // promotable until it has synced: a node that comes back empty (no AOF/RDB here) reports no link-down
      // time, so the sentinels would otherwise pick it in a second failover and the primary would resync from
      // it, empty. Seen here: a spurious +sdown of the new primary 1 s after the switch promoted the revived
      // node 1 s after its restart and 40 acknowledged, replicated jobs were gone.
      await node.proc.restart(['--replicaof', '127.0.0.1', String(p.port), '--replica-priority', '0']);
      await poll(`the revived node ${node.port} to sync from ${p.port}`, timeoutMs, async () => {
        const ri = await admin(node.port).info('replication');
        return info(ri, 'master_link_status') === 'up' && info(ri, 'master_sync_in_progress') === '0';
      });
      await poll(`replica-priority 100 on ${node.port}`, timeoutMs, async () => (await admin(node.port).config('SET', 'replica-priority', '100')) === 'OK');
      await set.waitHealthy(timeoutMs);
    },
    stop: stopAll,
  };
  try {
    await set.waitHealthy();
  } catch (err) {
    await stopAll();
    throw err;
  }
  return set;
}
