/**
 * `enqueue … --wait`: follow one job to its end and show how it goes, on stderr.
 *
 *   - On a terminal: one line redrawn in place — a bar with bytes, rate and
 *     ETA for pulls, the phase for restores (and its base image's pull), the
 *     attempt n/N, and the backoff countdown between attempts. Failed attempts
 *     are kept above it as lines of their own.
 *   - Otherwise (logs, CI): one line per change — queued, active (attempt n/N),
 *     progress as it passes 25/50/75 %, attempt n/N failed … retrying in Xs, a restore's phases.
 *
 * The end (completed / failed after n attempts) is the command's own result
 * line on stdout. Job progress is read in every shape fleetq writes:
 * `{progress: 0-100, bytes, total, rate}` and the older `{bytes, total, rate}`
 * for pulls, `{phase, startedAt}` for restores, or a plain number.
 *
 * The job is followed through its queue's events (immediate) and a poll every
 * second (nothing is missed if an event is: the poll reads the job itself).
 */
import { Job, type Queue, type QueueEvents } from 'bullmq';
import type { RedisClient } from '../redis/connect.js';
import { formatBytes, formatDuration } from '../lib/units.js';

/** One look at the job (and a restore's base-image job), as the reporters need it. */
export interface JobSnapshot {
  id: string;
  /** A BullMQ state, or `gone` when the job no longer exists. */
  state: string;
  /** Attempts finished so far (BullMQ's attemptsMade: failed ones while it runs; all, once finished). */
  attemptsMade: number;
  /** The attempt budget (job.opts.attempts). */
  attempts: number;
  progress?: unknown;
  failedReason?: string | undefined;
  /** When a delayed job becomes due: the retry backoff, or --delay. */
  dueAt?: number | undefined;
  returnvalue?: unknown;
  /** When the current attempt started (job.processedOn). */
  processedOn?: number | undefined;
  /** A restore's base-image job, while the restore waits for it. */
  child?: ChildSnapshot | undefined;
}

export interface ChildSnapshot {
  id: string;
  state: string;
  attemptsMade: number;
  attempts: number;
  progress?: unknown;
}

export interface ProgressInfo {
  percent?: number;
  bytes?: number;
  total?: number;
  /** Bytes per second. */
  rate?: number;
  /** A restore's phase (inspecting, ensuring-image, cloning, restoring). */
  phase?: string;
  startedAt?: number;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);

/** Job progress in any shape fleetq writes → what can be shown. Pure. */
export function readProgress(p: unknown): ProgressInfo {
  if (typeof p === 'number') return Number.isFinite(p) ? { percent: Math.max(0, Math.min(100, p)) } : {};
  if (!p || typeof p !== 'object') return {};
  const o = p as Record<string, unknown>;
  const info: ProgressInfo = {};
  const bytes = num(o.bytes);
  const total = num(o.total);
  const rate = num(o.rate);
  if (bytes !== undefined) info.bytes = bytes;
  if (total !== undefined && total > 0) info.total = total;
  if (rate !== undefined) info.rate = rate;
  const pct = num(o.progress);
  if (pct !== undefined) info.percent = Math.min(100, pct);
  else if (info.total !== undefined && bytes !== undefined) info.percent = Math.min(100, (bytes / info.total) * 100);
  if (typeof o.phase === 'string') info.phase = o.phase;
  const startedAt = num(o.startedAt);
  if (startedAt !== undefined) info.startedAt = startedAt;
  return info;
}

/** `230.4 MiB of 480.0 MiB, 40.2 MiB/s, ETA 6s` (the parts that are known). Pure. */
export function describeTransfer(info: ProgressInfo): string {
  const parts: string[] = [];
  if (info.bytes !== undefined) parts.push(info.total !== undefined ? `${formatBytes(info.bytes)} of ${formatBytes(info.total)}` : formatBytes(info.bytes));
  if (info.rate !== undefined && info.rate > 0) parts.push(`${formatBytes(info.rate)}/s`);
  const eta = etaMs(info);
  if (eta !== undefined) parts.push(`ETA ${formatDuration(eta)}`);
  return parts.join(', ');
}

function etaMs(info: ProgressInfo): number | undefined {
  if (info.total === undefined || info.bytes === undefined || !info.rate) return undefined;
  return Math.max(0, ((info.total - info.bytes) / info.rate) * 1000);
}

/** Strip the promise of a retry that old failed reasons carry ("(upstream error: will retry)"). Pure. */
export function finalReason(reason: string | undefined): string {
  return (reason ?? '').replace(/\(upstream error: will retry\)/g, '(upstream server error)').replace(/[;:,]?\s*\bwill (?:be )?retr(?:y|ied)\b/gi, '').trim();
}

/**
 * The command's result line for a finished job: how it ended and, for a
 * failure, how many attempts it used (never "will retry": nothing will). Pure.
 */
export function finalMessage(s: JobSnapshot): string {
  if (s.state === 'completed') {
    const rv = (s.returnvalue ?? {}) as { outcome?: unknown; digest?: unknown };
    const what = [rv.outcome, rv.digest].filter((x) => typeof x === 'string').join(' ');
    return `${s.id} completed${what ? `: ${what}` : ''}${s.attemptsMade > 1 ? ` (attempt ${s.attemptsMade} of ${s.attempts})` : ''}`;
  }
  if (s.state === 'failed') {
    const reason = finalReason(s.failedReason);
    const used =
      s.attemptsMade >= s.attempts
        ? s.attempts === 1
          ? 'failed (1 attempt, no retries configured)'
          : `failed after ${s.attemptsMade} attempts (all of ${s.attempts})`
        : `failed on attempt ${s.attemptsMade} of ${s.attempts}, not retried (permanent error)`;
    return `${s.id} ${used}${reason ? `: ${reason}` : ''}`;
  }
  if (s.state === 'gone') return `${s.id} no longer exists (removed before it finished?)`;
  return `${s.id} ${s.state}`;
}

const MARKS = [25, 50, 75] as const;

/**
 * Non-terminal output: one line per change, fed with successive snapshots.
 * `update` returns the lines (without prefix) so it can be tested alone.
 */
export class LineReporter {
  private prev: JobSnapshot | undefined;
  private marks = new Set<number>();
  private childMarks = new Set<string>();
  private phase: string | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  update(s: JobSnapshot): string[] {
    const out: string[] = [];
    const p = this.prev;
    this.prev = s;
    const final = s.state === 'completed' || s.state === 'failed' || s.state === 'gone';
    const info = readProgress(s.progress);
    let stateSaid = false;
    if (p && s.attemptsMade > p.attemptsMade && !final) {
      this.marks.clear();
      const retry = s.state === 'delayed' && s.dueAt !== undefined ? `retrying in ${formatDuration(Math.max(0, s.dueAt - this.now()))}` : 'retrying now';
      out.push(`attempt ${s.attemptsMade}/${s.attempts} failed: ${finalReason(s.failedReason) || 'no reason given'}; ${retry}`);
      stateSaid = s.state !== 'active';
    }
    if (!final && (!p || p.state !== s.state || (s.state === 'active' && p.attemptsMade !== s.attemptsMade)) && !stateSaid) {
      const line = this.stateLine(s, p);
      if (line) out.push(line);
    }
    if (s.state === 'active') {
      if (info.phase && info.phase !== this.phase) out.push(`phase: ${info.phase}`);
      const crossed = info.percent !== undefined ? MARKS.filter((m) => info.percent! >= m && !this.marks.has(m)) : [];
      for (const m of crossed) this.marks.add(m);
      if (crossed.length) out.push(`${Math.floor(info.percent!)}%${describeTransfer(info) ? ` (${describeTransfer(info)})` : ''}`);
    }
    if (info.phase) this.phase = info.phase;
    if (s.child) out.push(...this.childLines(s.child, p?.child));
    return out;
  }

  private stateLine(s: JobSnapshot, p: JobSnapshot | undefined): string | undefined {
    switch (s.state) {
      case 'active':
        this.marks.clear();
        return `active (attempt ${s.attemptsMade + 1}/${s.attempts})`;
      case 'waiting':
      case 'prioritized':
        return p ? (p.state === 'active' ? 'back to waiting (its worker stopped or stalled)' : 'waiting for a worker') : undefined;
      case 'delayed': {
        const left = s.dueAt !== undefined ? ` in ${formatDuration(Math.max(0, s.dueAt - this.now()))}` : '';
        if (s.attemptsMade > 0) return `attempt ${s.attemptsMade}/${s.attempts} failed: ${finalReason(s.failedReason) || 'no reason given'}; retrying${left}`;
        return `delayed: starts${left || ' later'}`;
      }
      case 'waiting-children':
        return `waiting for its base image${s.child ? ` (job ${s.child.id})` : ''}`;
      default:
        return s.state;
    }
  }

  private childLines(c: ChildSnapshot, prev: ChildSnapshot | undefined): string[] {
    const out: string[] = [];
    if (!prev || prev.id !== c.id || prev.state !== c.state || prev.attemptsMade !== c.attemptsMade) {
      out.push(`base image job ${c.id}: ${c.state === 'active' ? `active (attempt ${c.attemptsMade + 1}/${c.attempts})` : c.state}`);
    }
    const info = readProgress(c.progress);
    if (c.state === 'active' && info.percent !== undefined) {
      const crossed = MARKS.filter((m) => info.percent! >= m && !this.childMarks.has(`${c.id}/${c.attemptsMade}/${m}`));
      for (const m of crossed) this.childMarks.add(`${c.id}/${c.attemptsMade}/${m}`);
      if (crossed.length) out.push(`base image ${Math.floor(info.percent!)}%${describeTransfer(info) ? ` (${describeTransfer(info)})` : ''}`);
    }
    return out;
  }
}

/** A text bar: `[##########..........]`. Pure. */
export function bar(percent: number, width = 20): string {
  const filled = Math.max(0, Math.min(width, Math.round((percent / 100) * width)));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** The terminal status line for a snapshot (redrawn in place). Pure. */
export function statusLine(s: JobSnapshot, now: number, since: number): string {
  const attempt = `attempt ${Math.min(s.attemptsMade + 1, s.attempts)}/${s.attempts}`;
  const transfer = (info: ProgressInfo) => {
    const t = describeTransfer(info);
    return `${info.percent !== undefined ? `${bar(info.percent)} ${Math.floor(info.percent)}%` : ''}${t ? `${info.percent !== undefined ? '  ' : ''}${t}` : ''}`;
  };
  // The full id is on the "queued" line above: a long one (a UUID) is cut here, so the bar fits.
  const head = `job ${s.id.length > 14 ? `${s.id.slice(0, 8)}…` : s.id}`;
  switch (s.state) {
    case 'active': {
      const info = readProgress(s.progress);
      if (info.phase) {
        const child = s.child && s.child.state === 'active' ? `  base image ${transfer(readProgress(s.child.progress))}` : '';
        return `${head}  ${attempt}  ${info.phase}${info.startedAt ? ` ${formatDuration(now - info.startedAt)}` : ''}${child}`;
      }
      // Nothing received yet in this attempt (progress still 0): say how long it has been going.
      const t = info.bytes === undefined && !info.percent ? '' : transfer(info);
      return `${head}  ${attempt}  ${t || `starting ${formatDuration(now - (s.processedOn ?? since))}`}`;
    }
    case 'delayed': {
      const left = s.dueAt !== undefined ? formatDuration(Math.max(0, s.dueAt - now)) : undefined;
      if (s.attemptsMade > 0) {
        return `${head}  attempt ${s.attemptsMade}/${s.attempts} failed; retrying${left ? ` in ${left}` : ''} (attempt ${s.attemptsMade + 1}/${s.attempts})`;
      }
      return `${head}  delayed${left ? `: starts in ${left}` : ''}`;
    }
    case 'waiting-children': {
      const c = s.child;
      if (!c) return `${head}  waiting for its base image`;
      const info = readProgress(c.progress);
      return `${head}  base image ${c.state === 'active' ? `attempt ${c.attemptsMade + 1}/${c.attempts}  ${transfer(info) || 'pulling'}` : c.state}`;
    }
    case 'waiting':
    case 'prioritized':
      return `${head}  queued, waiting for a worker ${formatDuration(now - since)}`;
    default:
      return `${head}  ${s.state}`;
  }
}

/** How the waiter shows what happens. */
export interface WaitView {
  update(s: JobSnapshot): void;
  /** Called before the result is printed: leave the terminal clean. */
  end(): void;
}

/** One line per change on `write` (stderr when it is not a terminal). */
export function lineView(id: string, write: (line: string) => void, now: () => number = Date.now): WaitView {
  const r = new LineReporter(now);
  return {
    update(s) {
      for (const l of r.update(s)) write(`job ${id}: ${l}`);
    },
    end() {},
  };
}

/** A status line redrawn in place on a terminal; failed attempts stay above it. */
export function barView(stream: NodeJS.WriteStream, redact: (s: string) => string = (s) => s, now: () => number = Date.now): WaitView {
  const since = now();
  let last: JobSnapshot | undefined;
  let drawn = false;
  const cols = () => Math.max(20, (stream.columns || 80) - 1); // 0 on a terminal of unknown size
  const draw = () => {
    if (!last) return;
    const text = redact(statusLine(last, now(), since));
    stream.write(`\r\x1b[K${text.length > cols() ? `${text.slice(0, cols() - 1)}…` : text}`);
    drawn = true;
  };
  const above = (line: string) => {
    stream.write(`\r\x1b[K${redact(line)}\n`);
    draw();
  };
  const timer = setInterval(draw, 250);
  timer.unref();
  return {
    update(s) {
      if (last && s.attemptsMade > last.attemptsMade && s.state !== 'completed' && s.state !== 'failed' && s.state !== 'gone') {
        above(`job ${s.id}: attempt ${s.attemptsMade}/${s.attempts} failed: ${finalReason(s.failedReason) || 'no reason given'}`);
      }
      last = s;
      draw();
    },
    end() {
      clearInterval(timer);
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}

export interface WaitOptions {
  queue: Queue;
  /** A (non-blocking) connection to the queue's Redis, for reading a delayed job's due time. */
  redis: RedisClient;
  events: QueueEvents;
  jobId: string;
  view: WaitView;
  timeoutMs?: number | undefined;
  /** A restore's images queue (and its events): its base-image job is shown too. */
  child?: { queue: Queue; events?: QueueEvents | undefined; idFor: (attemptsMade: number) => string } | undefined;
  pollMs?: number;
}

export interface WaitOutcome {
  /** completed | failed | gone (the job vanished) | timeout (still running). */
  end: 'completed' | 'failed' | 'gone' | 'timeout';
  snapshot: JobSnapshot;
}

const JOB_EVENTS = ['active', 'progress', 'delayed', 'waiting', 'completed', 'failed', 'waiting-children', 'stalled', 'removed', 'retries-exhausted'] as const;

/** Follow `jobId` until it completes or fails (or the timeout): every change goes to `view`. */
export async function waitWithProgress(o: WaitOptions): Promise<WaitOutcome> {
  let last: JobSnapshot = { id: o.jobId, state: 'waiting', attemptsMade: 0, attempts: 1 };

  const snapshot = async (): Promise<JobSnapshot> => {
    let job = await Job.fromId(o.queue, o.jobId);
    if (!job) return { ...last, state: 'gone' };
    const state = await job.getState();
    // Finished between the two reads: read the hash again, so the result (return value, reason) is the final one.
    if (state === 'completed' || state === 'failed') job = (await Job.fromId(o.queue, o.jobId)) ?? job;
    const s: JobSnapshot = {
      id: o.jobId,
      state: String(state) === 'wait' ? 'waiting' : state,
      attemptsMade: job.attemptsMade ?? 0,
      attempts: job.opts.attempts ?? 1,
      progress: job.progress,
      failedReason: job.failedReason || undefined,
      returnvalue: job.returnvalue,
      processedOn: job.processedOn,
    };
    if (s.state === 'delayed') {
      // BullMQ scores a delayed job at (due time × 4096 + sequence) (commands/includes/getDelayedScore.lua).
      const score = await o.redis.zscore(o.queue.keys.delayed!, o.jobId);
      if (score !== null) s.dueAt = Math.floor(Number(score) / 0x1000);
    }
    const phase = readProgress(s.progress).phase;
    if (o.child && (s.state === 'waiting-children' || phase === 'ensuring-image')) {
      const cid = o.child.idFor(s.attemptsMade);
      const c = await Job.fromId(o.child.queue, cid);
      if (c) {
        const cs = await c.getState();
        s.child = { id: cid, state: String(cs) === 'wait' ? 'waiting' : cs, attemptsMade: c.attemptsMade ?? 0, attempts: c.opts.attempts ?? 1, progress: c.progress };
      }
    }
    return s;
  };

  return new Promise<WaitOutcome>((resolve, reject) => {
    let done = false;
    let running = false;
    let again = false;
    const finish = (r: WaitOutcome | Error) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      if (timeout) clearTimeout(timeout);
      for (const [ev, fn] of listeners) o.events.off(ev as 'active', fn as never);
      for (const [ev, fn] of childListeners) o.child?.events?.off(ev as 'active', fn as never);
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const refresh = async () => {
      if (done) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          const s = await snapshot();
          if (done) return;
          last = s;
          o.view.update(s);
          if (s.state === 'completed' || s.state === 'failed' || s.state === 'gone') return finish({ end: s.state, snapshot: s });
        } while (again && !done);
      } catch (err) {
        finish(err as Error);
      } finally {
        running = false;
      }
    };
    const listeners: Array<[string, (...a: unknown[]) => void]> = [];
    const childListeners: Array<[string, (...a: unknown[]) => void]> = [];
    for (const ev of JOB_EVENTS) {
      const fn = (args: unknown) => {
        if ((args as { jobId?: string })?.jobId === o.jobId) void refresh();
      };
      o.events.on(ev as 'active', fn as never);
      listeners.push([ev, fn]);
      if (o.child?.events) {
        const cfn = (args: unknown) => {
          if ((args as { jobId?: string })?.jobId?.startsWith(`${o.jobId}.`)) void refresh();
        };
        o.child.events.on(ev as 'active', cfn as never);
        childListeners.push([ev, cfn]);
      }
    }
    const poll = setInterval(() => void refresh(), o.pollMs ?? 1000);
    const timeout = o.timeoutMs !== undefined ? setTimeout(() => finish({ end: 'timeout', snapshot: last }), o.timeoutMs) : undefined;
    void refresh();
  });
}
