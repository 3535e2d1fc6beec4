/**
 * The ensure-image handler: payload in, blob on disk out.
 *
 *   1. look at the store and ask the pull policy (no lock, no network when present);
 *   2. otherwise become the leader for (host, digest|URL) or wait for it;
 *   3. the leader downloads in one pass (sha256 while streaming; from peers
 *      first for a pinned digest with a fleet token, see pull-body.ts),
 *      verifies the pin, commits atomically, then points the URL at the
 *      digest in the index.
 */
import type { JobLog } from '../lib/lazy-log.js';
import type { EnsureImagePayload, EnsureImageResult } from '../jobs/contracts/ensure-image.js';
import type { PullProgressReport } from '../fetch/fetch-image.js';
import { LockLostError } from '../lock/lock-errors.js';
import { IndexCorruptError } from '../store/store-errors.js';
import type { PullCoordinator } from '../lock/pull-coordinator.js';
import { decidePull, type PolicyOptions, type PullDecision, pullKey } from '../policy/pull-policy.js';
import { ensureLayout } from '../store/blob-store.js';
import { ensureReferenced, type IndexReferences } from '../store/image-index.js';
import { redactUrl } from '../lib/redact.js';
import { formatBytes, formatDuration } from '../lib/units.js';
import { inspectStore, inspectUrl, pinnedSnapshot, type StoreSnapshot } from './inspect-store.js';
import { pullBody, type PullBodyDeps } from './pull-body.js';

/** What the handler needs besides the download's own deps (PullBodyDeps: store, HTTP, bounds, peers). */
export interface EnsureDeps extends PullBodyDeps {
  coordinator: PullCoordinator;
  /** Host-wide policy options; `force` comes from each job's payload. */
  policy?: Omit<PolicyOptions, 'force'>;
  /** Cache of the digests images.json references (one per store). */
  references: IndexReferences;
}

/**
 * A pinned blob reported present must be referenced by images.json, or
 * `cocoon gc` may delete it (its URL entry may point at another digest now).
 * Cheap on the hot path: the referenced set is re-read only when the file changes.
 */
async function keepReferenced(deps: EnsureDeps, url: string, present: Present, log: JobLog): Promise<void> {
  try {
    if (await deps.references.has(deps.paths, present.digest)) return;
    if (await ensureReferenced(deps.paths, url, present.digest, present.size)) {
      log.info({ digest: present.digest }, 'pinned blob was not referenced by images.json: recorded it so cocoon gc keeps it');
    }
  } catch (err) {
    // A pinned blob on disk is present whatever the index says; an unreadable index is never overwritten.
    if (!(err instanceof IndexCorruptError)) throw err;
    log.warn({ err: err.message }, 'images.json is unreadable: the present blob is not indexed, and cocoon gc may delete it');
  }
}

export interface EnsureContext {
  log: JobLog;
  signal?: AbortSignal | undefined;
  /** Download progress, for `job.updateProgress` (never called when the image is present). */
  onProgress?: ((p: PullProgressReport) => void) | undefined;
  /**
   * The job's own log (BullMQ job.log), for what an operator must read: a pull's
   * milestones (started, 25/50/75 %, downloaded, verified, converted, committed).
   * Never called when the image is present: a cache hit writes nothing to its job.
   */
  jobLog?: ((line: string) => void) | undefined;
  /** Shown in the "pull started" line, e.g. "attempt 2/5" (job logs survive retries); called only on a pull. */
  attempt?: (() => string) | undefined;
  /** Called once when the job had to go through the pull lock, with how long it waited. */
  onLockWait?: ((ms: number) => void) | undefined;
}

type Present = Omit<EnsureImageResult, 'durationMs'>;
const NOT_FORCED: PolicyOptions = {};
type PresentDecision = Extract<PullDecision, { action: 'present' }>;

export async function ensureImage(payload: EnsureImagePayload, deps: EnsureDeps, ctx: EnsureContext): Promise<EnsureImageResult> {
  const started = performance.now();
  // Written out, not `{ ...r, durationMs }`: an object spread costs microseconds on Node 20, a literal ~0.1 µs.
  const finish = (r: Present): EnsureImageResult => ({
    outcome: r.outcome,
    digest: r.digest,
    path: r.path,
    size: r.size,
    bytesDownloaded: r.bytesDownloaded,
    durationMs: Math.round(performance.now() - started),
  });
  const url = payload.image;
  const pinned = payload.imageDigest;
  const policyOpts: PolicyOptions = payload.force ? { ...deps.policy, force: true } : (deps.policy ?? NOT_FORCED);

  /** What a snapshot of the store holds, once the policy has decided it is present. */
  const presentIn = (snap: StoreSnapshot, decision: PresentDecision): Present => {
    const blob = decision.via === 'pinned-blob' ? snap.pinnedBlob! : snap.urlBlob!;
    return { outcome: 'present', digest: blob.digest, path: blob.path, size: blob.size, bytesDownloaded: 0 };
  };
  /** A fresh look at the store, decided as never forced (the lock's re-check). */
  const presentFromStore = async () => {
    const snap = await inspectStore(deps.paths, url, pinned);
    const d = decidePull(snap.view, { ...policyOpts, force: false });
    return d.action === 'present' ? presentIn(snap, d) : undefined;
  };

  // Fast path: one look at the store, one decision; no lock, no network when present. A present pinned
  // blob that images.json is known to reference takes no await at all (no promise, no microtask).
  const snap = (pinned ? pinnedSnapshot(deps.paths, pinned) : undefined) ?? (await inspectUrl(deps.paths, url, pinned));
  const decision = decidePull(snap.view, policyOpts);
  if (decision.action === 'present') {
    const present = presentIn(snap, decision);
    if (decision.via === 'pinned-blob') {
      // Serving peers: the first time per digest and process, the blob is verified and announced in the background (one Set lookup after that).
      deps.local?.foundPresent(present.digest);
      if (!deps.references.knownReferenced(deps.paths, present.digest)) await keepReferenced(deps, url, present, ctx.log);
    }
    ctx.log.debug({ digest: present.digest }, 'image present');
    return finish(present);
  }
  ctx.log.info({ reason: decision.reason, cachedDigest: snap.view.urlEntry?.digest }, 'image needs download');

  let forcedDone = false;
  const outcome = await deps.coordinator.run<Present>({
    key: pullKey(pinned, url),
    signal: ctx.signal,
    // A forced job re-downloads even if the blob appeared meanwhile, but only once.
    recheck: async () => (payload.force && !forcedDone ? undefined : presentFromStore()),
    lead: async (signal, fence) => {
      const say = ctx.jobLog ?? (() => {});
      const shown = redactUrl(url);
      say(
        `pull started${ctx.attempt ? ` (${ctx.attempt()})` : ''}: GET ${shown}, ${
          decision.expectDigest ? `expecting ${decision.expectDigest}` : 'no digest pinned (the digest of what arrives is taken)'
        } [${decision.reason}]`,
      );
      await ensureLayout(deps.paths);
      const pulled = await pullBody(deps, {
        url,
        expectDigest: decision.expectDigest,
        signal,
        fence,
        say,
        log: ctx.log,
        onProgress: ctx.onProgress,
        onMilestone: ctx.jobLog
          ? (pct, p) => say(`downloaded ${pct}%: ${formatBytes(p.bytes)} of ${formatBytes(p.total ?? 0)} at ${formatBytes(p.rate)}/s`)
          : undefined,
      });
      const done = pulled.done;
      forcedDone = true;
      const received = pulled.fromUpstream + pulled.fromPeers;
      const secs = Math.max(pulled.receiveSeconds, 0.001);
      const split = pulled.fromPeers > 0 ? ` (${formatBytes(pulled.fromPeers)} from peers, ${formatBytes(pulled.fromUpstream)} from upstream)` : '';
      say(`downloaded ${formatBytes(received)} in ${formatDuration(secs * 1000)} (${formatBytes(Math.round(received / secs))}/s)${split}`);
      say(`verified ${done.blob.digest}: ${decision.expectDigest ? 'matches the pinned digest' : 'no digest was pinned, so this is the digest of what arrived'}; a disk image fleetq accepts`);
      if (done.converted) {
        say(`converted ${isQcow2(pulled.head) ? 'qcow2 (old version or unsupported features)' : 'raw'} to qcow2: ${formatBytes(done.bytes)} received, ${formatBytes(done.blob.size)} on disk`);
      }
      if (done.warning) {
        ctx.log.warn({ digest: done.blob.digest }, done.warning);
        say(`warn: ${done.warning}`);
      }
      if (done.indexed === 'pinned-ref') {
        throw new LockLostError(
          `lost the pull lock before recording ${redactUrl(url)}: the verified blob ${done.blob.digest} is kept (indexed as its own digest entry) but the URL's entry was left to the newer leader; retried`,
        );
      }
      say(`committed ${done.blob.path}${done.indexed === 'url' ? `, indexed under ${shown}` : ''}`);
      ctx.log.info({ digest: done.blob.digest, bytes: done.bytes, size: done.blob.size, fromPeers: pulled.fromPeers, fromUpstream: pulled.fromUpstream }, 'image pulled');
      return { outcome: 'pulled', digest: done.blob.digest, path: done.blob.path, size: done.blob.size, bytesDownloaded: done.bytes };
    },
  });
  ctx.onLockWait?.(outcome.lockWaitMs);
  if (outcome.role === 'follower') {
    ctx.log.info({ lockWaitMs: outcome.lockWaitMs }, 'image pulled by another job');
    ctx.jobLog?.(`image pulled by another job on this host (waited ${formatDuration(outcome.lockWaitMs)} for it): ${outcome.result.digest}`);
    const present: Present = { ...outcome.result, outcome: 'present', bytesDownloaded: 0 };
    if (pinned) {
      deps.local?.foundPresent(present.digest);
      await keepReferenced(deps, url, present, ctx.log);
    }
    return finish(present);
  }
  return finish(outcome.result);
}

/** qcow2's magic, "QFI\xfb". */
function isQcow2(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32BE(0) === 0x514649fb;
}
