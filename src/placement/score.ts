/**
 * Placement of a restore (`--host auto`): which live host gets it. Pure: the
 * facts are gathered by place-restore.ts; this decides and explains.
 *
 * 1. Filter. A host is eligible only if it is registered and up, a live
 *    worker of it consumes its restores queue, its store is writable, and it
 *    published the snapshot (a clone needs the snapshot on that host). A
 *    host whose snapshot records another base digest than the job pins is
 *    rejected (the restore would fail there before cocoon runs), and so is a
 *    disk-full host that does not already hold the image (it could not pull it).
 * 2. Score, as kube-scheduler's ImageLocality (pkg/scheduler/framework/
 *    plugins/imagelocality): for the one base image of the restore,
 *    sum = presence × size × spread, where presence is 1 for a committed blob
 *    (`complete` holder), 0.5 for a download in progress (`partial`), 0 when
 *    the host does not hold it; spread = live hosts holding it / live hosts
 *    (an image held by few hosts weighs less: no hot spot for rare images);
 *    then sum is clamped to [23 MiB, 1000 MiB] and scaled to 0–100 (integer,
 *    rounded down). An image of unknown size counts as 1000 MiB: VM base
 *    images are GBs, and a missing size must not hide locality.
 * 3. Rank: higher score, then the shorter restore queue (waiting +
 *    prioritized + waiting-children + active + delayed), then the host id
 *    (stable).
 */
import type { RestorePlacement } from '../jobs/contracts/restore.js';
import type { Digest } from '../lib/digest.js';
import { formatBytes, formatDuration } from '../lib/units.js';

const MiB = 1024 * 1024;

/** kube-scheduler ImageLocality's constants (one container: maxContainerThreshold × 1). */
export const IMAGE_LOCALITY = {
  minBytes: 23 * MiB,
  maxBytes: 1000 * MiB,
  maxScore: 100,
  /** A holder still downloading counts this much of a committed one. */
  partialWeight: 0.5,
} as const;

export type StoreHealthState = 'ok' | 'disk-full' | 'store-unwritable';

/** What the host published about the job's snapshot (snapshot-catalog.ts). */
export interface PublishedSnapshots {
  /** The host has the snapshot (by name or ID). */
  has: boolean;
  /** The base digest its record names, when it has it and names one. */
  digest?: Digest | undefined;
  /** How many snapshots the host published. */
  count: number;
  /** When `cocoon snapshot ls` last succeeded there (ms). */
  listedAt?: number | undefined;
  /** The newest listing failed with this (the published names are the last good ones, if any). */
  error?: string | undefined;
}

/** One candidate host, as the I/O side found it. */
export interface CandidateFacts {
  host: string;
  /** In the host registry at all. */
  registered: boolean;
  up: boolean;
  lastSeen?: number | undefined;
  /** A live worker of the host consumes its restores queue. */
  consumesRestores: boolean;
  health: StoreHealthState;
  /** Undefined: the host published no snapshot list (no worker with the restores queue ran `cocoon snapshot ls` yet). */
  snapshots?: PublishedSnapshots | undefined;
  /** Jobs in its restores queue; only needed for hosts that pass the filter. */
  restoreQueue?: number | undefined;
}

/** A live holder of a digest (peer/holders.ts, reduced to what scoring reads). */
export interface HolderFacts {
  host: string;
  state: 'complete' | 'partial';
  size?: number | undefined;
}

export interface PlacementInput {
  snapshot: string;
  /** The job's pinned digest, when it has one. */
  jobDigest?: Digest | undefined;
  candidates: readonly CandidateFacts[];
  /** Live holders per digest (`Digest.value` → holders); digests nobody holds may be absent. */
  holders: ReadonlyMap<string, readonly HolderFacts[]>;
  /** Live hosts in the whole registry (the spread's denominator). */
  liveHosts: number;
  now: number;
}

export interface HostVerdict {
  host: string;
  eligible: boolean;
  /** Why it was not eligible. */
  rejected?: string | undefined;
  /** 0–100 (0 for rejected hosts). */
  score: number;
  /** The base digest scored for this host (the job's pin, else its snapshot record). */
  digest?: Digest | undefined;
  holding?: 'complete' | 'partial' | undefined;
  imageBytes?: number | undefined;
  restoreQueue?: number | undefined;
}

export interface PlacementDecision {
  snapshot: string;
  /** The host chosen, or undefined when no host is eligible. */
  chosen?: HostVerdict | undefined;
  /** Why the chosen host (one line), or why none (one line naming every host considered). */
  reason: string;
  /** Eligible hosts best first, then the rejected ones by host id. */
  verdicts: HostVerdict[];
}

/** The digest a restore on this host needs: the job's pin, else the host's snapshot record. */
function digestFor(input: PlacementInput, c: CandidateFacts): Digest | undefined {
  return input.jobDigest ?? c.snapshots?.digest;
}

/** Why a host cannot take the restore, or undefined when it can. */
export function rejection(input: PlacementInput, c: CandidateFacts): string | undefined {
  if (!c.registered) return 'not registered (no worker has announced this host id)';
  if (!c.up) return `down (last heartbeat ${c.lastSeen ? `${formatDuration(input.now - c.lastSeen)} ago` : 'never'})`;
  if (!c.consumesRestores) return 'no live worker consumes its restores queue (FLEETQ_QUEUES)';
  if (c.health === 'store-unwritable') return 'store not writable';
  const s = c.snapshots;
  if (!s) return 'published no snapshot list (no worker with the restores queue has listed its snapshots yet)';
  if (!s.has && s.error && s.listedAt === undefined) return `cannot list its snapshots: \`cocoon snapshot ls\` failed: ${s.error}`;
  if (!s.has) {
    const failing = s.error ? `; its last \`cocoon snapshot ls\` failed: ${s.error}` : '';
    return `does not have snapshot ${input.snapshot} (${s.count} snapshot${s.count === 1 ? '' : 's'} published${failing})`;
  }
  if (input.jobDigest && s.digest && !s.digest.equals(input.jobDigest)) {
    return `its snapshot ${input.snapshot} boots ${short(s.digest)}, not the job's ${short(input.jobDigest)}`;
  }
  if (c.health === 'disk-full') {
    const d = digestFor(input, c);
    const holds = d && (input.holders.get(d.value) ?? []).some((h) => h.host === c.host && h.state === 'complete');
    if (!holds) return `disk full and does not hold ${d ? short(d) : 'the base image'}`;
  }
  return undefined;
}

/** kube-scheduler's calculatePriority for one image: clamp, scale to 0–100, round down. */
export function localityScore(sumBytes: number): number {
  const { minBytes, maxBytes, maxScore } = IMAGE_LOCALITY;
  const clamped = Math.min(maxBytes, Math.max(minBytes, sumBytes));
  return Math.floor((maxScore * (clamped - minBytes)) / (maxBytes - minBytes));
}

/** Score one eligible host: its verdict without the queue. */
function scoreHost(input: PlacementInput, c: CandidateFacts): HostVerdict {
  const digest = digestFor(input, c);
  const holders = digest ? (input.holders.get(digest.value) ?? []) : [];
  const own = holders.find((h) => h.host === c.host);
  const knownSizes = holders.map((h) => h.size).filter((s): s is number => typeof s === 'number' && s > 0);
  const imageBytes = own?.size && own.size > 0 ? own.size : knownSizes.length ? Math.max(...knownSizes) : undefined;
  let score = 0;
  if (own) {
    const presence = own.state === 'complete' ? 1 : IMAGE_LOCALITY.partialWeight;
    const spread = Math.min(1, new Set(holders.map((h) => h.host)).size / Math.max(1, input.liveHosts));
    score = localityScore(presence * (imageBytes ?? IMAGE_LOCALITY.maxBytes) * spread);
  }
  return { host: c.host, eligible: true, score, digest, holding: own?.state, imageBytes, restoreQueue: c.restoreQueue ?? 0 };
}

/** Best first: score, then shorter restore queue, then host id. */
export function compareVerdicts(a: HostVerdict, b: HostVerdict): number {
  return b.score - a.score || (a.restoreQueue ?? 0) - (b.restoreQueue ?? 0) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0);
}

/** Decide where the restore goes, and say why. */
export function decidePlacement(input: PlacementInput): PlacementDecision {
  const eligible: HostVerdict[] = [];
  const rejected: HostVerdict[] = [];
  for (const c of input.candidates) {
    const why = rejection(input, c);
    if (why) rejected.push({ host: c.host, eligible: false, rejected: why, score: 0 });
    else eligible.push(scoreHost(input, c));
  }
  eligible.sort(compareVerdicts);
  rejected.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  const verdicts = [...eligible, ...rejected];
  const chosen = eligible[0];
  if (!chosen) {
    const considered = rejected.map((v) => `${v.host}: ${v.rejected}`).join('; ');
    return { snapshot: input.snapshot, verdicts, reason: `no live host has snapshot ${input.snapshot} and can take the restore (considered: ${considered || 'none — no host is registered'})` };
  }
  return { snapshot: input.snapshot, chosen, verdicts, reason: explain(input, chosen, eligible) };
}

/** The job data's `placement` for the chosen host (jobs/contracts/restore.ts). */
export function placementRecord(decision: PlacementDecision & { chosen: HostVerdict }, at: number): RestorePlacement {
  const c = decision.chosen;
  return {
    host: c.host,
    reason: decision.reason,
    at,
    score: c.score,
    restoreQueue: c.restoreQueue ?? 0,
    ...(c.digest ? { digest: c.digest } : {}),
    ...(c.holding ? { holding: c.holding } : {}),
    ...(c.imageBytes !== undefined ? { imageBytes: c.imageBytes } : {}),
  };
}

/** What people and tools see of every host considered (CLI --json): the verdicts without Digest objects' insides. */
export function candidateSummary(decision: PlacementDecision): Array<Record<string, unknown>> {
  return decision.verdicts.map((v) =>
    v.eligible
      ? { host: v.host, eligible: true, score: v.score, restoreQueue: v.restoreQueue ?? 0, ...(v.holding ? { holding: v.holding } : {}), ...(v.digest ? { digest: v.digest.value } : {}) }
      : { host: v.host, eligible: false, rejected: v.rejected },
  );
}

/** `has snapshot s1; holds sha256:0123456789ab… (256.0 MiB); restore queue 2 (shortest)`. */
function explain(input: PlacementInput, chosen: HostVerdict, eligible: readonly HostVerdict[]): string {
  const parts = [`has snapshot ${input.snapshot}`];
  const d = chosen.digest;
  const size = chosen.imageBytes !== undefined ? ` (${formatBytes(chosen.imageBytes)})` : '';
  if (!d) parts.push('base image unknown (the snapshot records no digest and the job pins none)');
  else if (chosen.holding === 'complete') parts.push(`holds ${short(d)}${size}, locality ${chosen.score}/100`);
  else if (chosen.holding === 'partial') parts.push(`is downloading ${short(d)}${size}, locality ${chosen.score}/100`);
  else parts.push(`does not hold ${short(d)}${eligible.some((v) => v.holding) ? '' : ' (no eligible host does)'}`);
  const peers = eligible.filter((v) => v !== chosen && v.score === chosen.score);
  const q = `restore queue ${chosen.restoreQueue ?? 0}`;
  if (eligible.length === 1) parts.push(`${q}; the only eligible host`);
  else if (peers.length === 0) parts.push(`${q}; best locality of ${eligible.length} eligible hosts`);
  else if (peers.every((v) => (v.restoreQueue ?? 0) > (chosen.restoreQueue ?? 0))) parts.push(`${q} (shortest)`);
  else parts.push(`${q} (tied; first by host id)`);
  return parts.join('; ');
}

/** `sha256:` and the first 12 hex digits: enough to tell digests apart in a line. */
export function short(d: Digest): string {
  return `sha256:${d.hex.slice(0, 12)}…`;
}
