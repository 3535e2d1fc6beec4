/**
 * The restore handler: clone or restore a VM through the real cocoon CLI,
 * only once the base image the snapshot records is provably on disk.
 *
 *   1. `cocoon snapshot inspect S` → the base digest (the snapshot decides; a
 *      contradicting job digest fails here, before anything runs);
 *   2. clone: a VM of that name may be this job's earlier attempt (done), a
 *      clone in flight (later), a leftover or another VM (permanent);
 *      restore: the VM must be running, or cocoon would kill nothing and fail;
 *   3. the base blob: on disk, or ensured through the host's image queue
 *      (`BaseEnsurer`, which may park this job until its image job finishes);
 *   4. the snapshot overlay's backing path must be that blob in this store;
 *   5. `cocoon vm clone|restore … -o json`; a restore that fails after cocoon
 *      stopped the VM is permanent and says how the VM was left.
 */
import type { Logger } from 'pino';
import { type RestorePayload, type RestoreResult, targetVm } from '../jobs/contracts/restore.js';
import { Digest } from '../lib/digest.js';
import { redactUrl } from '../lib/redact.js';
import type { BlobInfo } from '../store/blob-store.js';
import type { StorePaths } from '../store/paths.js';
import type { CallContext, CocoonCli } from './cocoon-cli.js';
import type { CocoonVm } from './cocoon-records.js';
import { judgeExistingClone } from './existing-clone.js';
import { CloneInProgressError, CocoonError, VmConflictError, VmLeftDownError, VmNotRunningError } from './restore-errors.js';
import { type BaseImage, resolveBase } from './snapshot-base.js';
import { checkSnapshotOverlay } from './snapshot-overlay.js';

export interface RestoreDeps {
  cocoon: CocoonCli;
  paths: StorePaths;
  qemuImg: string;
  cocoonTimeoutMs: number;
}

/** Gets the base blob onto disk; the worker's implementation goes through the image queue. */
export interface BaseEnsurer {
  /** The blob, or throws (a failed image job, or BullMQ's WaitingChildrenError while one runs). */
  ensure(base: BaseImage): Promise<{ blob: BlobInfo; imageJobId?: string | undefined }>;
}

export type RestorePhase = 'inspecting' | 'ensuring-image' | 'cloning' | 'restoring';

export interface RestoreContext {
  log: Logger;
  signal?: AbortSignal | undefined;
  /** When this job first started (for recognising its own earlier clone). */
  jobStartedAt: number;
  base: BaseEnsurer;
  /**
   * Job log (BullMQ job.log), the story of the restore for the board's log tab:
   * started, the base decided, waiting for its image job, the base on disk,
   * cocoon's argv (`$ …`), its output, and its outcome.
   */
  jobLog?: ((line: string) => void) | undefined;
  /** "attempt 2/3", shown in the first line (job logs survive retries and resumptions). */
  attempt?: string | undefined;
  onPhase?: ((phase: RestorePhase) => void) | undefined;
}

export async function runRestore(p: RestorePayload, deps: RestoreDeps, ctx: RestoreContext): Promise<RestoreResult> {
  const started = Date.now();
  const vm = targetVm(p);
  const call: CallContext = {
    signal: ctx.signal,
    onCall: (argv) => ctx.jobLog?.(`$ ${argv.join(' ')}`),
    onLine: (stream, line) => {
      ctx.jobLog?.(`[cocoon ${stream}] ${line}`);
      ctx.log.debug({ stream, line }, 'cocoon output');
    },
  };
  const say = (msg: string) => {
    ctx.log.warn(msg);
    ctx.jobLog?.(msg);
  };

  ctx.jobLog?.(
    `${p.kind === 'clone' ? `clone ${vm} from snapshot ${p.snapshot}` : `restore ${vm} to snapshot ${p.snapshot}`}${ctx.attempt ? ` (${ctx.attempt})` : ''}`,
  );
  ctx.onPhase?.('inspecting');
  const snap = await deps.cocoon.inspectSnapshot(p.snapshot, call);
  const base = resolveBase(snap, p);
  if (base.note) say(base.note);
  ctx.jobLog?.(
    base.digest
      ? `base image decided: ${base.digest} (${base.source === 'snapshot' ? `recorded by snapshot ${p.snapshot}` : "the job's digest"})`
      : `base image decided: whatever ${base.url ? redactUrl(base.url) : 'its URL'} points at now (nothing pins a digest)`,
  );
  const result = (digest: Digest | undefined, blobPath: string | undefined, extra: Partial<RestoreResult>): RestoreResult => ({
    kind: p.kind,
    vm,
    snapshot: p.snapshot,
    digest,
    digestSource: base.source,
    blobPath,
    outcome: 'done',
    durationMs: Date.now() - started,
    ...extra,
  });

  // Before any pull: is there anything to do at all, and may cocoon touch this VM?
  if (p.kind === 'clone') {
    const existing = await deps.cocoon.inspectVm(p.name, call);
    if (existing) {
      const judged = judgeExistingClone(existing, { name: p.name, snapshot: snap, jobStartedAt: ctx.jobStartedAt, now: Date.now(), cocoonTimeoutMs: deps.cocoonTimeoutMs });
      if (judged.verdict === 'already-done') {
        ctx.log.info({ id: existing.id }, 'clone already made by an earlier attempt of this job: nothing to do');
        ctx.jobLog?.(`VM ${vm} (${existing.id}) was cloned by an earlier attempt of this job and is running: nothing to do`);
        // base.digest is the snapshot's (or the job's); an old snapshot may record none, while the VM does.
        const digest = base.digest ?? Digest.from(existing.config.image_digest);
        return result(digest, undefined, { outcome: 'already-done', cocoon: existing });
      }
      if (judged.verdict === 'in-progress') throw new CloneInProgressError(judged.message);
      throw new VmConflictError(judged.message, judged.verdict === 'conflict' ? 'E_COCOON_VM_EXISTS' : judged.verdict === 'leftover' ? 'E_VM_LEFTOVER' : 'E_VM_NOT_RUNNING');
    }
  } else {
    const current = await deps.cocoon.inspectVm(p.vm, call);
    if (!current) throw new CocoonError(`VM ${p.vm} not found on this host: nothing to restore`, 'E_COCOON_VM_NOT_FOUND', true);
    if (current.state !== 'running') {
      throw new VmNotRunningError(
        `VM ${p.vm} (${current.id}) is "${current.state}", not running: cocoon restores only a running VM ("must be running to restore"); left untouched. Start it with "cocoon vm start ${p.vm}" and retry`,
      );
    }
  }

  ctx.onPhase?.('ensuring-image');
  const { blob, imageJobId } = await ctx.base.ensure(base);
  ctx.log.info({ digest: blob.digest, source: base.source, url: base.url ? redactUrl(base.url) : undefined }, 'base image on disk');
  ctx.jobLog?.(`base image ${blob.digest} is on disk${imageJobId ? ` (ensured by image job ${imageJobId})` : ''}: ${blob.path}`);

  const overlay = await checkSnapshotOverlay({ paths: deps.paths, snapshotId: snap.id, digest: blob.digest, qemuImg: deps.qemuImg, signal: ctx.signal });
  if (!overlay.checked) ctx.log.debug({ why: overlay.why }, 'snapshot overlay not checked');
  else ctx.jobLog?.(`snapshot overlay checked: its backing file is ${blob.path}`);

  let record: CocoonVm;
  if (p.kind === 'clone') {
    ctx.onPhase?.('cloning');
    ctx.log.info('running cocoon vm clone');
    record = await deps.cocoon.clone(p, call);
    ctx.jobLog?.(`cocoon vm clone exited 0: VM ${vm} (${record.id}) is ${record.state}`);
  } else {
    ctx.onPhase?.('restoring');
    ctx.log.info('running cocoon vm restore');
    try {
      record = await deps.cocoon.restore(p, call);
    } catch (err) {
      throw await explainRestoreFailure(err, p.vm, deps, call);
    }
    ctx.jobLog?.(`cocoon vm restore exited 0: VM ${vm} (${record.id}) is ${record.state}`);
  }
  return result(blob.digest, blob.path, { imageJobId, cocoon: record });
}

/**
 * cocoon stops the running VM before it boots the snapshot, and any later
 * failure leaves it stopped in state `error` (§4): retrying then only meets
 * "must be running to restore". So a failure that left the VM down is
 * permanent and says so; one that left it running keeps its own verdict.
 */
async function explainRestoreFailure(err: unknown, vm: string, deps: RestoreDeps, call: CallContext): Promise<unknown> {
  if (!(err instanceof CocoonError) || call.signal?.aborted) return err;
  let after: CocoonVm | undefined;
  try {
    after = await deps.cocoon.inspectVm(vm, { ...call, signal: undefined });
  } catch {
    return err;
  }
  if (!after || after.state === 'running') return err;
  return new VmLeftDownError(
    `${err.message}; cocoon had stopped the VM first, and ${vm} (${after.id}) is now "${after.state}": start it with "cocoon vm start ${vm}" before any retry`,
    { cause: err },
  );
}
