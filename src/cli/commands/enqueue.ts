/** `fleetq enqueue ensure-image …`: validate flags, enqueue (deduplicated), optionally wait. */
import { FlowProducer, Job, type QueueEvents } from 'bullmq';
import type { Command } from 'commander';
import { HostId } from '../../config/schema.js';
import { InvalidInputError } from '../../lib/errors.js';
import { parsePayload } from '../../jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload } from '../../jobs/contracts/ensure-image.js';
import { parseDuration } from '../../lib/units.js';
import { enqueueEnsureImage } from '../../queues/enqueue-ensure-image.js';
import { imageQueueName, restoreQueueName } from '../../queues/names.js';
import { enqueueRestore } from '../../queues/enqueue-restore.js';
import { RESTORE, type RestoreInput, RestorePayload } from '../../jobs/contracts/restore.js';
import { cliConfig, openQueue } from '../context.js';
import { flagParser, UsageError } from '../usage-error.js';

/** Payload field → the flag that sets it, so errors name what the user typed. */
const FLAG_OF: Record<string, string> = { image: '--image', imageDigest: '--digest', force: '--force', imageType: '--image-type', onDemand: '--on-demand' };

/** Run a payload validation; an InvalidInputError becomes a UsageError naming the flag. */
export function asUsageError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvalidInputError) {
      const flag = FLAG_OF[err.field] ?? `--${err.field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      throw new UsageError(`${flag}: ${err.message.replace(/^invalid [\w-]+ payload: \S+ /, '')}`);
    }
    throw err;
  }
}

export const hostFlag = flagParser('--host', (v) => {
  const r = HostId.safeParse(v);
  if (!r.success) throw new Error(`${r.error.issues[0]?.message} (got ${JSON.stringify(v)})`);
  return v;
});
const durationFlag = (flag: string) => flagParser(flag, parseDuration);
const priorityFlag = flagParser('--priority', (v) => {
  if (!/^\d+$/.test(v) || Number(v) > 2_097_152) throw new Error(`must be a whole number 0..2097152 (got ${JSON.stringify(v)})`);
  return Number(v);
});
const jobIdFlag = flagParser('--job-id', (v) => {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(v) || /^\d+$/.test(v)) {
    throw new Error(`must be 1-128 letters, digits, ".", "_" or "-", not all digits, no ":" (got ${JSON.stringify(v)})`);
  }
  return v;
});

interface RestoreFlags {
  host: string;
  kind: string;
  snapshot: string;
  vm?: string;
  name?: string;
  image: string;
  digest?: string;
  cpu?: string;
  memory?: string;
  storage?: string;
  nics?: string;
  onDemand?: boolean;
  priority?: number;
  delay?: number;
  jobId?: string;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
}

export interface WaitOutcome {
  jobId: string;
  state: string;
  outcome?: string;
  digest?: string;
  failedReason?: string;
  deduplicated?: boolean;
  vm?: string;
  returnvalue?: unknown;
}

/** Wait for a job to finish; resolves with its final state (never throws for a failed job). */
export async function waitForJob(job: Job, events: QueueEvents, timeoutMs?: number): Promise<{ state: string; returnvalue?: unknown; failedReason?: string }> {
  try {
    const returnvalue = await job.waitUntilFinished(events, timeoutMs);
    return { state: 'completed', returnvalue };
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (/timed out before finishing/.test(msg)) return { state: 'timeout', failedReason: msg };
    return { state: 'failed', failedReason: msg };
  }
}

export function printOutcome(o: WaitOutcome, json: boolean): void {
  if (json) {
    const { returnvalue: _rv, ...rest } = o;
    process.stdout.write(`${JSON.stringify(rest)}\n`);
    return;
  }
  if (o.state === 'completed') {
    process.stdout.write(`${o.jobId} completed${o.outcome ? `: ${o.outcome}` : ''}${o.digest ? ` ${o.digest}` : ''}\n`);
  } else if (o.state === 'failed' || o.state === 'timeout') {
    process.stdout.write(`${o.jobId} ${o.state}: ${o.failedReason ?? ''}\n`);
  } else {
    process.stdout.write(`${o.jobId}\n`);
  }
}

export function registerEnqueue(program: Command): void {
  const enqueue = program.command('enqueue').description('add a job to a host queue');

  enqueue
    .command('ensure-image')
    .description("make sure an image is in a host's store (pull it unless present)")
    .requiredOption('--host <id>', 'target host id', hostFlag)
    .requiredOption('--image <url>', 'http(s) URL of the cloud image')
    .option('--digest <sha256:hex>', 'pin the image digest (sha256 of the body)')
    .option('--force', 'download even if present')
    .option('--priority <n>', 'BullMQ priority (1 = highest)', priorityFlag)
    .option('--delay <duration>', 'start no earlier than this from now (e.g. 30s, 5m)', durationFlag('--delay'))
    .option('--job-id <id>', 'idempotent submission: the same id is added once', jobIdFlag)
    .option('--wait', 'wait until the job completes or fails (exit 0 / 1)')
    .option('--timeout <duration>', 'with --wait: give up waiting after this long (exit 3)', durationFlag('--timeout'))
    .option('--json', 'print one JSON object')
    .action(async (opts: { host: string; image: string; digest?: string; force?: boolean; priority?: number; delay?: number; jobId?: string; wait?: boolean; timeout?: number; json?: boolean }) => {
      const cfg = cliConfig();
      const input = { image: opts.image, imageDigest: opts.digest, force: opts.force ? true : undefined };
      asUsageError(() => parsePayload(EnsureImagePayload, input, ENSURE_IMAGE)); // bad input never touches Redis
      const handle = await openQueue(cfg, imageQueueName(opts.host), Boolean(opts.wait));
      try {
        const enq = await enqueueEnsureImage(handle.queue, input, {
          host: opts.host,
          attempts: cfg.attempts,
          backoffMs: cfg.backoffMs,
          priority: opts.priority,
          delayMs: opts.delay,
          jobId: opts.jobId,
        });
        if (!opts.json && enq.deduplicated) process.stderr.write(`an identical job is already pending: ${enq.jobId}\n`);
        if (!opts.wait) {
          if (opts.json) process.stdout.write(`${JSON.stringify({ jobId: enq.jobId, state: 'queued', deduplicated: enq.deduplicated })}\n`);
          else process.stdout.write(`${enq.jobId}\n`);
          return;
        }
        const job = await Job.fromId(handle.queue, enq.jobId);
        let out: WaitOutcome;
        if (!job) {
          out = { jobId: enq.jobId, state: 'unknown', failedReason: 'job no longer exists (removed after completion?)' };
        } else {
          const w = await waitForJob(job, handle.events!, opts.timeout);
          const rv = w.returnvalue as { outcome?: string; digest?: string } | undefined;
          out = { jobId: enq.jobId, state: w.state, deduplicated: enq.deduplicated, outcome: rv?.outcome, digest: rv?.digest, failedReason: w.failedReason };
        }
        printOutcome(out, Boolean(opts.json));
        process.exitCode = out.state === 'completed' ? 0 : out.state === 'timeout' ? 3 : 1;
      } finally {
        await handle.close();
      }
    });

  enqueue
    .command('restore')
    .description('clone or restore a VM through cocoon, after ensuring its base image (a flow: restore ← ensure-image)')
    .requiredOption('--host <id>', 'target host id', hostFlag)
    .requiredOption('--kind <clone|restore>', 'clone a new VM from a snapshot, or restore a VM to one of its snapshots')
    .requiredOption('--snapshot <name>', 'snapshot name')
    .option('--vm <name>', 'the VM to restore (kind restore)')
    .option('--name <name>', 'name of the new VM (kind clone; default: a generated vm-xxxxxxxx)')
    .requiredOption('--image <url>', 'http(s) URL of the base image')
    .option('--digest <sha256:hex>', 'pin the base image digest')
    .option('--cpu <n>', 'vCPUs (never below the snapshot\'s)')
    .option('--memory <size>', 'memory, e.g. 8G')
    .option('--storage <size>', 'disk size, e.g. 40G')
    .option('--nics <n>', 'NIC count (kind clone)')
    .option('--on-demand', 'restore memory on demand')
    .option('--priority <n>', 'BullMQ priority (1 = highest)', priorityFlag)
    .option('--delay <duration>', 'start no earlier than this from now', durationFlag('--delay'))
    .option('--job-id <id>', 'idempotent submission: the same id is added once', jobIdFlag)
    .option('--wait', 'wait until the restore completes or fails (exit 0 / 1)')
    .option('--timeout <duration>', 'with --wait: give up waiting after this long (exit 3)', durationFlag('--timeout'))
    .option('--json', 'print one JSON object')
    .action(async (opts: RestoreFlags) => {
      const cfg = cliConfig();
      const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : v);
      const input = {
        kind: opts.kind,
        snapshot: opts.snapshot,
        vm: opts.vm,
        name: opts.name,
        image: opts.image,
        imageDigest: opts.digest,
        cpu: num(opts.cpu),
        memory: opts.memory,
        storage: opts.storage,
        nics: num(opts.nics),
        onDemand: opts.onDemand ? true : undefined,
      } as RestoreInput;
      asUsageError(() => parsePayload(RestorePayload, input, RESTORE));
      const handle = await openQueue(cfg, restoreQueueName(opts.host), Boolean(opts.wait));
      const flow = new FlowProducer({ connection: handle.redis, prefix: cfg.prefix });
      try {
        const enq = await enqueueRestore(flow, input, {
          host: opts.host,
          attempts: cfg.attempts,
          backoffMs: cfg.backoffMs,
          priority: opts.priority,
          delayMs: opts.delay,
          jobId: opts.jobId,
        });
        if (!opts.wait) {
          if (opts.json) process.stdout.write(`${JSON.stringify({ jobId: enq.jobId, imageJobId: enq.imageJobId, vm: enq.vm, state: 'queued' })}\n`);
          else process.stdout.write(`${enq.jobId}\n`);
          return;
        }
        const job = await Job.fromId(handle.queue, enq.jobId);
        const w = job ? await waitForJob(job, handle.events!, opts.timeout) : { state: 'unknown', failedReason: 'job no longer exists' };
        const rv = (w as { returnvalue?: { outcome?: string; digest?: string } }).returnvalue;
        const out: WaitOutcome = { jobId: enq.jobId, state: w.state, vm: enq.vm, outcome: rv?.outcome, digest: rv?.digest, failedReason: w.failedReason };
        printOutcome(out, Boolean(opts.json));
        process.exitCode = out.state === 'completed' ? 0 : out.state === 'timeout' ? 3 : 1;
      } finally {
        await flow.close().catch(() => {});
        await handle.close();
      }
    });
}
