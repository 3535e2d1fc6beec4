/**
 * The restore job: clone a new VM from a snapshot, or restore a VM to one of
 * its snapshots, through cocoon. The rules checked here are cocoon's own
 * (`../shared/reference/cocoon-cli.md` §3–§4), so a payload cocoon would
 * reject never reaches a worker.
 *
 * `image` and `imageDigest` are optional: the snapshot records the base image
 * it boots (`cocoon snapshot inspect`), and that record decides what is pulled.
 * A job that names a digest the snapshot contradicts fails before anything runs.
 */
import { z } from 'zod';
import { HostId } from '../../config/schema.js';
import { DigestField, ImageType, ImageUrl } from './common.js';

export const RESTORE = 'restore' as const;

/** cocoon's VM name rule (`vm clone --name`), also applied to snapshot and VM refs: never let one start with "-". */
export const COCOON_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;
export const CocoonName = z
  .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') })
  .regex(COCOON_NAME_RE, `must match ${COCOON_NAME_RE.source} (1-63 letters, digits, ".", "_" or "-", starting with a letter or digit)`);

const SIZE_RE = /^(\d+(?:\.\d+)?) ?(?:([kmgtp])i?)?b?$/i;
const SIZE_MULT: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/** go-units RAMInBytes, as cocoon parses --memory/--storage: binary units, case-insensitive, optional b/ib. */
export function parseCocoonSize(s: string): number | undefined {
  const m = SIZE_RE.exec(s);
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * (m[2] ? SIZE_MULT[m[2].toLowerCase()]! : 1));
}

export const MIN_CLONE_MEMORY = 512 * 1024 ** 2;
export const MIN_CLONE_STORAGE = 10 * 1024 ** 3;

/** A size string cocoon accepts: 8G, 512M, 1.5GiB, 40g, 1073741824. */
const CocoonSize = (min?: { bytes: number; label: string }) =>
  z.string({ error: 'must be a size string such as 8G or 512M' }).superRefine((v, ctx) => {
    const bytes = parseCocoonSize(v);
    if (bytes === undefined || bytes <= 0) {
      ctx.addIssue({ code: 'custom', message: 'must be a size such as 512M, 8G or 1.5GiB (binary units)' });
    } else if (min && bytes < min.bytes) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${min.label} (cocoon's minimum)` });
    }
  });

const wholeNumber = z.number({ error: 'must be a whole number' }).int('must be a whole number');

/**
 * Where `--host auto` (placement/) put the job and why, decided at enqueue
 * time: the host had the snapshot, and among such hosts the best image
 * locality score (kube-scheduler ImageLocality), then the shortest restore
 * queue. A record for people and tools; the worker does not act on it.
 */
export const RestorePlacement = z.strictObject({
  /** The host chosen (the job is on its restores queue). */
  host: HostId,
  /** One line: `has snapshot s1; holds sha256:… (256.0 MiB); restore queue 2 (shortest)`. */
  reason: z.string({ error: 'must be a string' }).min(1, 'is required').max(2000, 'is longer than 2000 characters'),
  /** When it was decided (ms since the epoch). */
  at: z.number({ error: 'must be a number' }).int('must be a whole number').nonnegative('must not be negative'),
  /** Image locality score 0–100 (kube-scheduler's scale). */
  score: z.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'must be 0-100').max(100, 'must be 0-100'),
  /** Jobs in the host's restores queue then (waiting, prioritized, waiting for children, active, delayed). */
  restoreQueue: z.number({ error: 'must be a number' }).int('must be a whole number').nonnegative('must not be negative'),
  /** The base image digest placement scored (the job's pin, else the host's snapshot record), when known. */
  digest: DigestField.optional(),
  /** Whether the host held that digest: committed (`complete`) or downloading (`partial`); absent when it did not. */
  holding: z.enum(['complete', 'partial']).optional(),
  /** The image's size as its holders reported it, when known. */
  imageBytes: z.number().int().nonnegative().optional(),
});
export type RestorePlacement = z.output<typeof RestorePlacement>;

/** What both kinds share. */
const common = {
  snapshot: CocoonName,
  /** The base image URL: only needed when the snapshot records none (older snapshots). */
  image: ImageUrl.optional(),
  imageType: ImageType.default('cloudimg'),
  /** A digest the job expects; the snapshot's recorded digest must agree. */
  imageDigest: DigestField.optional(),
  cpu: wholeNumber.min(1, 'must be at least 1').max(256, 'must be at most 256').optional(),
  onDemand: z.boolean({ error: 'must be true or false' }).optional(),
  /** Set by `--host auto` / `enqueueRestoreAuto`: the host chosen and why. */
  placement: RestorePlacement.optional(),
};

export const ClonePayload = z.strictObject({
  kind: z.literal('clone'),
  ...common,
  /** The new VM's name: required (cocoon's default name never takes effect, and a retry must recognise its own clone). */
  name: CocoonName,
  memory: CocoonSize({ bytes: MIN_CLONE_MEMORY, label: '512M' }).optional(),
  storage: CocoonSize({ bytes: MIN_CLONE_STORAGE, label: '10G' }).optional(),
  /** cocoon reads 0 as "the snapshot's count", so 0 is refused rather than passed on. */
  nics: wholeNumber.min(1, 'must be at least 1 (omit it to keep the snapshot\'s NICs)').max(16, 'must be at most 16').optional(),
});

export const RestoreVmPayload = z.strictObject({
  kind: z.literal('restore'),
  ...common,
  /** The VM to roll back to one of its own snapshots (it must be running). */
  vm: CocoonName,
  memory: CocoonSize().optional(),
  storage: CocoonSize().optional(),
});

export const RestorePayload = z.discriminatedUnion('kind', [ClonePayload, RestoreVmPayload], {
  error: (iss) => (iss.code === 'invalid_union' ? 'must be "clone" or "restore"' : undefined),
});
export type RestorePayload = z.output<typeof RestorePayload>;
export type RestoreInput = z.input<typeof RestorePayload>;
export type ClonePayload = z.output<typeof ClonePayload>;
export type RestoreVmPayload = z.output<typeof RestoreVmPayload>;

/** The VM a restore job acts on. */
export const targetVm = (p: RestorePayload): string => (p.kind === 'clone' ? p.name : p.vm);

export const RestoreResult = z.object({
  kind: z.enum(['clone', 'restore']),
  vm: z.string(),
  snapshot: z.string(),
  /** The base digest (absent only for an already-done clone of an old snapshot that records none). */
  digest: DigestField.optional(),
  /** Where the digest came from: the snapshot's record, the job (snapshot records none), or the URL's pull (neither has one). */
  digestSource: z.enum(['snapshot', 'job', 'url']),
  blobPath: z.string().optional(),
  /** `done` = cocoon ran; `already-done` = a redelivered clone found the VM its earlier attempt made. */
  outcome: z.enum(['done', 'already-done']),
  /** The ensure-image job this restore waited for, when the base was not on disk. */
  imageJobId: z.string().optional(),
  durationMs: z.number(),
  cocoon: z.unknown().optional(),
});
export type RestoreResult = z.infer<typeof RestoreResult>;
