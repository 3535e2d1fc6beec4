/**
 * lock wait as followers grow (10, 100, 1000): the real PullCoordinator and
 * ReleaseNotifier against the bench's redis-server, in two processes. Process
 * A takes the lock as leader; then N followers (half in A, half in B, each
 * with its own coordinator, so each one does SET NX and sleeps on the release
 * channel as a separate worker process would) queue up behind it. When all N
 * are asleep the leader "commits" (writes the marker file its followers'
 * re-check looks for), releases and publishes.
 *
 *   wake latency = follower's run() resolved − leader's commit time
 *
 * The in-process path (followers of one process share one flight and never
 * touch Redis) is cheaper; this measures the cross-process worst case.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { measured } from '../lib/context.js';
import { DIST_BENCH } from '../lib/paths.js';
import { stopChild, track } from '../lib/procs.js';
import { type Row, row } from '../lib/report.js';
import { median, percentile, summarise } from '../lib/stats.js';

interface Ev {
  ev: string;
  tCommit?: number;
  results?: Array<{ tDone: number; role: string; lockWaitMs: number }>;
  message?: string;
}

class Child {
  private readonly events: Ev[] = [];
  private wake: (() => void) | undefined;
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (e: Ev) => {
      this.events.push(e);
      this.wake?.();
    });
  }
  send(m: unknown) {
    this.proc.send(m as never);
  }
  /** The next event named `want` (events may arrive in any order), or the first error. */
  async next(want: string, timeoutMs = 60_000): Promise<Ev> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const err = this.events.findIndex((e) => e.ev === 'error');
      if (err >= 0) throw new Error(`lock-wait child: ${this.events.splice(err, 1)[0]!.message}`);
      const i = this.events.findIndex((e) => e.ev === want);
      if (i >= 0) return this.events.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`lock-wait child: no "${want}" within ${timeoutMs / 1000}s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }
}

export async function lockWait(ctx: BenchContext): Promise<Row[]> {
  const sizes = [10, 100, 1000];
  const script = join(DIST_BENCH, 'lock-wait-child.js');
  const children: Child[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const proc = track(fork(script, [ctx.redisUrl, ctx.prefix, 'bench-lock'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
      const c = new Child(proc);
      children.push(c);
      await c.next('ready', 20_000);
    }
    const [a, b] = children as [Child, Child];
    const rows: Row[] = [];
    for (const n of sizes) {
      const runs = await measured(ctx, `lock wait, ${n} followers`, async () => {
        const digest = `sha256:${randomBytes(32).toString('hex')}`;
        const file = join(ctx.tmp, `lock-${digest.slice(7, 23)}.done`);
        a.send({ cmd: 'lead', digest, file });
        await a.next('leading');
        const na = Math.floor(n / 2);
        a.send({ cmd: 'follow', n: na, digest, file });
        b.send({ cmd: 'follow', n: n - na, digest, file });
        // A's events arrive in order: its followers are asleep before we commit.
        await Promise.all([a.next('waiting'), b.next('waiting')]);
        a.send({ cmd: 'commit' });
        const led = await a.next('led');
        const [fa, fb] = await Promise.all([a.next('followed'), b.next('followed')]);
        const results = [...fa.results!, ...fb.results!];
        if (results.some((r) => r.role !== 'follower')) throw new Error('a follower did not finish as follower');
        const wake = results.map((r) => r.tDone - led.tCommit!);
        const r = { median: median(wake), p99: percentile(wake, 99), max: Math.max(...wake) };
        ctx.log(`  wake after commit: median ${r.median.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms`);
        return r;
      });
      rows.push(
        row({
          scenario: 'lock wait growth',
          name: `lock wait: ${n} followers, wake after release (median)`,
          value: summarise(runs.map((r) => r.median)),
          unit: 'ms',
          goal: 'report',
          pass: null,
          details: {
            p99PerRun: runs.map((r) => r.p99),
            maxPerRun: runs.map((r) => r.max),
            note: `p99 ${summarise(runs.map((r) => r.p99)).median.toFixed(1)} ms, max ${summarise(runs.map((r) => r.max)).median.toFixed(1)} ms (medians over runs)`,
          },
        }),
      );
    }
    return rows;
  } finally {
    for (const c of children) {
      try {
        c.send({ cmd: 'exit' });
      } catch {
        /* gone */
      }
      await stopChild(c.proc, 3_000);
    }
  }
}
