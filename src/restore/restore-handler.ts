/**
 * The restore handler: make sure the base image its ensure-image child
 * ensured is on disk, then run `cocoon vm clone|restore`.
 * cocoon never runs on a missing base: that is the whole point.
 */
import type { Logger } from 'pino';
import { ensureImage, type EnsureDeps } from '../ensure/ensure-image.js';
import type { EnsureImageResult } from '../jobs/contracts/ensure-image.js';
import type { RestorePayload, RestoreResult } from '../jobs/contracts/restore.js';
import { redactUrl } from '../lib/redact.js';
import { BlobMissingError } from '../store/store-errors.js';
import { cocoonArgs, inspectArgs } from './cocoon-args.js';
import { BaseImageUnavailableError, CocoonError } from './restore-errors.js';
import { runCocoon } from './run-cocoon.js';
import { verifyBase } from './verify-base.js';

export interface RestoreDeps {
  ensure: EnsureDeps;
  cocoonBin: string;
  cocoonTimeoutMs: number;
  /** Passed to cocoon as FLEETQ_ROOT; cocoon must be configured with the same root. */
  root: string;
  /** Test-only reproduction of cocoon before PR #39 (see PolicyOptions.trustUrlCacheOverPin). */
  unsafeLegacyUrlCache?: boolean;
}

export interface RestoreContext {
  log: Logger;
  /** 1 for the first attempt. */
  attempt: number;
  signal?: AbortSignal | undefined;
  /** What the ensure-image child returned, if it completed. */
  child?: EnsureImageResult | undefined;
  /** Why the ensure-image child failed, if it did. */
  childFailure?: string | undefined;
  /** Job log (BullMQ job.log) for cocoon's output. */
  jobLog?: (line: string) => void;
}

export async function runRestore(p: RestorePayload, deps: RestoreDeps, ctx: RestoreContext): Promise<RestoreResult> {
  const started = Date.now();
  if (ctx.childFailure) {
    throw new BaseImageUnavailableError(`base image ${redactUrl(p.image)} is not available, cocoon was not started: ${ctx.childFailure}`);
  }

  // The digest the child ensured — not whatever the URL maps to by now.
  let ensured = ctx.child;
  if (!ensured) {
    ensured = await ensureImage({ image: p.image, imageType: p.imageType, imageDigest: p.imageDigest }, deps.ensure, { log: ctx.log, signal: ctx.signal });
  }
  if (p.imageDigest && ensured.digest !== p.imageDigest && !deps.unsafeLegacyUrlCache) {
    throw new BaseImageUnavailableError(`pinned ${p.imageDigest} but the ensured image is ${ensured.digest}; cocoon was not started`);
  }

  let blob;
  try {
    blob = await verifyBase(deps.ensure.paths, ensured.digest, ensured.size);
  } catch (err) {
    if (!(err instanceof BlobMissingError) || ctx.attempt <= 1) throw err;
    // A retry after the blob vanished: run the ensure step again, pinned to the digest the child ensured.
    ctx.log.warn({ digest: ensured.digest }, 'base image missing on retry: pulling it again');
    ensured = await ensureImage({ image: p.image, imageType: p.imageType, imageDigest: ensured.digest }, deps.ensure, { log: ctx.log, signal: ctx.signal });
    blob = await verifyBase(deps.ensure.paths, ensured.digest, ensured.size);
  }

  const env = { ...process.env, FLEETQ_ROOT: deps.root };
  const vm = p.kind === 'clone' ? p.name! : p.vm!;
  const onLine = (stream: 'stdout' | 'stderr', line: string) => {
    ctx.jobLog?.(`[cocoon ${stream}] ${line}`);
    ctx.log.debug({ stream, line }, 'cocoon output');
  };

  // Idempotency for at-least-once delivery: a clone that an earlier attempt already made is done.
  if (p.kind === 'clone') {
    const existing = await inspectVm(deps, vm, env, ctx.signal);
    if (existing) {
      if (existing.snapshot === p.snapshot) {
        ctx.log.info({ vm }, 'clone already exists from this snapshot (earlier attempt): nothing to do');
        return { kind: p.kind, vm, snapshot: p.snapshot, digest: ensured.digest, blobPath: blob.path, outcome: 'already-done', durationMs: Date.now() - started, cocoon: existing };
      }
      throw new CocoonError(`VM ${vm} already exists (from snapshot ${String(existing.snapshot)}): pick another name`, 'E_COCOON_VM_EXISTS', true);
    }
  }

  const args = cocoonArgs(p);
  ctx.log.info({ args, digest: ensured.digest }, 'running cocoon');
  ctx.jobLog?.(`$ ${deps.cocoonBin} ${args.join(' ')}`);
  const run = await runCocoon({ bin: deps.cocoonBin, args, timeoutMs: deps.cocoonTimeoutMs, signal: ctx.signal, env, onLine });
  return {
    kind: p.kind,
    vm,
    snapshot: p.snapshot,
    digest: ensured.digest,
    blobPath: blob.path,
    outcome: 'done',
    durationMs: Date.now() - started,
    cocoon: lastJson(run.stdout),
  };
}

async function inspectVm(deps: RestoreDeps, vm: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<Record<string, unknown> | undefined> {
  try {
    const run = await runCocoon({ bin: deps.cocoonBin, args: inspectArgs(vm), timeoutMs: Math.min(deps.cocoonTimeoutMs, 60_000), signal, env });
    const json = lastJson(run.stdout);
    return json && typeof json === 'object' ? (json as Record<string, unknown>) : {};
  } catch (err) {
    if (err instanceof CocoonError && (err.code === 'E_COCOON_VM_NOT_FOUND' || /not found/i.test(err.message))) return undefined;
    throw err;
  }
}

function lastJson(stdout: string): unknown {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      return JSON.parse(line);
    } catch {
      /* not JSON */
    }
  }
  try {
    return stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    return undefined;
  }
}
