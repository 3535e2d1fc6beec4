/** `fleetq prewarm`: pull an image onto hosts ahead of a restore wave, at low priority, once or on a schedule. */
import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import { parsePayload } from '../../jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload } from '../../jobs/contracts/ensure-image.js';
import { formatDuration, parseDuration } from '../../lib/units.js';
import { jobSubmission, resubmit } from '../../queues/resubmit.js';
import { printJson, printLine } from '../output.js';
import { hostList, withFleet } from '../fleet-command.js';
import { flagParser, UsageError } from '../usage-error.js';
import { asUsageError } from '../flags.js';

/** Prewarm jobs yield to restores: BullMQ priority, larger = later. */
export const PREWARM_PRIORITY = 1000;

export function registerPrewarm(program: Command): void {
  program
    .command('prewarm')
    .description('pull an image onto hosts ahead of restores (low priority); --every makes it a schedule')
    .requiredOption('--image <url>', 'http(s) URL of the image')
    .option('--digest <sha256:hex>', 'pin the digest')
    .requiredOption('--hosts <ids|all>', 'comma-separated host ids, or "all" (every registered host)')
    .option('--every <duration>', 'repeat on this interval, at least 1m; a unit is required: 1h, 30m (a BullMQ job scheduler per host)', flagParser('--every', (v) => {
      const ms = parseDuration(v);
      if (ms < 60_000) throw new Error(`must be at least 1m (got ${formatDuration(ms)})`);
      return ms;
    }))
    .option('--cancel', 'remove the schedule for this image instead')
    .option('--json', 'machine-readable output')
    .action(async (opts: { image: string; digest?: string; hosts: string; every?: number; cancel?: boolean; json?: boolean }) => {
      const payload = asUsageError(() => parsePayload(EnsureImagePayload, { image: opts.image, imageDigest: opts.digest }, ENSURE_IMAGE));
      if (opts.cancel && opts.every) throw new UsageError('--cancel: cannot be combined with --every');
      await withFleet(async (fleet) => {
        const hosts = await fleet.resolveHosts(hostList(opts.hosts));
        if (hosts.length === 0) throw new UsageError('--hosts: no registered hosts');
        const schedulerId = `prewarm.${createHash('sha256').update(`${payload.image}|${payload.imageDigest ?? ''}`).digest('hex').slice(0, 24)}`;
        const out = [];
        for (const host of hosts) {
          const { queue } = fleet.queue(host, 'images');
          const submit = { host, attempts: fleet.cfg.attempts, backoffMs: fleet.cfg.backoffMs, priority: PREWARM_PRIORITY };
          if (opts.cancel) {
            out.push({ host, schedulerId, removed: await queue.removeJobScheduler(schedulerId) });
          } else if (opts.every) {
            // A scheduler's template takes no job id, delay or deduplication (BullMQ): each run is a new job.
            const { data, opts: { jobId: _id, delay: _delay, deduplication: _dedup, ...template } } = jobSubmission(ENSURE_IMAGE, payload, submit);
            await queue.upsertJobScheduler(schedulerId, { every: opts.every }, { name: ENSURE_IMAGE, data, opts: template });
            out.push({ host, schedulerId, every: opts.every });
          } else {
            out.push({ host, ...(await resubmit(queue, ENSURE_IMAGE, payload, submit)) });
          }
        }
        if (opts.json) return printJson(out);
        for (const o of out) printLine(describe(o));
      });
    });
}

/** One human line per host: what prewarm did there. */
function describe(o: { host: string; schedulerId?: string; removed?: boolean; every?: number; jobId?: string; deduplicated?: boolean }): string {
  if (o.removed !== undefined) return `${o.host}: ${o.removed ? 'schedule removed' : 'no such schedule'} (${o.schedulerId})`;
  if (o.every !== undefined) return `${o.host}: pulls every ${formatDuration(o.every)} (schedule ${o.schedulerId})`;
  return `${o.host}: ${o.deduplicated ? 'an identical pull is already pending' : 'pull queued'}: job ${o.jobId}`;
}
