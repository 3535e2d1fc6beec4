/**
 * TLS on a Redis Cluster (issue 14: "TLS works in all three modes"; single
 * and Sentinel TLS are in test/integration/redis-connect.test.ts). A
 * TLS-only cluster of 3 masters on loopback (plain ports off, TLS on the
 * cluster bus too), its certificate signed by a test CA and carrying
 * IP:127.0.0.1. fleetq's factory, given only FLEETQ_REDIS_CLUSTER_NODES,
 * FLEETQ_REDIS_TLS=on and FLEETQ_REDIS_TLS_CA_FILE, reaches every master
 * (keys in slots on three masters), a BullMQ Queue + a fleetq worker process
 * ensure an image; without the CA, or without TLS, a command gives up naming
 * the setting.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { enqueueEnsureImage } from '../../src/queues/enqueue-ensure-image.js';
import { imageQueueName } from '../../src/queues/names.js';
import { connectRedis, isCluster, openRedis, type RedisClient } from '../../src/redis/connect.js';
import { qcow2Image } from '../helpers/images.js';
import { queueClient, type QueueClient } from '../helpers/queue.js';
import { startTestCluster, type TestCluster } from '../helpers/redis-cluster.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const certDir = mkdtempSync(join(tmpdir(), 'fleetq-cluster-tls-'));
const caFile = join(certDir, 'ca.crt');
const otherCa = join(certDir, 'other.crt');
let cluster: TestCluster | undefined;
let upstream: Upstream | undefined;
const clients: RedisClient[] = [];
const queues: QueueClient[] = [];
const workers: WorkerProcess[] = [];
const roots: string[] = [];

const env = (extra: Record<string, string> = {}) => ({ FLEETQ_REDIS_CLUSTER_NODES: cluster!.seeds, FLEETQ_REDIS_TLS: 'on', FLEETQ_REDIS_TLS_CA_FILE: caFile, ...extra });

async function open(e: Record<string, string>, role: 'worker' | 'command'): Promise<RedisClient> {
  const c = await openRedis(loadConfig(e), role);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  const sh = (...args: string[]) => execFileSync('openssl', args, { cwd: certDir, stdio: 'ignore' });
  for (const ca of ['ca', 'other']) sh('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '1', '-subj', `/CN=fleetq test ${ca}`);
  sh('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(certDir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  sh('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext');
  cluster = await startTestCluster({
    masters: 3,
    replicasPerMaster: 0,
    tls: { certFile: join(certDir, 'server.crt'), keyFile: join(certDir, 'server.key'), caFile },
  });
  upstream = await startUpstream();
}, 120_000);

afterAll(async () => {
  for (const w of workers) await w.stop().catch(() => {});
  for (const q of queues) await q.close().catch(() => {});
  for (const c of clients) c.disconnect();
  await upstream?.stop();
  await cluster?.cleanup();
  for (const r of roots) removeRoot(r);
  rmSync(certDir, { recursive: true, force: true });
});

describe('Redis Cluster with TLS', () => {
  it('the cluster is TLS only: every node has no plain port and a TLS port', async () => {
    for (const n of cluster!.nodes) {
      const admin = cluster!.admin(n);
      expect(await admin.config('GET', 'port')).toEqual(['port', '0']);
      expect(await admin.config('GET', 'tls-port')).toEqual(['tls-port', String(n.port)]);
      expect(await admin.config('GET', 'tls-cluster')).toEqual(['tls-cluster', 'yes']);
    }
  });

  it.each(['worker', 'command'] as const)('%s: the factory reaches every master over TLS (keys in slots on three masters)', async (role) => {
    const c = await open(env(), role);
    expect(isCluster(c)).toBe(true);
    // One key per master: tags whose slots three different masters serve.
    const byMaster = new Map<number, string>();
    for (let i = 0; byMaster.size < 3 && i < 200; i++) {
      const key = `{t${i}}:tls-${role}`;
      const owner = await cluster!.masterOfSlot(await cluster!.keySlot(key));
      if (!byMaster.has(owner.port)) byMaster.set(owner.port, key);
    }
    expect(byMaster.size).toBe(3);
    for (const key of byMaster.values()) await c.set(key, `v-${key}`);
    for (const [port, key] of byMaster) {
      expect(await c.get(key)).toBe(`v-${key}`);
      // The value is on the master that serves its slot (read with the harness's own TLS admin client).
      expect(await cluster!.admin(cluster!.nodes.find((n) => n.port === port)!).get(key)).toBe(`v-${key}`);
    }
  });

  it('a BullMQ Queue on images-{h1} (clients from the factory) and a fleetq worker process over TLS ensure an image', async () => {
    const cfg = loadConfig(env());
    const host = 'h1';
    const q = await queueClient(() => {
      const c = connectRedis(cfg, 'worker');
      c.on('error', () => {});
      clients.push(c);
      return c;
    }, imageQueueName(host), cfg.prefix);
    queues.push(q);
    expect(q.queue.name).toBe('images-{h1}');
    const root = tempRoot();
    roots.push(root);
    const w = await startWorkerProcess({ ...env(), FLEETQ_HOST: host, FLEETQ_ROOT: root });
    workers.push(w);
    const img = qcow2Image(401);
    const url = upstream!.serve('/cluster-tls/img', img.body);
    const { jobId } = await enqueueEnsureImage(q.queue, { image: url, imageDigest: img.digest }, { host, attempts: 1, backoffMs: 10 });
    const done = await q.settle(jobId, 60_000);
    expect(done.state, done.failedReason).toBe('completed');
    expect(done.value).toMatchObject({ outcome: 'pulled', digest: img.digest });
    expect(upstream!.gets('/cluster-tls/img')).toBe(1);
  });

  it('with a CA that did not sign the nodes, a command gives up naming the setting', async () => {
    const started = Date.now();
    await expect(open(env({ FLEETQ_REDIS_TLS_CA_FILE: otherCa }), 'command')).rejects.toThrow(/^cannot connect to Redis Cluster via 127\.0\.0\.1:\d+.* \(TLS\) \(set FLEETQ_REDIS_CLUSTER_NODES\)$/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('without the CA file (system CAs only), a command gives up naming the setting', async () => {
    const { FLEETQ_REDIS_TLS_CA_FILE: _, ...noCa } = env();
    await expect(open(noCa, 'command')).rejects.toThrow(/^cannot connect to Redis Cluster via .* \(TLS\) \(set FLEETQ_REDIS_CLUSTER_NODES\)$/);
  });

  it('with FLEETQ_REDIS_TLS off, a command against the TLS-only nodes gives up naming the setting', async () => {
    await expect(open({ FLEETQ_REDIS_CLUSTER_NODES: cluster!.seeds }, 'command')).rejects.toThrow(/^cannot connect to Redis Cluster via 127\.0\.0\.1:\d+[^(]*\(set FLEETQ_REDIS_CLUSTER_NODES\)$/);
  });
});
