/** The restore job: clone a new VM from a snapshot, or restore a VM to one of its snapshots, through cocoon. */
import { z } from 'zod';
import { Digest, ImageType, ImageUrl } from './common.js';

export const RESTORE = 'restore' as const;

/** VM and snapshot names become cocoon arguments: never let one start with "-". */
export const CocoonName = z
  .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit');

/** cocoon's size strings: 8G, 512M, 20G, 1T (binary units). */
export const CocoonSize = z
  .string({ error: 'must be a size string such as 8G or 512M' })
  .regex(/^[1-9]\d*(\.\d+)?[KMGT]$/i, 'must be a size such as 512M, 8G or 1T');

export const RestorePayload = z
  .strictObject({
    kind: z.enum(['clone', 'restore'], { error: 'must be "clone" or "restore"' }),
    snapshot: CocoonName,
    vm: CocoonName.optional(),
    name: CocoonName.optional(),
    image: ImageUrl,
    imageType: ImageType.default('cloudimg'),
    imageDigest: Digest.optional(),
    cpu: z.number({ error: 'must be a whole number' }).int('must be a whole number').min(1, 'must be at least 1').max(256, 'must be at most 256').optional(),
    memory: CocoonSize.optional(),
    storage: CocoonSize.optional(),
    nics: z.number({ error: 'must be a whole number' }).int('must be a whole number').min(0, 'must be at least 0').max(16, 'must be at most 16').optional(),
    onDemand: z.boolean({ error: 'must be true or false' }).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.kind === 'restore') {
      if (!p.vm) ctx.addIssue({ code: 'custom', path: ['vm'], message: 'is required for kind "restore"' });
      if (p.name !== undefined) ctx.addIssue({ code: 'custom', path: ['name'], message: 'is only for kind "clone" (restore keeps the VM\'s name)' });
      if (p.nics !== undefined) ctx.addIssue({ code: 'custom', path: ['nics'], message: 'is only for kind "clone" (a restore keeps the VM\'s NICs)' });
    } else if (p.vm !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['vm'], message: 'is only for kind "restore" (use name to name the clone)' });
    }
  });
export type RestorePayload = z.output<typeof RestorePayload>;
export type RestoreInput = z.input<typeof RestorePayload>;

export const RestoreResult = z.object({
  kind: z.enum(['clone', 'restore']),
  vm: z.string(),
  snapshot: z.string(),
  digest: Digest,
  blobPath: z.string(),
  /** `done` = cocoon ran; `already-done` = a retry found the clone already made by an earlier attempt. */
  outcome: z.enum(['done', 'already-done']),
  durationMs: z.number(),
  cocoon: z.unknown().optional(),
});
export type RestoreResult = z.infer<typeof RestoreResult>;
