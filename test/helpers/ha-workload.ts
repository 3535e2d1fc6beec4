/**
 * A paced producer for failover tests and the accounting afterwards: which
 * jobs add() acknowledged, which of those a replica had confirmed (WAIT),
 * which completed, which were lost, and how long processing stopped.
 */
import { appendFileSync } from 'node:fs';
import { Job, type JobsOptions, type Queue } from 'bullmq';
import { closes, replicasAcked } from './ha-clients.js';

export interface AddRecord {
  id: string;
  /** When add() first resolved (the producer was told "added"). */
  ackedAt?: number;
  /** Replicas that had it when the producer was told (WAIT n), when asked; undefined when WAIT failed or ran on another connection. */
  replicas?: number;
  /** WAIT calls that failed (the connection that wrote was gone). */
  waitErrors: number;
  /** Re-adds that found the acknowledged job gone (a lost write, repaired by adding it again). */
  recreated: number;
  /** WAITs discarded because a connection closed between the add and the WAIT (they would have confirmed nothing). */
  waitOnNewConnection: number;
  /** add() calls that failed (retried with the same job id: idempotent). */
  errors: number;
  /** add() calls after the first acknowledgement, because WAIT said no replica had it (confirm mode). */
  reAdds: number;
  lastError?: string;
}

export interface PacedAddOptions {
  queue: Queue;
  count: number;
  /** Start one add every `everyMs` (the adds themselves run one at a time). */
  everyMs: number;
  idPrefix: string;
  data: (i: number) => unknown;
  opts?: JobsOptions;
  /** Ask WAIT `waitReplicas` `waitMs` after each add (0 = do not ask). */
  waitMs?: number;
  /** Replicas WAIT asks for, and that confirm mode requires (default 1). */
  waitReplicas?: number;
  /**
   * Only count a job as added once `waitReplicas` replicas have it: while WAIT says fewer,
   * add it again with the same id (a no-op while it exists, recreates it
   * if the write was lost), until `deadline`.
   */
  confirm?: boolean;
  /** Give up retrying a job at this time (ms since epoch). */
  deadline: number;
  /** Called after job `i` was acknowledged (e.g. to crash a node half-way). */
  onAcked?: (i: number) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function pacedAdds(o: PacedAddOptions): Promise<AddRecord[]> {
  const records: AddRecord[] = [];
  const t0 = Date.now();
  for (let i = 0; i < o.count; i++) {
    const due = t0 + i * o.everyMs;
    if (Date.now() < due) await sleep(due - Date.now());
    const rec: AddRecord = { id: `${o.idPrefix}-${i}`, errors: 0, reAdds: 0, waitErrors: 0, recreated: 0, waitOnNewConnection: 0 };
    records.push(rec);
    while (Date.now() < o.deadline) {
      let epoch = 0;
      try {
        epoch = await closes(o.queue);
        if (rec.ackedAt !== undefined) {
          rec.reAdds++;
          // Gone since it was acknowledged? Then this add recreates it: count the loss it repairs.
          if (!(await Job.fromId(o.queue, rec.id))) rec.recreated++;
        }
        await o.queue.add('ensure-image', o.data(i), { ...o.opts, jobId: rec.id });
        rec.ackedAt ??= Date.now();
      } catch (err) {
        rec.errors++;
        rec.lastError = (err as Error).message;
        await sleep(100);
        continue;
      }
      if (o.waitMs) {
        // WAIT fails when the connection that wrote is gone (its master died): then nobody knows.
        rec.replicas = await replicasAcked(o.queue, o.waitMs, o.waitReplicas ?? 1).catch(() => undefined);
        if (rec.replicas === undefined) rec.waitErrors++;
        else if ((await closes(o.queue)) !== epoch) {
          // The connection that wrote is gone: this WAIT ran on another one and proves nothing.
          rec.replicas = undefined;
          rec.waitOnNewConnection++;
        }
      }
      if (!o.confirm || (rec.replicas ?? 0) >= (o.waitReplicas ?? 1)) break;
      await sleep(50);
    }
    if (rec.ackedAt !== undefined) o.onAcked?.(i);
  }
  return records;
}

export interface Accounting {
  acked: number;
  completed: number;
  /** Acknowledged by add() but gone (no such job) at the end. */
  lost: string[];
  /** Acknowledged and still there, but not completed by the deadline. */
  stuck: string[];
  /** Never acknowledged (every add failed until the deadline). */
  neverAcked: number;
  addErrors: number;
  reAdds: number;
  /** Acknowledged jobs found gone and added again by the producer (confirm mode): losses it repaired. */
  recreated: number;
  /** WAITs discarded: a connection had closed between the add and its WAIT. */
  waitOnNewConnection: number;
  /** Finish times of the completed jobs, sorted. */
  finishedOn: number[];
}

/** Poll the jobs' states until every acknowledged job completed or `timeoutMs` passed; then account for them. */
export async function account(queue: Queue, records: AddRecord[], timeoutMs: number): Promise<Accounting> {
  const acked = records.filter((r) => r.ackedAt !== undefined);
  const until = Date.now() + timeoutMs;
  let jobs: Array<Job | undefined> = [];
  for (;;) {
    // A read that fails says nothing about the job: that is not "lost". Read again until the deadline, then throw.
    let readError: unknown;
    jobs = [];
    for (let i = 0; i < acked.length && !readError; i += 100) {
      try {
        jobs.push(...(await Promise.all(acked.slice(i, i + 100).map((r) => Job.fromId(queue, r.id)))));
      } catch (err) {
        readError = err;
      }
    }
    if (readError) {
      if (Date.now() > until) throw new Error(`cannot read the jobs back from Redis to account for them: ${(readError as Error).message}`);
    } else if (jobs.every((j) => !j || j.finishedOn) || Date.now() > until) {
      // A job that is gone will not come back: stop waiting once every job that exists has finished.
      break;
    }
    await sleep(250);
  }
  const lost: string[] = [];
  const stuck: string[] = [];
  const finishedOn: number[] = [];
  jobs.forEach((j, k) => {
    if (!j) lost.push(acked[k]!.id);
    else if (!j.finishedOn || j.failedReason) stuck.push(acked[k]!.id);
    else finishedOn.push(j.finishedOn);
  });
  finishedOn.sort((a, b) => a - b);
  return {
    acked: acked.length,
    completed: finishedOn.length,
    lost,
    stuck,
    neverAcked: records.length - acked.length,
    addErrors: records.reduce((n, r) => n + r.errors, 0),
    reAdds: records.reduce((n, r) => n + r.reAdds, 0),
    recreated: records.reduce((n, r) => n + r.recreated, 0),
    waitOnNewConnection: records.reduce((n, r) => n + r.waitOnNewConnection, 0),
    finishedOn,
  };
}

/**
 * Time from `at` (a crash) until the first completion of a job that add()
 * acknowledged after `at`: such a job can only have been added to, and
 * processed on, the new master, so this is when the workers were working
 * again. Undefined when none completed.
 */
export async function resumedAfter(queue: Queue, records: AddRecord[], at: number): Promise<number | undefined> {
  let first: number | undefined;
  for (const r of records) {
    if (r.ackedAt === undefined || r.ackedAt <= at) continue;
    const j = await Job.fromId(queue, r.id);
    if (j?.finishedOn && (first === undefined || j.finishedOn < first)) first = j.finishedOn;
  }
  return first === undefined ? undefined : first - at;
}

/** The longest pause between consecutive completions inside [from, to], in ms. */
export function longestGap(finishedOn: number[], from: number, to: number): number {
  const inside = [from, ...finishedOn.filter((t) => t > from && t < to), to];
  let gap = 0;
  for (let i = 1; i < inside.length; i++) gap = Math.max(gap, inside[i]! - inside[i - 1]!);
  return gap;
}

/**
 * Print a failover's figures (one line, `HA figures <what>: {…}`) and, when
 * FLEETQ_HA_FIGURES names a file, append them there as a JSON line
 * (docs/HA-FIGURES.md is written from those).
 */
export function reportFigures(what: string, figures: Record<string, unknown>): void {
  const line = JSON.stringify({ what, at: new Date().toISOString(), ...figures });
  console.log(`HA figures ${what}: ${line}`);
  const file = process.env.FLEETQ_HA_FIGURES;
  if (file) appendFileSync(file, `${line}\n`);
}
