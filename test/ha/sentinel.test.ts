/**
 * fleetq under Redis Sentinel (one primary, one replica, three sentinels on
 * loopback; down-after-milliseconds 1000): worker processes and the board
 * given only FLEETQ_REDIS_SENTINELS / FLEETQ_REDIS_SENTINEL_NAME.
 *
 * 1. kill -9 of the primary during a workload: the workers and the board
 *    reconnect by themselves, every job completes. The producer counts a job
 *    as added once a replica has it (WAIT 1; while WAIT says 0 it adds the
 *    job again under the same id): what a producer must do to lose nothing.
 *    The killed node is restarted (as a supervisor would) as a replica.
 * 2. A graceful SENTINEL FAILOVER during a workload, with the settings that
 *    minimise losses (failoverDetector, WAIT with re-add): no job a replica
 *    confirmed is lost. With FLEETQ_HA_FULL=1 the same runs with other
 *    settings too (ioredis defaults; failoverDetector alone; plus
 *    min-replicas-to-write; two replicas with WAIT 1 and WAIT 2) and prints
 *    what each loses: the figures in docs/HA-FIGURES.md.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { boardName, imageQueueName } from '../../src/queues/names.js';
import { basic, type BoardProcess, startBoardProcess } from '../helpers/board-process.js';
import { sentinelClient } from '../helpers/ha-clients.js';
import { account, longestGap, pacedAdds, reportFigures, resumedAfter } from '../helpers/ha-workload.js';
import { rawImage } from '../helpers/images.js';
import { keepOnFailure, startTestSentinel, type TestSentinel } from '../helpers/redis-sentinel.js';
import { removeRoot, tempRoot } from '../helpers/store.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

const CREDS = { FLEETQ_BOARD_USER: 'oncall', FLEETQ_BOARD_PASSWORD: 'sentinel-pass' };
const AUTH = basic('oncall', 'sentinel-pass');
const cleanups: Array<() => Promise<void> | void> = [];
let upstream: Upstream;

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function upstreamOnce(): Promise<Upstream> {
  if (!upstream) {
    upstream = await startUpstream();
    cleanups.push(() => upstream.stop());
  }
  return upstream;
}

async function sentinelSetup(nodeArgs: string[] = [], replicas = 1): Promise<TestSentinel> {
  const s = await startTestSentinel({ nodeArgs, replicas });
  cleanups.push(() => s.cleanup());
  keepOnFailure(s);
  return s;
}

interface Fleet {
  workers: WorkerProcess[];
  queue: Queue;
  conn: Redis;
  root: string;
}

async function fleet(s: TestSentinel, host: string, producer: { failoverDetector: boolean }): Promise<Fleet> {
  const root = tempRoot();
  const env = { FLEETQ_REDIS_SENTINELS: s.seeds, FLEETQ_REDIS_SENTINEL_NAME: s.name, FLEETQ_HOST: host, FLEETQ_ROOT: root, FLEETQ_CONCURRENCY: '10' };
  const workers = await Promise.all([startWorkerProcess(env), startWorkerProcess(env)]);
  const conn = sentinelClient(s.seeds, s.name, producer);
  const queue = new Queue(imageQueueName(host), { connection: conn, prefix: 'fleetq' });
  queue.on('error', () => {});
  cleanups.push(async () => {
    await queue.close().catch(() => {});
    conn.disconnect();
    for (const w of workers) await w.kill();
    removeRoot(root);
  });
  return { workers, queue, conn, root };
}

/** Completions a worker logged after `t` (ms since epoch; pino's `time` is an ISO string). */
const doneAfter = (w: WorkerProcess, t: number) => w.logs.filter((l) => l.msg === 'ensure-image done' && Date.parse(String(l.time)) > t).length;

describe('Redis Sentinel', () => {
  it('kill -9 of the primary during a workload: workers and board reconnect by themselves; every job completes', async () => {
    // Every wait below ends inside the test's timeout (120 s, vitest.ha.config.ts), so a stall is reported
    // (which client: the producer's status, the workers' and the board's last warnings), not a bare timeout.
    const testStart = Date.now();
    const budgetEnd = testStart + 110_000;
    const left = (reserve: number) => Math.max(1_000, budgetEnd - reserve - Date.now());
    const up = await upstreamOnce();
    const s = await sentinelSetup();
    const HOST = 's-kill';
    const f = await fleet(s, HOST, { failoverDetector: true });
    const board: BoardProcess = await startBoardProcess({ FLEETQ_REDIS_SENTINELS: s.seeds, FLEETQ_REDIS_SENTINEL_NAME: s.name, ...CREDS });
    cleanups.push(() => board.stop());
    let killedAt = 0;
    const diagnose = async () => {
      const health = await fetch(`${board.url}/healthz`, { signal: AbortSignal.timeout(2_000) })
        .then(async (r) => `${r.status} ${(await r.text()).slice(0, 200)}`)
        .catch((err: Error) => `no answer (${err.message})`);
      const warnings = (logs: Array<Record<string, unknown>>) =>
        logs.filter((l) => Number(l.level) >= 40).slice(-4).map((l) => `${String(l.time ?? '')} ${String(l.msg)} ${String((l.err as any)?.message ?? l.err ?? '')}`.slice(0, 300));
      return {
        producerStatus: f.conn.status,
        producerQueueClientStatus: ((await Promise.race([f.queue.getBackend().client, new Promise((r) => setTimeout(r, 1_000))])) as Redis | undefined)?.status ?? 'not ready in 1 s',
        workerExitCodes: f.workers.map((w) => w.proc.exitCode),
        workerWarnings: f.workers.map((w) => warnings(w.logs)),
        boardHealth: health,
        boardWarnings: warnings(board.logs()),
        sinceKillMs: killedAt ? Date.now() - killedAt : undefined,
        sinceStartMs: Date.now() - testStart,
      };
    };
    /** `p`, or a failure naming `what` and the clients' states once `ms` passed. */
    const within = async <T>(what: string, ms: number, p: Promise<T>): Promise<T> => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
      });
      try {
        return await Promise.race([p, timeout]);
      } catch (err) {
        const d = await diagnose();
        reportFigures('sentinel kill -9 primary: STALLED', { what, error: (err as Error).message, ...d });
        throw new Error(`${what}: ${(err as Error).message}\n${JSON.stringify(d, null, 1)}`);
      } finally {
        clearTimeout(timer);
      }
    };
    const img = rawImage(512 * 1024);
    const url = up.serve('/sentinel/kill.img', img.body);
    const JOBS = 120;

    let crash: Promise<{ ms: number; reviveMs: number }> | undefined;
    const addsDeadline = Date.now() + left(45_000);
    const recordsP = pacedAdds({
      queue: f.queue,
      count: JOBS,
      everyMs: 30,
      idPrefix: 'k',
      data: () => ({ image: url, imageDigest: img.digest }),
      opts: { attempts: 5, backoff: { type: 'fixed', delay: 500 } },
      waitMs: 200,
      confirm: true,
      deadline: addsDeadline,
      onAcked: (i) => {
        if (i !== 39) return;
        killedAt = Date.now();
        crash = s.crashPrimary().then(async ({ killed, ms }) => {
          const t = Date.now();
          await s.revive(killed);
          return { ms, reviveMs: Date.now() - t };
        });
        crash.catch(() => {}); // reported where it is awaited
      },
    });
    // An add can hang (maxRetriesPerRequest null) when the producer's client is gone for good.
    const records = await within('the producer adding the jobs', addsDeadline - Date.now() + 5_000, recordsP);
    const neverAcked = records.filter((r) => r.ackedAt === undefined).length;
    if (neverAcked > 0) {
      const d = await diagnose();
      reportFigures('sentinel kill -9 primary: STALLED', { what: 'adds', neverAcked, addErrorSample: records.find((r) => r.lastError)?.lastError, ...d });
    }
    const { ms: promotionMs, reviveMs } = await within('the crash and revival of the primary', left(40_000), crash!);
    const accountMs = left(30_000);
    const a = await within('accounting for the jobs', accountMs + 5_000, account(f.queue, records, accountMs));
    if (a.stuck.length > 0 || a.lost.length > 0) reportFigures('sentinel kill -9 primary: STALLED', { what: 'jobs not completed', stuck: a.stuck.length, lost: a.lost.length, ...(await diagnose()) });
    const last = a.finishedOn.at(-1) ?? killedAt;
    const figures = {
      jobs: JOBS,
      acknowledged: a.acked,
      completed: a.completed,
      lost: a.lost.length,
      recreatedByProducer: a.recreated,
      stuck: a.stuck.length,
      addErrors: a.addErrors,
      addErrorSample: records.find((r) => r.lastError)?.lastError,
      reAdds: a.reAdds,
      waitOnNewConnection: a.waitOnNewConnection,
      promotionMs,
      workersResumedMs: await within('reading when the workers resumed', 10_000, resumedAfter(f.queue, records, killedAt)),
      longestProcessingGapMs: longestGap(a.finishedOn, killedAt, last),
      reviveMs,
      completionsAfterKillPerWorker: f.workers.map((w) => doneAfter(w, killedAt)),
      primarySwitches: await within('asking the sentinels', 5_000, s.switchCount()),
      producerStatus: f.conn.status,
      // Sentinel clients that ioredis ended after the failover and that connected again (RevivingSentinelRedis).
      producerRevivals: (f.conn as Redis & { revivals?: number }).revivals,
      workerRevivals: f.workers.map((w) => w.logs.filter((l) => /ended without being closed/.test(String(l.err ?? ''))).length),
      boardRevivals: board.logs().filter((l) => /ended without being closed/.test(String(l.msg))).length,
      workerWarnings: f.workers.map((w) => w.logs.filter((l) => Number(l.level) >= 40).slice(-3).map((l) => `${String(l.msg)} ${String(l.err ?? '')}`)),
    };
    reportFigures('sentinel kill -9 primary', figures);

    expect(a.neverAcked).toBe(0);
    expect(a.lost).toEqual([]);
    expect(a.stuck).toEqual([]);
    expect(a.completed).toBe(JOBS);
    // Both worker processes, never restarted, processed jobs after the failover.
    expect(figures.workersResumedMs).toBeLessThan(30_000);
    for (const w of f.workers) expect(w.proc.exitCode).toBeNull();
    await expect.poll(() => f.workers.map((w) => doneAfter(w, killedAt) > 0), { timeout: 10_000, interval: 100 }).toEqual([true, true]);
    // The board follows the new primary: healthy, and its counts are the new primary's.
    let lastHealth = '';
    const healthz = async () => {
      const r = await fetch(`${board.url}/healthz`, { signal: AbortSignal.timeout(2_000) });
      lastHealth = await r.text();
      return r.status;
    };
    const boardWentHealthy = Date.now();
    await expect
      .poll(healthz, { timeout: 12_000, interval: 250 })
      .toBe(200)
      .catch((err: Error) => {
        const logs = board.logs().slice(-8).map((l) => JSON.stringify(l)).join('\n');
        throw new Error(`${err.message}\nboard /healthz said: ${lastHealth}\nboard log:\n${logs}\nboard stderr: ${board.stderr().slice(-500)}\nsince test start: ${Date.now() - testStart} ms`);
      });
    reportFigures('sentinel kill -9 primary: board', { healthyAgainAfterAccountingMs: Date.now() - boardWentHealthy, sinceKillMs: Date.now() - killedAt });
    const completedOnBoard = async () => {
      const body = (await (await fetch(`${board.url}/api/queues`, { headers: AUTH, signal: AbortSignal.timeout(2_000) })).json()) as any;
      return body.queues.find((q: any) => q.name === boardName('images', HOST))?.counts?.completed;
    };
    await expect.poll(completedOnBoard, { timeout: 8_000, interval: 250 }).toBe(JOBS);
  });

  interface GracefulConfig {
    label: string;
    failoverDetector: boolean;
    /** WAIT after each add, re-adding while fewer than `waitReplicas` replicas have the job. */
    confirm: boolean;
    nodeArgs: string[];
    /** Replicas of the primary (default 1). */
    replicas?: number;
    /** What WAIT asks for (default 1). */
    waitReplicas?: number;
  }
  const MINIMAL: GracefulConfig = { label: 'failoverDetector + WAIT 1 with re-add', failoverDetector: true, confirm: true, nodeArgs: [] };
  const WEAKER: GracefulConfig[] = [
    { label: 'ioredis defaults', failoverDetector: false, confirm: false, nodeArgs: [] },
    { label: 'failoverDetector', failoverDetector: true, confirm: false, nodeArgs: [] },
    { label: 'failoverDetector + min-replicas-to-write 1', failoverDetector: true, confirm: false, nodeArgs: ['--min-replicas-to-write', '1', '--min-replicas-max-lag', '2'] },
    // Two replicas: the one not promoted stays attached to the old primary until the sentinels move it,
    // so WAIT 1 there can be answered by a replica whose copy is about to be thrown away.
    { label: '2 replicas, failoverDetector + WAIT 1 with re-add', failoverDetector: true, confirm: true, nodeArgs: [], replicas: 2, waitReplicas: 1 },
    { label: '2 replicas, failoverDetector + WAIT 2 with re-add', failoverDetector: true, confirm: true, nodeArgs: [], replicas: 2, waitReplicas: 2 },
  ];
  const configs = process.env.FLEETQ_HA_FULL === '1' ? [...WEAKER, MINIMAL] : [MINIMAL];

  for (const cfg of configs) {
    it(`graceful SENTINEL FAILOVER during a workload (${cfg.label}): losses counted; none that a replica confirmed`, async () => {
      const up = await upstreamOnce();
      const s = await sentinelSetup(cfg.nodeArgs, cfg.replicas ?? 1);
      const HOST = `s-graceful-${configs.indexOf(cfg)}`;
      const f = await fleet(s, HOST, { failoverDetector: cfg.failoverDetector });
      const img = rawImage(256 * 1024);
      const url = up.serve(`/sentinel/${HOST}.img`, img.body);
      const JOBS = 200;

      let failover: ReturnType<TestSentinel['gracefulFailover']> | undefined;
      let startedAt = 0;
      const records = await pacedAdds({
        queue: f.queue,
        count: JOBS,
        everyMs: 60,
        idPrefix: 'g',
        data: () => ({ image: url, imageDigest: img.digest }),
        opts: { attempts: 5, backoff: { type: 'fixed', delay: 500 } },
        waitMs: 200,
        waitReplicas: cfg.waitReplicas ?? 1,
        confirm: cfg.confirm,
        deadline: Date.now() + 90_000,
        onAcked: (i) => {
          if (i !== 29) return;
          startedAt = Date.now();
          failover = s.gracefulFailover();
          failover.catch(() => {}); // reported where it is awaited
        },
      });
      const fo = await failover!;
      const a = await account(f.queue, records, 60_000);
      const replicas = cfg.replicas ?? 1;
      const waitReplicas = cfg.waitReplicas ?? 1;
      const confirmed = new Set(records.filter((r) => (r.replicas ?? 0) >= waitReplicas).map((r) => r.id));
      const lostConfirmed = a.lost.filter((id) => confirmed.has(id));
      const figures = {
        config: cfg.label,
        nodeArgs: cfg.nodeArgs.join(' '),
        replicas,
        waitReplicas,
        jobs: JOBS,
        acknowledged: a.acked,
        completed: a.completed,
        lost: a.lost.length,
        lostConfirmedByReplica: lostConfirmed.length,
        recreatedByProducer: a.recreated,
        stuck: a.stuck.length,
        addErrors: a.addErrors,
        addErrorSample: records.find((r) => r.lastError)?.lastError,
        reAdds: a.reAdds,
      waitOnNewConnection: a.waitOnNewConnection,
        switchedMs: fo.switchedMs,
        oldPrimaryDemotedMs: fo.demotedMs,
        longestProcessingGapMs: longestGap(a.finishedOn, startedAt, a.finishedOn.at(-1) ?? startedAt),
        processedTimes: f.workers.reduce((n, w) => n + w.logs.filter((l) => l.msg === 'ensure-image done').length, 0),
        primarySwitches: await s.switchCount(),
      };
      reportFigures(`sentinel graceful failover (${cfg.label})`, figures);

      // Guaranteed only when WAIT counted every replica: then the promoted one had the job.
      if (waitReplicas >= replicas) expect(lostConfirmed, 'jobs every replica had confirmed, then lost').toEqual([]);
      expect(a.stuck, 'jobs that exist but did not complete').toEqual([]);
      expect(a.completed + a.lost.length).toBe(a.acked);
      for (const w of f.workers) expect(w.proc.exitCode).toBeNull();
      if (cfg.confirm && waitReplicas >= replicas) {
        // Re-adding until every replica has it: every job is there in the end, and completes.
        expect(a.lost).toEqual([]);
        expect(a.completed).toBe(JOBS);
      }
    });
  }
});
