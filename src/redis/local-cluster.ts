/**
 * A real Redis Cluster on loopback for tests and benchmarks: N masters with
 * R replicas each, every node a `redis-server --cluster-enabled yes` on free
 * ports (client port and cluster bus port both chosen, never port+10000),
 * each in its own directory; joined with `redis-cli --cluster create`.
 *
 * Readiness is polled with a deadline: every node says cluster_state:ok with
 * all slots covered, sees every master and replica without a failure flag,
 * and every replica's link to its master is up and synced (a replica that
 * never finished its first sync refuses to fail over).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from '../lib/free-port.js';
import { type RedisProcess, startRedisProcess } from './redis-process.js';

const run = promisify(execFile);

export interface LocalClusterOptions {
  dir: string;
  masters?: number;
  replicasPerMaster?: number;
  /** cluster-node-timeout (ms): how long before a silent master is failed over. Default 2000. */
  nodeTimeoutMs?: number;
  /** cluster-require-full-coverage (default false: other shards keep serving while one fails over). */
  requireFullCoverage?: boolean;
  /** More redis-server arguments for every node, e.g. ['--appendonly', 'yes']. */
  nodeArgs?: string[];
  /**
   * TLS only (every node's client port and cluster bus; plain ports off): the
   * server's certificate and key, and the CA that signed it (which the
   * harness's own clients, redis-cli included, check the nodes against).
   */
  tls?: { certFile: string; keyFile: string; caFile: string };
  /** Deadline for the whole start (default 60 s). */
  startTimeoutMs?: number;
}

export interface ClusterNode {
  /** The node's process (kill/restart it). */
  proc: RedisProcess;
  port: number;
  busPort: number;
  /** "127.0.0.1:<port>". */
  address: string;
}

export interface ClusterTopology {
  /** Masters that serve slots, with their slot ranges. */
  masters: Array<{ id: string; port: number; slots: Array<[number, number]> }>;
  replicas: Array<{ id: string; port: number; masterId: string }>;
}

export interface LocalCluster {
  nodes: ClusterNode[];
  /** "127.0.0.1:p1,127.0.0.1:p2,…" (every node): FLEETQ_REDIS_CLUSTER_NODES. */
  seeds: string;
  /** The cluster as seen by a live node. */
  topology(): Promise<ClusterTopology>;
  /** CLUSTER KEYSLOT. */
  keySlot(key: string): Promise<number>;
  /** The node whose master serves `slot` now. */
  masterOfSlot(slot: number): Promise<ClusterNode>;
  /** An admin connection to one node (no cluster redirections; commands fail fast while it is down). */
  admin(node: ClusterNode): Redis;
  /** Poll until the whole cluster is healthy (every node up, synced, state ok). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /**
   * kill -9 a master and wait until its replica has taken over its slots and a
   * live node says cluster_state:ok. Resolves with the replica now serving and
   * the time from the kill, in ms.
   */
  crashMaster(master: ClusterNode, timeoutMs?: number): Promise<{ promoted: ClusterNode; ms: number }>;
  /**
   * A planned switchover: CLUSTER FAILOVER on a replica of `master` (the
   * master pauses its clients until the replica has caught up). Resolves once
   * the replica serves the slots and every node is healthy, with the time.
   */
  switchover(master: ClusterNode, timeoutMs?: number): Promise<{ promoted: ClusterNode; ms: number }>;
  /** Restart a killed node (it rejoins as a replica) and wait until the cluster is healthy again. */
  revive(node: ClusterNode, timeoutMs?: number): Promise<void>;
  /** Kill every node and close the admin connections. */
  stop(): Promise<void>;
}

interface NodeLine {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  linkState: string;
  slots: Array<[number, number]>;
}

/** Parse CLUSTER NODES (one line per node). */
export function parseClusterNodes(text: string): NodeLine[] {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.trim().split(' ');
      const port = Number(/:(\d+)@/.exec(f[1]!)?.[1]);
      const slots: Array<[number, number]> = [];
      for (const s of f.slice(8)) {
        if (s.startsWith('[')) continue; // a slot being migrated
        const [a, b] = s.split('-').map(Number);
        slots.push([a!, b ?? a!]);
      }
      return { id: f[0]!, port, flags: f[2]!.split(','), masterId: f[3]!, linkState: f[7]!, slots };
    });
}

function info(text: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim();
}

export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const masters = opts.masters ?? 3;
  const replicas = opts.replicasPerMaster ?? 1;
  const total = masters * (1 + replicas);
  const deadline = opts.startTimeoutMs ?? 60_000;
  const ports = new Set<number>();
  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!ports.has(p)) {
        ports.add(p);
        return p;
      }
    }
  };
  const tls = opts.tls;
  const ca = tls ? readFileSync(tls.caFile) : undefined;
  const tlsArgs = tls
    ? ['--tls-cluster', 'yes', '--tls-replication', 'yes', '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no']
    : [];
  const nodes: ClusterNode[] = [];
  const admins = new Map<number, Redis>();
  const stopAll = async () => {
    for (const a of admins.values()) a.disconnect();
    await Promise.all(nodes.map((n) => n.proc.kill()));
  };
  try {
    for (let i = 0; i < total; i++) {
      const p = await port();
      const bus = await port();
      const proc = await startRedisProcess({
        name: `cluster node ${p}`,
        port: p,
        dir: join(opts.dir, String(p)),
        ...(ca ? { tls: { ca } } : {}),
        args: [
          ...tlsArgs,
          '--cluster-enabled', 'yes',
          '--cluster-config-file', 'nodes.conf',
          '--cluster-port', String(bus),
          '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 2000),
          '--cluster-require-full-coverage', opts.requireFullCoverage ? 'yes' : 'no',
          '--save', '',
          '--appendonly', 'no',
          '--maxmemory-policy', 'noeviction',
          // No delay before a full sync (default 5 s, to batch replicas): a replica is ready sooner.
          '--repl-diskless-sync-delay', '0',
          ...(opts.nodeArgs ?? []),
        ],
      });
      nodes.push({ proc, port: p, busPort: bus, address: `127.0.0.1:${p}` });
    }
    await run('redis-cli', [...(tls ? ['--tls', '--cacert', tls.caFile] : []), '--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes'], {
      timeout: deadline,
    });
  } catch (err) {
    await stopAll();
    throw err;
  }

  const admin = (node: ClusterNode): Redis => {
    let a = admins.get(node.port);
    if (!a) {
      a = new Redis({
        host: '127.0.0.1',
        port: node.port,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: 1000,
        commandTimeout: 3000,
        retryStrategy: () => 100,
        ...(ca ? { tls: { ca } } : {}),
      });
      a.on('error', () => {});
      admins.set(node.port, a);
    }
    return a;
  };
  const byPort = (p: number) => {
    const n = nodes.find((x) => x.port === p);
    if (!n) throw new Error(`cluster reports a node on port ${p} that this harness did not start`);
    return n;
  };
  const liveNodes = () => nodes.filter((n) => n.proc.alive);
  /** Run `fn` against live nodes in turn until one answers. */
  const ask = async <T>(fn: (a: Redis) => Promise<T>): Promise<T> => {
    let last: unknown;
    for (const n of liveNodes()) {
      try {
        return await fn(admin(n));
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no live cluster node answered: ${(last as Error)?.message ?? 'none alive'}`);
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
      if (Date.now() > until) throw new Error(`cluster: timed out after ${timeoutMs}ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const healthy = async (): Promise<boolean> => {
    if (liveNodes().length !== total) return false;
    for (const n of nodes) {
      const a = admin(n);
      if (a.status !== 'ready') return false;
      const ci = await a.cluster('INFO');
      if (info(ci, 'cluster_state') !== 'ok' || info(ci, 'cluster_slots_ok') !== '16384' || info(ci, 'cluster_known_nodes') !== String(total)) return false;
      const view = parseClusterNodes(String(await a.cluster('NODES')));
      if (view.some((l) => l.flags.some((f) => f === 'fail' || f === 'fail?' || f === 'handshake' || f === 'noaddr') || l.linkState !== 'connected')) return false;
      if (view.filter((l) => l.flags.includes('master') && l.slots.length).length !== masters) return false;
      if (view.filter((l) => l.flags.includes('slave')).length !== masters * replicas) return false;
      const me = view.find((l) => l.flags.includes('myself'))!;
      if (me.flags.includes('slave')) {
        const ri = await a.info('replication');
        if (info(ri, 'master_link_status') !== 'up' || info(ri, 'master_sync_in_progress') !== '0') return false;
      }
    }
    return true;
  };

  const topology = async (): Promise<ClusterTopology> => {
    const view = parseClusterNodes(String(await ask((a) => a.cluster('NODES'))));
    const ok = view.filter((l) => !l.flags.includes('fail') && !l.flags.includes('fail?'));
    return {
      masters: ok.filter((l) => l.flags.includes('master') && l.slots.length).map((l) => ({ id: l.id, port: l.port, slots: l.slots })),
      replicas: ok.filter((l) => l.flags.includes('slave')).map((l) => ({ id: l.id, port: l.port, masterId: l.masterId })),
    };
  };

  const cluster: LocalCluster = {
    nodes,
    seeds: nodes.map((n) => n.address).join(','),
    topology,
    keySlot: (key) => ask((a) => a.cluster('KEYSLOT', key) as Promise<number>),
    async masterOfSlot(slot) {
      const slots = (await ask((a) => a.cluster('SLOTS'))) as unknown as Array<[number, number, [string, number, string], ...unknown[]]>;
      const r = slots.find(([a, b]) => slot >= a && slot <= b);
      if (!r) throw new Error(`no master serves slot ${slot}`);
      return byPort(r[2][1]);
    },
    admin,
    waitHealthy: (timeoutMs = deadline) => poll('every node up, synced and cluster_state:ok', timeoutMs, healthy),
    async crashMaster(master, timeoutMs = 30_000) {
      const topo = await topology();
      const m = topo.masters.find((x) => x.port === master.port);
      if (!m) throw new Error(`port ${master.port} is not a master serving slots`);
      const mine = topo.replicas.filter((r) => r.masterId === m.id).map((r) => byPort(r.port));
      if (!mine.length) throw new Error(`master ${master.port} has no replica to promote`);
      const t0 = Date.now();
      await master.proc.kill();
      let promoted: ClusterNode | undefined;
      await poll(`a replica of ${master.port} to take over its slots`, timeoutMs, async () => {
        for (const r of mine) {
          const role = (await admin(r).role().catch(() => [])) as unknown[];
          if (role[0] === 'master') promoted = r;
        }
        if (!promoted) return false;
        const owner = await cluster.masterOfSlot(m.slots[0]![0]);
        const state = info(await admin(promoted).cluster('INFO'), 'cluster_state');
        return owner.port === promoted.port && state === 'ok';
      });
      return { promoted: promoted!, ms: Date.now() - t0 };
    },
    async switchover(master, timeoutMs = 30_000) {
      const topo = await topology();
      const m = topo.masters.find((x) => x.port === master.port);
      if (!m) throw new Error(`port ${master.port} is not a master serving slots`);
      const r = topo.replicas.find((x) => x.masterId === m.id);
      if (!r) throw new Error(`master ${master.port} has no replica to promote`);
      const replica = byPort(r.port);
      const t0 = Date.now();
      await admin(replica).cluster('FAILOVER');
      await poll(`replica ${replica.port} to take over from ${master.port}`, timeoutMs, async () => {
        const role = (await admin(replica).role()) as unknown[];
        return role[0] === 'master' && (await cluster.masterOfSlot(m.slots[0]![0])).port === replica.port && (await healthy());
      });
      return { promoted: replica, ms: Date.now() - t0 };
    },
    async revive(node, timeoutMs = deadline) {
      await node.proc.restart();
      await cluster.waitHealthy(timeoutMs);
    },
    stop: stopAll,
  };
  try {
    await cluster.waitHealthy();
  } catch (err) {
    await stopAll();
    throw err;
  }
  return cluster;
}
