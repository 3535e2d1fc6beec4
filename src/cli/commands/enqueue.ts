/** `fleetq enqueue ensure-image|restore`: validate flags, enqueue, optionally wait for the end. */
import { randomBytes } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import type { Command } from 'commander';
import { parsePayload } from '../../jobs/contracts/common.js';
import { ENSURE_IMAGE, EnsureImagePayload } from '../../jobs/contracts/ensure-image.js';
import { RESTORE, type RestoreInput, RestorePayload } from '../../jobs/contracts/restore.js';
import { enqueueEnsureImage } from '../../queues/enqueue-ensure-image.js';
import { enqueueRestore } from '../../queues/enqueue-restore.js';
import { imageChildId, imageQueueName, restoreQueueName } from '../../queues/names.js';
import { connectRedis, type RedisClient } from '../../redis/connect.js';
import { queueOptions } from '../../queues/queue-options.js';
import type { Config } from '../../config/schema.js';
import { redactUrl } from '../../lib/redact.js';
import { formatDuration } from '../../lib/units.js';
import { cliConfig, openQueue } from '../context.js';
import { EXIT } from '../exit-codes.js';
import { asUsageError, durationFlag, hostFlag, jobIdFlag, priorityFlag } from '../flags.js';
import { checkLiveHost } from '../live-host.js';
import { printErr, printJsonLine, printLine } from '../output.js';
import { barView, finalMessage, finalReason, lineView, waitWithProgress, type WaitOutcome } from '../progress.js';
import { UsageError } from '../usage-error.js';

interface SubmitFlags {
  host: string;
  priority?: number;
  delay?: number;
  jobId?: string;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
  requireLiveHost?: boolean;
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
    .option('--require-live-host', 'refuse (exit 2, nothing enqueued) when no live worker takes this host\'s queue; without it, a warning on stderr')
    .option('--wait', `wait until the ${noun} completes or fails (exit 0 / 1), showing progress on stderr`)
    .option('--timeout <duration>', 'with --wait: give up waiting after this long (exit 3; the job carries on)', durationFlag('--timeout'))
    .option('--json', 'print one JSON object');
}

interface Submitted {
  jobId: string;
  deduplicated?: boolean;
  /** Fields of the JSON result besides the job's end (vm for restores, deduplicated for pulls). */
  extra: Record<string, unknown>;
}

/**
 * Open the host's queue, warn (or refuse, --require-live-host) when no live
 * worker takes it, enqueue, and print the id; with --wait, follow the job
 * with progress on stderr and print how it ended, setting the exit code
 * (0 completed, 1 failed, 3 wait timeout, 4 the job vanished).
 */
async function submit(cfg: Config, kind: 'images' | 'restores', opts: SubmitFlags, add: (queue: Queue) => Promise<Submitted>): Promise<void> {
  if (opts.timeout !== undefined && !opts.wait) throw new UsageError('--timeout: only with --wait');
  const name = kind === 'images' ? imageQueueName(opts.host) : restoreQueueName(opts.host);
  const handle = await openQueue(cfg, name, Boolean(opts.wait));
  let child: { queue: Queue; events: QueueEvents; close(): Promise<void> } | undefined;
  try {
    await checkLiveHost(handle.redis, cfg, opts.host, name, Boolean(opts.requireLiveHost));
    const sub = await add(handle.queue);
    if (!opts.json && sub.deduplicated) printErr(`fleetq: an identical job is already pending: ${sub.jobId}`);
    if (!opts.wait) {
      if (opts.json) printJsonLine({ jobId: sub.jobId, state: 'queued', ...sub.extra });
      else printLine(sub.jobId);
      return;
    }
    printErr(`job ${sub.jobId}: queued on ${name}${opts.delay ? `, starts in ${formatDuration(opts.delay)}` : ''}`);
    if (kind === 'restores') child = await openChildQueue(cfg, handle.redis, imageQueueName(opts.host));
    const view = process.stderr.isTTY ? barView(process.stderr, redactUrl) : lineView(sub.jobId, printErr);
    const onSigint = () => {
      view.end();
      printErr(`fleetq: stopped waiting; job ${sub.jobId} carries on (fleetq jobs show ${sub.jobId})`);
      process.exit(130);
    };
    process.once('SIGINT', onSigint);
    let outcome: WaitOutcome;
    try {
      outcome = await waitWithProgress({
        queue: handle.queue,
        redis: handle.redis,
        events: handle.events!,
        jobId: sub.jobId,
        view,
        timeoutMs: opts.timeout,
        child: child ? { queue: child.queue, events: child.events, idFor: (n) => imageChildId(sub.jobId, n) } : undefined,
      });
    } finally {
      process.off('SIGINT', onSigint);
      view.end();
    }
    printOutcome(sub, outcome, opts);
  } finally {
    await child?.close();
    await handle.close();
  }
}

/** A restore's images queue and its events, to show its base image's pull. */
async function openChildQueue(cfg: Config, redis: RedisClient, name: string) {
  const queue = new Queue(name, { connection: redis, ...queueOptions(cfg.prefix) });
  queue.on('error', () => {});
  const eventsRedis = connectRedis(cfg, 'worker'); // QueueEvents blocks on XREAD
  eventsRedis.on('error', () => {});
  const events = new QueueEvents(name, { connection: eventsRedis, prefix: cfg.prefix });
  events.on('error', () => {});
  await events.waitUntilReady();
  return {
    queue,
    events,
    async close() {
      await events.close().catch(() => {});
      await queue.close().catch(() => {});
      await eventsRedis.quit().catch(() => {});
    },
  };
}

function printOutcome(sub: Submitted, o: WaitOutcome, opts: SubmitFlags): void {
  const s = o.snapshot;
  const rv = (o.end === 'completed' ? s.returnvalue : undefined) as { outcome?: string; digest?: string } | undefined;
  const state = o.end === 'gone' ? 'unknown' : o.end;
  if (opts.json) {
    printJsonLine({
      jobId: sub.jobId,
      state,
      ...sub.extra,
      outcome: rv?.outcome,
      digest: rv?.digest,
      failedReason: o.end === 'failed' ? finalReason(s.failedReason) : o.end === 'timeout' ? `still ${s.state} after ${formatDuration(opts.timeout ?? 0)}` : undefined,
      attemptsMade: s.attemptsMade,
      attempts: s.attempts,
    });
  } else if (o.end === 'timeout') {
    printLine(`${sub.jobId} timeout: still ${s.state} after ${formatDuration(opts.timeout ?? 0)} (the job carries on: fleetq jobs show ${sub.jobId})`);
  } else {
    printLine(finalMessage(s));
  }
  process.exitCode = o.end === 'completed' ? EXIT.OK : o.end === 'timeout' ? EXIT.TIMEOUT : o.end === 'gone' ? EXIT.NOT_FOUND : EXIT.FAILED;
}

/** Flags that belong to the other --kind: say which flag to use instead of "not a known field". */
function checkKindFlags(opts: RestoreFlags): void {
  if (opts.kind === 'clone' && opts.vm !== undefined) throw new UsageError('--vm: only with --kind restore (a clone names its new VM with --name)');
  if (opts.kind === 'restore') {
    if (opts.name !== undefined) throw new UsageError('--name: only with --kind clone (--kind restore rolls back the VM given by --vm)');
    if (opts.nics !== undefined) throw new UsageError('--nics: only with --kind clone');
  }
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
    await submit(cfg, 'images', opts, async (queue) => {
      const enq = await enqueueEnsureImage(queue, input, submission(cfg, opts));
      return { jobId: enq.jobId, deduplicated: enq.deduplicated, extra: { deduplicated: enq.deduplicated } };
    });
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
    checkKindFlags(opts);
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
    await submit(cfg, 'restores', opts, async (queue) => {
      const enq = await enqueueRestore(queue, input, submission(cfg, opts));
      return { jobId: enq.jobId, extra: { vm: enq.vm } };
    });
  });
}
