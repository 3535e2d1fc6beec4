/** `fleetq enqueue ensure-image|restore`: validate flags, enqueue, optionally wait for the end. */
import { randomBytes } from 'node:crypto';
import { Job, type QueueEvents } from 'bullmq';
import type { Command } from 'commander';
import { parsePayload } from '../../jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload } from '../../jobs/contracts/ensure-image.js';
import { RESTORE, type RestoreInput, RestorePayload } from '../../jobs/contracts/restore.js';
import { enqueueEnsureImage } from '../../queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../queues/enqueue-restore.js';
import { imageQueueName, restoreQueueName } from '../../queues/names.js';
import type { Config } from '../../config/schema.js';
import { cliConfig, openQueue, type QueueHandle } from '../context.js';
import { asUsageError, durationFlag, hostFlag, jobIdFlag, priorityFlag } from '../flags.js';
import { printJsonLine, printLine } from '../output.js';

interface SubmitFlags {
  host: string;
  priority?: number;
  delay?: number;
  jobId?: string;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
}

interface EnsureImageFlags extends SubmitFlags {
  image: string;
  digest?: string;
  force?: boolean;
}

interface RestoreFlags extends SubmitFlags {
  kind: string;
  snapshot: string;
  vm?: string;
  name?: string;
  image?: string;
  digest?: string;
  cpu?: string;
  memory?: string;
  storage?: string;
  nics?: string;
  onDemand?: boolean;
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

/** Producer options from the configuration and the submission flags. */
function submission(cfg: Config, opts: SubmitFlags) {
  return { host: opts.host, attempts: cfg.attempts, backoffMs: cfg.backoffMs, priority: opts.priority, delayMs: opts.delay, jobId: opts.jobId };
}

/** Flags every submission takes. */
function addSubmitOptions(cmd: Command, noun: string): Command {
  return cmd
    .option('--priority <n>', 'BullMQ priority (1 = highest)', priorityFlag)
    .option('--delay <duration>', 'start no earlier than this from now (e.g. 30s, 5m)', durationFlag('--delay'))
    .option('--job-id <id>', 'idempotent submission: the same id is added once', jobIdFlag)
    .option('--wait', `wait until the ${noun} completes or fails (exit 0 / 1)`)
    .option('--timeout <duration>', 'with --wait: give up waiting after this long (exit 3)', durationFlag('--timeout'))
    .option('--json', 'print one JSON object');
}

/**
 * Print what was enqueued; with --wait, wait for the end and print
 * {jobId, state, outcome?, digest?, failedReason?, …}, setting the exit code
 * (0 completed, 1 failed, 3 wait timeout).
 */
async function report(handle: QueueHandle, jobId: string, extra: Record<string, unknown>, opts: SubmitFlags): Promise<void> {
  if (!opts.wait) {
    if (opts.json) printJsonLine({ jobId, state: 'queued', ...extra });
    else printLine(jobId);
    return;
  }
  const job = await Job.fromId(handle.queue, jobId);
  const w = job ? await waitForJob(job, handle.events!, opts.timeout) : { state: 'unknown', failedReason: 'job no longer exists (removed after completion?)' };
  const rv = (w as { returnvalue?: { outcome?: string; digest?: string } }).returnvalue;
  const out = { jobId, state: w.state, ...extra, outcome: rv?.outcome, digest: rv?.digest, failedReason: w.failedReason };
  if (opts.json) printJsonLine(out);
  else if (out.state === 'completed') printLine(`${jobId} completed${out.outcome ? `: ${out.outcome}` : ''}${out.digest ? ` ${out.digest}` : ''}`);
  else printLine(`${jobId} ${out.state}: ${out.failedReason ?? ''}`);
  process.exitCode = out.state === 'completed' ? 0 : out.state === 'timeout' ? 3 : 1;
}

export function registerEnqueue(program: Command): void {
  const enqueue = program.command('enqueue').description('add a job to a host queue');

  addSubmitOptions(
    enqueue
      .command('ensure-image')
      .description("make sure an image is in a host's store (pull it unless present)")
      .requiredOption('--host <id>', 'target host id', hostFlag)
      .requiredOption('--image <url>', 'http(s) URL of the cloud image')
      .option('--digest <sha256:hex>', 'pin the image digest (sha256 of the body)')
      .option('--force', 'download even if present'),
    'job',
  ).action(async (opts: EnsureImageFlags) => {
    const cfg = cliConfig();
    const input = { image: opts.image, imageDigest: opts.digest, force: opts.force ? true : undefined };
    asUsageError(() => parsePayload(EnsureImagePayload, input, ENSURE_IMAGE)); // bad input never touches Redis
    const handle = await openQueue(cfg, imageQueueName(opts.host), Boolean(opts.wait));
    try {
      const enq = await enqueueEnsureImage(handle.queue, input, submission(cfg, opts));
      if (!opts.json && enq.deduplicated) process.stderr.write(`an identical job is already pending: ${enq.jobId}\n`);
      await report(handle, enq.jobId, { deduplicated: enq.deduplicated }, opts);
    } finally {
      await handle.close();
    }
  });

  addSubmitOptions(
    enqueue
      .command('restore')
      .description("clone or restore a VM through cocoon, once the base image its snapshot records is on the host (pulled first when missing)")
      .requiredOption('--host <id>', 'target host id', hostFlag)
      .requiredOption('--kind <clone|restore>', 'clone a new VM from a snapshot, or restore a VM to one of its snapshots')
      .requiredOption('--snapshot <name>', 'snapshot name')
      .option('--vm <name>', 'the VM to restore (kind restore)')
      .option('--name <name>', 'name of the new VM (kind clone; default: a generated vm-xxxxxxxx, printed)')
      .option('--image <url>', "http(s) URL to pull the base from when missing (default: the snapshot's recorded image)")
      .option('--digest <sha256:hex>', "expected base digest: the job fails if the snapshot records another")
      .option('--cpu <n>', "vCPUs (never below the snapshot's, at most the host's cores)")
      .option('--memory <size>', "memory, e.g. 8G (clone: at least 512M; never below the snapshot's)")
      .option('--storage <size>', "disk size, e.g. 40G (clone: at least 10G; never below the snapshot's)")
      .option('--nics <n>', "NIC count (kind clone; at least 1, never below the snapshot's; omit to keep the snapshot's)")
      .option('--on-demand', 'restore memory on demand'),
    'restore',
  ).action(async (opts: RestoreFlags) => {
    const cfg = cliConfig();
    const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : v);
    const flags = {
      kind: opts.kind,
      snapshot: opts.snapshot,
      vm: opts.vm,
      // cocoon needs a name, and a retry must recognise its own clone: generate one at enqueue time.
      name: opts.kind === 'clone' ? (opts.name ?? `vm-${randomBytes(4).toString('hex')}`) : opts.name,
      image: opts.image,
      imageDigest: opts.digest,
      cpu: num(opts.cpu),
      memory: opts.memory,
      storage: opts.storage,
      nics: num(opts.nics),
      onDemand: opts.onDemand ? true : undefined,
    };
    // Flags not given are absent, not undefined: each kind's contract refuses the other kind's fields.
    const input = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) as RestoreInput;
    asUsageError(() => parsePayload(RestorePayload, input, RESTORE));
    const handle = await openQueue(cfg, restoreQueueName(opts.host), Boolean(opts.wait));
    try {
      const enq = await enqueueRestore(handle.queue, input, submission(cfg, opts));
      await report(handle, enq.jobId, { vm: enq.vm }, opts);
    } finally {
      await handle.close();
    }
  });
}
