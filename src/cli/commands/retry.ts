/**
 * `fleetq retry`: put failed jobs back, by filter or id; dry-run; batches;
 * summary; safe to re-run. Destructive (a retried restore rolls its VM back
 * again, and dead letters are dropped): asks first, see confirm.ts.
 */
import { Job } from 'bullmq';
import type { Command } from 'commander';
import type { QueueRef } from '../../ops/fleet.js';
import { planRetry, retryJob, type RetryOutcome } from '../../ops/retry-job.js';
import { addConfirmFlags, confirm } from '../confirm.js';
import { EXIT, NotFoundError } from '../exit-codes.js';
import { printErr, printJson, printLine, progressBar } from '../output.js';
import { addFilterFlags, type FilterFlags, hostList, toFilter, withFleet } from '../fleet-command.js';

interface RetryFlags extends FilterFlags {
  id?: string[];
  dryRun?: boolean;
  yes?: boolean;
}

export function registerRetry(program: Command): void {
  addConfirmFlags(
    addFilterFlags(program.command('retry').description('retry failed jobs matching filters (or --id); asks first unless --yes; exit 4 if an --id does not exist'), 'failed').option(
      '--id <ids...>',
      'retry exactly these job ids',
    ),
    'be retried',
  ).action(async (f: RetryFlags) => {
    await withFleet(async (fleet) => {
      const hosts = await fleet.resolveHosts(hostList(f.host));
      const refs = fleet.queuesFor(hosts, f.queue ? [f.queue] : undefined);
      // Phase 1: collect matching ids page by page (only ids are kept in memory).
      const targets: Array<{ ref: QueueRef; id: string }> = [];
      const notFound: string[] = [];
      if (f.id?.length) {
        for (const id of f.id) {
          let found = false;
          for (const ref of refs) {
            if (await Job.fromId(ref.queue, id)) {
              targets.push({ ref, id });
              found = true;
            }
          }
          if (!found) notFound.push(id);
        }
        if (targets.length === 0) throw new NotFoundError(`no job ${notFound.map((i) => JSON.stringify(i)).join(', ')} on ${hosts.join(', ') || 'any registered host'}`);
      } else {
        for await (const { ref, job } of fleet.scan(refs, f.state ?? ['failed'], toFilter(f))) {
          targets.push({ ref, id: job.id! });
          if (f.limit && targets.length >= f.limit) break;
        }
      }
      if (!f.dryRun && targets.length > 0) {
        const where = [...new Set(targets.map((t) => t.ref.name))];
        await confirm(`retry ${targets.length} job${targets.length === 1 ? '' : 's'} in ${where.length > 3 ? `${where.length} queues` : where.join(', ')}`, f);
      }
      // Phase 2: act in batches.
      const results: Array<RetryOutcome & { host: string; queue: string }> = [];
      let errors = 0;
      const bar = f.dryRun || f.json ? undefined : progressBar('retrying', targets.length);
      const BATCH = 100;
      for (let i = 0; i < targets.length; i += BATCH) {
        await Promise.all(
          targets.slice(i, i + BATCH).map(async ({ ref, id }) => {
            try {
              const job = await Job.fromId(ref.queue, id);
              if (!job) results.push({ action: 'skipped', id, why: 'no longer exists', host: ref.host, queue: ref.kind });
              else results.push({ ...(f.dryRun ? await planRetry(job) : await retryJob(fleet, ref, job)), host: ref.host, queue: ref.kind });
            } catch (err) {
              errors++;
              results.push({ action: 'skipped', id, why: `error: ${(err as Error).message}`, host: ref.host, queue: ref.kind });
            }
            bar?.tick();
          }),
        );
      }
      bar?.end();
      const summary = {
        dryRun: Boolean(f.dryRun),
        matched: targets.length,
        retried: results.filter((r) => r.action !== 'skipped').length,
        skipped: results.filter((r) => r.action === 'skipped').length - errors,
        errors,
      };
      if (f.json) printJson({ summary, jobs: results, ...(notFound.length ? { notFound } : {}) });
      else {
        for (const r of results) {
          const verb =
            r.action === 'skipped'
              ? `skip   ${r.why}`
              : f.dryRun
                ? 'would retry'
                : `retried${r.removedImageJobs?.length ? ` (removed its finished image jobs ${r.removedImageJobs.join(', ')})` : ''}`;
          printLine(`${r.host}/${r.queue} ${r.id}: ${verb}`);
        }
        printLine(`${f.dryRun ? 'dry run: ' : ''}matched ${summary.matched}, ${f.dryRun ? 'would retry' : 'retried'} ${summary.retried}, skipped ${summary.skipped}, errors ${summary.errors}`);
      }
      if (notFound.length) {
        printErr(`fleetq: no job ${notFound.map((i) => JSON.stringify(i)).join(', ')} on ${hosts.join(', ') || 'any registered host'}`);
        process.exitCode = EXIT.NOT_FOUND;
      } else if (errors) process.exitCode = EXIT.FAILED;
    });
  });
}
