/** `fleetq jobs ls` and `fleetq jobs show ID`. */
import { Job } from 'bullmq';
import type { Command } from 'commander';
import { redactDeep } from '../../lib/redact.js';
import { lastActivity } from '../../ops/job-filter.js';
import { ago, printJson, printLine, printTable } from '../output.js';
import { addFilterFlags, type FilterFlags, hostList, toFilter, withFleet } from '../fleet-command.js';
import { UsageError } from '../usage-error.js';

export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').description('find jobs and see why they failed');

  addFilterFlags(jobs.command('ls').description('list jobs matching filters (newest activity last)'), 'failed').action(async (f: FilterFlags) => {
    await withFleet(async (fleet) => {
      const hosts = await fleet.resolveHosts(hostList(f.host));
      const refs = fleet.queuesFor(hosts, f.queue ? [f.queue] : undefined);
      const rows = [];
      for await (const { ref, job, state } of fleet.scan(refs, f.state ?? ['failed'], toFilter(f))) {
        rows.push({
          id: job.id,
          host: ref.host,
          queue: ref.kind,
          name: job.name,
          state,
          attempts: `${job.attemptsMade}/${job.opts.attempts ?? 1}`,
          when: lastActivity(job),
          image: typeof job.data?.image === 'string' ? job.data.image : undefined, // printJson / printTable redact every field
          digest: job.data?.imageDigest,
          reason: job.failedReason || undefined,
        });
        if (f.limit && rows.length >= f.limit) break;
      }
      if (f.json) return printJson(rows);
      printTable(rows.map((r) => ({ ...r, when: ago(r.when) })), ['id', 'host', 'queue', 'name', 'state', 'attempts', 'when', 'reason']);
    });
  });

  jobs
    .command('show <id>')
    .description('everything about one job: payload (redacted), state, attempts, reason, logs, parent/children')
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
            if (v === undefined || k === 'logs') continue;
            printLine(`${k.padEnd(13)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
          }
          if (out.logs.length) printLine(`logs:\n${out.logs.map((l) => `  ${l}`).join('\n')}`);
          return;
        }
        throw new UsageError(`no job ${JSON.stringify(id)} on ${hosts.join(', ') || 'any registered host'}`);
      });
    });
}
