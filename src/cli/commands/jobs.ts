/** `fleetq jobs ls`, `fleetq jobs watch` (= `jobs ls --watch`) and `fleetq jobs show ID`. */
import { Job } from 'bullmq';
import type { Command } from 'commander';
import { redactDeep, redactUrl } from '../../lib/redact.js';
import { formatDuration } from '../../lib/units.js';
import type { Fleet } from '../../ops/fleet.js';
import { lastActivity, type UserState } from '../../ops/job-filter.js';
import { NotFoundError } from '../exit-codes.js';
import { addFilterFlags, type FilterFlags, hostList, toFilter, withFleet } from '../fleet-command.js';
import { durationFlag } from '../flags.js';
import { ago, human, printJson, printJsonLine, printLine, printTable, tableLines } from '../output.js';
import { UsageError } from '../usage-error.js';
import { changeLine, diffRows, progressCell, rowKey, type WatchRow } from '../watch.js';

interface LsFlags extends FilterFlags {
  watch?: boolean;
  interval?: number;
}

const WATCH_STATES: UserState[] = ['waiting', 'active', 'delayed', 'failed'];

type Row = WatchRow & { image?: string | undefined; digest?: unknown };

async function listRows(fleet: Fleet, f: FilterFlags, states: UserState[], limit: number | undefined): Promise<Row[]> {
  const hosts = await fleet.resolveHosts(hostList(f.host));
  const refs = fleet.queuesFor(hosts, f.queue ? [f.queue] : undefined);
  const rows: Row[] = [];
  for await (const { ref, job, state } of fleet.scan(refs, states, toFilter(f))) {
    rows.push({
      id: job.id!,
      host: ref.host,
      queue: ref.kind,
      name: job.name,
      state,
      attemptsMade: job.attemptsMade ?? 0,
      attempts: job.opts.attempts ?? 1,
      progress: progressCell(job.progress),
      reason: job.failedReason || undefined,
      when: lastActivity(job),
      image: typeof job.data?.image === 'string' ? job.data.image : undefined, // printJson / printTable redact every field
      digest: job.data?.imageDigest,
    });
    if (limit && rows.length >= limit) break;
  }
  return rows;
}

export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').description('find jobs and see why they failed');

  const watchOptions = (cmd: Command) =>
    cmd.option('--interval <duration>', 'with --watch: time between refreshes (default 2s)', durationFlag('--interval'));

  watchOptions(
    addFilterFlags(jobs.command('ls').description('list jobs matching filters (newest activity last)'), 'failed').option(
      '-w, --watch',
      'keep listing until Ctrl-C: redraw on a terminal, else one line per change',
    ),
  ).action(async (f: LsFlags) => {
    if (f.watch) return watch(f, f.state ?? ['failed']);
    if (f.interval !== undefined) throw new UsageError('--interval: only with --watch');
    await withFleet(async (fleet) => {
      const rows = await listRows(fleet, f, f.state ?? ['failed'], f.limit);
      if (f.json) {
        return printJson(
          rows.map((r) => ({ id: r.id, host: r.host, queue: r.queue, name: r.name, state: r.state, attempts: `${r.attemptsMade}/${r.attempts}`, when: r.when, image: r.image, digest: r.digest, reason: r.reason })),
        );
      }
      printTable(
        rows.map((r) => ({ ...r, attempts: `${r.attemptsMade}/${r.attempts}`, when: ago(r.when) })),
        ['id', 'host', 'queue', 'name', 'state', 'attempts', 'when', 'reason'],
      );
    });
  });

  watchOptions(
    addFilterFlags(
      jobs.command('watch').description('jobs ls --watch, by default over waiting, active, delayed and failed jobs: redraws on a terminal, else a line per change'),
      WATCH_STATES.join(','),
    ),
  ).action(async (f: LsFlags) => watch(f, f.state ?? WATCH_STATES));

  jobs
    .command('show <id>')
    .description('everything about one job: payload (redacted), state, attempts, reason, logs, parent/children (exit 4 if no such job)')
    .option('--host <ids>', 'look only on these hosts')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: { host?: string; json?: boolean }) => {
      await withFleet(async (fleet) => {
        const hosts = await fleet.resolveHosts(hostList(opts.host));
        for (const ref of fleet.queuesFor(hosts)) {
          const job = await Job.fromId(ref.queue, id);
          if (!job) continue;
          const [state, logs, children] = await Promise.all([job.getState(), ref.queue.getJobLogs(id, 0, 199), job.getDependencies().catch(() => undefined)]);
          const raw = {
            id: job.id,
            host: ref.host,
            queue: ref.name,
            name: job.name,
            state,
            data: job.data,
            attemptsMade: job.attemptsMade,
            attempts: job.opts.attempts ?? 1,
            priority: job.opts.priority,
            createdAt: new Date(job.timestamp).toISOString(),
            processedAt: job.processedOn ? new Date(job.processedOn).toISOString() : undefined,
            finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : undefined,
            failedReason: job.failedReason || undefined,
            stacktrace: job.stacktrace?.slice(-1)[0],
            returnvalue: job.returnvalue,
            progress: job.progress,
            parent: job.parent?.id ? { id: job.parent.id, queue: job.parent.queueKey } : undefined,
            children: children ? { processed: Object.keys(children.processed ?? {}), unprocessed: children.unprocessed ?? [], failed: children.failed ?? [] } : undefined,
            logs: logs.logs,
          };
          // Payload, return value, failed reason, stack trace and job logs may all hold URLs: redact once, for both outputs.
          const out = redactDeep(raw) as typeof raw;
          if (opts.json) return printJson(out);
          for (const [k, v] of Object.entries(out)) {
            if (v === undefined || k === 'logs' || k === 'stacktrace') continue;
            if (k === 'progress' && (v === 0 || (typeof v === 'object' && v !== null && Object.keys(v).length === 0))) continue;
            if (k === 'children' && typeof v === 'object' && v !== null && Object.values(v).every((x) => Array.isArray(x) && x.length === 0)) continue;
            printLine(`${k.padEnd(13)} ${human(v)}`);
          }
          if (out.stacktrace) printLine(`stacktrace:\n${String(out.stacktrace).split('\n').map((l) => `  ${l}`).join('\n')}`);
          if (out.logs.length) printLine(`logs:\n${out.logs.map((l) => `  ${l}`).join('\n')}`);
          return;
        }
        throw new NotFoundError(`no job ${JSON.stringify(id)} on ${hosts.join(', ') || 'any registered host'}`);
      });
    });
}

/** Refresh the listing every --interval until Ctrl-C (exit 0). */
async function watch(f: LsFlags, states: UserState[]): Promise<void> {
  const interval = f.interval ?? 2000;
  if (interval < 100) throw new UsageError('--interval: must be at least 100ms');
  const tty = process.stdout.isTTY === true && !f.json;
  let stop: () => void = () => {};
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    stop = () => {
      stopping = true;
      resolve();
    };
  });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await withFleet(async (fleet) => {
      let prev: Map<string, WatchRow> | undefined;
      while (!stopping) {
        const limit = f.limit ?? (tty ? Math.max(5, (process.stdout.rows || 24) - 4) : 1000);
        const rows = await listRows(fleet, f, states, limit);
        const now = Date.now();
        if (tty) {
          const header = `every ${formatDuration(interval)}: jobs ${states.join(',')}${f.host ? ` on ${f.host}` : ''}${f.queue ? ` in ${f.queue}` : ''}  ${new Date(now).toLocaleTimeString()}  (Ctrl-C to quit)`;
          const table = tableLines(
            rows.map((r) => ({ ...r, attempts: `${r.attemptsMade}/${r.attempts}`, when: ago(r.when, now) })),
            ['id', 'host', 'queue', 'name', 'state', 'attempts', 'progress', 'when', 'reason'],
            Math.max(20, Math.floor((process.stdout.columns || 120) / 3)),
          );
          const cols = process.stdout.columns || 120;
          process.stdout.write(`\x1b[H\x1b[2J${redactUrl(header)}\n\n${table.map((l) => l.slice(0, cols)).join('\n')}\n`);
        } else {
          const { changed, left } = diffRows(prev, rows);
          for (const c of changed) emit(f, c.row, c.prev, now);
          // Jobs that left the listed states: say where they went (completed, removed…).
          for (const r of left.slice(0, 200)) {
            const job = await Job.fromId(fleet.queue(r.host, r.queue as 'images' | 'restores').queue, r.id);
            const state = job ? await job.getState() : 'removed';
            emit(f, { ...r, state, attemptsMade: job?.attemptsMade ?? r.attemptsMade, reason: job?.failedReason || r.reason }, r.state, now);
          }
        }
        prev = new Map(rows.map((r) => [rowKey(r), r]));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([stopped, new Promise((r) => (timer = setTimeout(r, interval)))]);
        clearTimeout(timer);
      }
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

function emit(f: LsFlags, row: WatchRow, prev: string | undefined, now: number): void {
  if (f.json) {
    printJsonLine({ time: new Date(now).toISOString(), id: row.id, host: row.host, queue: row.queue, name: row.name, state: row.state, prev, attemptsMade: row.attemptsMade, attempts: row.attempts, progress: row.progress, reason: row.reason });
  } else {
    printLine(changeLine({ row, prev }, now));
  }
}
