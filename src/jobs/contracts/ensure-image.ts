/** The ensure-image job: make sure an image blob is in this host's store. */
import { z } from 'zod';
import { DigestField, ImageType, ImageUrl } from './common.js';

export const ENSURE_IMAGE = 'ensure-image' as const;

export const EnsureImagePayload = z.strictObject({
  image: ImageUrl,
  imageType: ImageType.default('cloudimg'),
  imageDigest: DigestField.optional(),
  force: z.boolean({ error: 'must be true or false' }).optional(),
});
export type EnsureImagePayload = z.output<typeof EnsureImagePayload>;
export type EnsureImageInput = z.input<typeof EnsureImagePayload>;

export const PullOutcome = z.enum(['present', 'pulled']);
export type PullOutcome = z.infer<typeof PullOutcome>;

export const EnsureImageResult = z.object({
  outcome: PullOutcome,
  digest: DigestField,
  path: z.string(),
  size: z.number().int().nonnegative(),
  bytesDownloaded: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
});
export type EnsureImageResult = z.infer<typeof EnsureImageResult>;

/** Progress reported on the job while a download runs (`progress`: whole percent for Bull Board's ring; 0 while the total is unknown). */
export const PullProgress = z.object({
  progress: z.number().int().min(0).max(100),
  bytes: z.number(),
  total: z.number().nullable(),
  rate: z.number(),
});
export type PullProgress = z.infer<typeof PullProgress>;
