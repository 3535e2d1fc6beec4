/** `fleetq dlq ls|requeue|purge`: jobs whose retries are exhausted. */
import type { Command } from 'commander';
import { formatDuration } from '../../lib/units.js';
import { type DeadLetter, purgeDeadLetters, requeueDeadLetter, scanDeadLetters } from '../../ops/dead-letters.js';
import type { Fleet } from '../../ops/fleet.js';
import { matches } from '../../ops/job-filter.js';
import { ago, printJson, printLine, printTable, progressBar } from '../output.js';
import { addFilterFlags, type FilterFlags, hostList, toFilter, withFleet } from '../fleet-command.js';
import { addConfirmFlags, confirm, type ConfirmFlags } from '../confirm.js';
import { EXIT } from '../exit-codes.js';
import { durationFlag } from '../flags.js';

async function collect(fleet: Fleet, f: FilterFlags): Promise<DeadLetter[]> {
  const hosts = await fleet.resolveHosts(hostList(f.host));
  const filter = toFilter(f);
  const out: DeadLetter[] = [];
  for await (const d of scanDeadLetters(fleet.redis, fleet.cfg.prefix, { since: filter.sinceTs, hosts })) {
    if (!hosts.includes(d.host)) continue;
    if (f.queue && d.queueKind !== f.queue) continue;
    if (!matches({ name: d.name, failedReason: d.reason, timestamp: d.failedAt }, { ...filter, sinceTs: undefined })) continue;
    out.push(d);
    if (f.limit && out.length >= f.limit) break;
  }
  return out;
}

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('dead letters: jobs whose retries are exhausted');

  addFilterFlags(dlq.command('ls').description('list dead letters (oldest first)')).action(async (f: FilterFlags) => {
    await withFleet(async (fleet) => {
      const rows = await collect(fleet, f);
      if (f.json) return printJson(rows); // printJson redacts data, reason and everything else
      printTable(
        rows.map((d) => ({ id: d.originalId, host: d.host, queue: d.queueKind, name: d.name, attempts: d.attemptsMade, failed: ago(d.failedAt), reason: d.reason })),
        ['id', 'host', 'queue', 'name', 'attempts', 'failed', 'reason'],
      );
    });
  });

  addConfirmFlags(addFilterFlags(dlq.command('requeue').description('put dead letters back to work (asks first unless --yes)')), 'be requeued')
    .action(async (f: FilterFlags & ConfirmFlags) => {
      await withFleet(async (fleet) => {
        const rows = await collect(fleet, f);
        if (!f.dryRun && rows.length > 0) await confirm(`requeue ${rows.length} dead letter${rows.length === 1 ? '' : 's'} (their jobs run again)`, f);
        const ids = new Set(rows.map((d) => d.id));
        const results: Array<{ id: string; host: string; queue: string; result: string }> = [];
        let errors = 0;
        const bar = f.dryRun || f.json ? undefined : progressBar('requeueing', rows.length);
        for (const d of rows) {
          let result: string;
          try {
            result = f.dryRun ? (d.parent && ids.has(`${d.parent.queue}/${d.parent.id}`) ? 'would skip: requeued with its restore' : 'would requeue') : await requeueDeadLetter(fleet, d, ids);
          } catch (err) {
            errors++;
            result = `error: ${(err as Error).message}`;
          }
          results.push({ id: d.originalId, host: d.host, queue: d.queueKind, result });
          bar?.tick();
        }
        bar?.end();
        const summary = { dryRun: Boolean(f.dryRun), matched: rows.length, requeued: results.filter((r) => !/^(would )?skip|^error/.test(r.result) && r.result !== 'would requeue').length, errors };
        if (f.json) printJson({ summary, entries: results });
        else {
          for (const r of results) printLine(`${r.host}/${r.queue} ${r.id}: ${r.result}`);
          printLine(`${f.dryRun ? 'dry run: ' : ''}matched ${summary.matched}, requeued ${summary.requeued}, errors ${errors}`);
        }
        if (errors) process.exitCode = EXIT.FAILED;
      });
    });

  addConfirmFlags(
    dlq
      .command('purge')
      .description('delete dead letters older than a duration (asks first unless --yes)')
      .requiredOption('--older-than <duration>', 'a unit is required: 7d, 12h, 90m', durationFlag('--older-than')),
    'be deleted',
  )
    .option('--json', 'machine-readable output')
    .action(async (opts: { olderThan: number; json?: boolean } & ConfirmFlags) => {
      await withFleet(async (fleet) => {
        const now = Date.now();
        const old: DeadLetter[] = [];
        for await (const d of scanDeadLetters(fleet.redis, fleet.cfg.prefix, { until: now - opts.olderThan })) old.push(d);
        const what = `${old.length} dead letter${old.length === 1 ? '' : 's'} older than ${formatDuration(opts.olderThan)}`;
        if (opts.dryRun) {
          if (opts.json) return printJson({ dryRun: true, matched: old.length, entries: old.map((d) => ({ id: d.originalId, host: d.host, queue: d.queueKind, failedAt: d.failedAt })) });
          for (const d of old) printLine(`${d.host}/${d.queueKind} ${d.originalId}: would delete (failed ${ago(d.failedAt, now)})`);
          return printLine(`dry run: would delete ${what}`);
        }
        if (old.length > 0) await confirm(`delete ${what}`, opts);
        // The same cut-off as shown: nothing that turned old since the question is removed.
        const removed = old.length > 0 ? await purgeDeadLetters(fleet.redis, fleet.cfg.prefix, opts.olderThan, { now }) : 0;
        if (opts.json) printJson({ removed });
        else printLine(`removed ${removed} dead letter${removed === 1 ? '' : 's'}`);
      });
    });
}
