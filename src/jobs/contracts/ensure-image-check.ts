/**
 * The worker's check of an ensure-image payload, without zod on the hot path.
 *
 * zod (`EnsureImagePayload`) stays the one definition of the contract and of
 * every error message. This check only answers, in ~1 µs, for payloads whose
 * zod result is already known: a plain object whose fields are the contract's
 * own, whose digest and flags have the simple shape, and whose `image` zod has
 * already accepted unchanged (it is its own canonical form). The first job for
 * a URL, any other spelling of it, and every bad payload go through zod, so a
 * payload fails with the same InvalidInputError naming the field as before.
 * Its output equals zod's (test/unit/jobs/ensure-image-check.test.ts).
 */
import { Digest } from '../../lib/digest.js';
import { parsePayload } from './common.js';
import { ENSURE_IMAGE, EnsureImagePayload } from './ensure-image.js';

/** URLs zod accepted as already canonical (output === input). Bounded: cleared when full. */
const canonicalUrls = new Set<string>();
const MAX_URLS = 4096;

type Fields = { image?: unknown; imageType?: unknown; imageDigest?: unknown; force?: unknown };

/** The check without zod: the payload, or undefined when zod must decide. */
export function fastEnsureImagePayload(data: unknown): EnsureImagePayload | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  let fields = 0;
  for (const k in data) {
    if (k !== 'image' && k !== 'imageType' && k !== 'imageDigest' && k !== 'force') return undefined;
    fields++;
  }
  const d = data as Fields;
  // Only own properties count for zod; an inherited field is left to it.
  if (fields !== Object.keys(d).length) return undefined;
  const { image, imageType, imageDigest, force } = d;
  if (typeof image !== 'string' || !canonicalUrls.has(image)) return undefined;
  if (imageType !== undefined && imageType !== 'cloudimg') return undefined;
  if (imageDigest !== undefined && !Digest.test(imageDigest)) return undefined;
  if (force !== undefined && typeof force !== 'boolean') return undefined;
  const out: EnsureImagePayload = { image, imageType: 'cloudimg' };
  // zod keeps a field given as undefined (as undefined): so does this.
  if ('imageDigest' in d) out.imageDigest = imageDigest === undefined ? undefined : Digest.from(imageDigest);
  if ('force' in d) out.force = force;
  return out;
}

/** Parse an ensure-image payload: zod's result, or its InvalidInputError naming the field. */
export function parseEnsureImagePayload(data: unknown): EnsureImagePayload {
  const quick = fastEnsureImagePayload(data);
  if (quick) return quick;
  const payload = parsePayload(EnsureImagePayload, data, ENSURE_IMAGE);
  const image = (data as Fields).image;
  if (payload.image === image) {
    if (canonicalUrls.size >= MAX_URLS) canonicalUrls.clear();
    canonicalUrls.add(payload.image);
  }
  return payload;
}
