/**
 * Field schemas shared by job contracts, and the one function that turns a
 * zod failure into an error naming the field.
 */
import { z } from 'zod';
import { InvalidInputError } from '../../lib/errors.js';
import { redactUrl } from '../../lib/redact.js';

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** A content digest: exactly `sha256:` + 64 lowercase hex. Validated before it ever touches a path. */
export const Digest = z.string().regex(DIGEST_RE, 'must be "sha256:" followed by 64 lowercase hex characters');
export type Digest = z.infer<typeof Digest>;

/** A cloud image reference: an absolute http(s) URL, nothing else (no file://, no OCI refs). */
export const ImageUrl = z
  .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') })
  .min(1, 'is required')
  .max(4096, 'is longer than 4096 characters')
  .superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be an absolute http:// or https:// URL', input: value });
      return;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      ctx.addIssue({ code: 'custom', message: `has unsupported protocol scheme "${url.protocol.slice(0, -1)}": only http and https are allowed`, input: value });
    }
  });

/** `cloudimg` today; `oci` is reserved for the OCI backend. */
export const ImageType = z.enum(['cloudimg'], { error: 'must be "cloudimg" (oci images are not supported yet)' });

function shownValue(input: unknown): string {
  if (input === undefined) return '';
  const text = typeof input === 'string' ? redactUrl(input) : JSON.stringify(input);
  if (text === undefined) return '';
  return ` (got ${JSON.stringify(text.length > 120 ? `${text.slice(0, 117)}...` : text)})`;
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = data;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/** Parse `data` or throw an InvalidInputError whose message names the offending field. */
export function parsePayload<S extends z.ZodType>(schema: S, data: unknown, what: string): z.output<S> {
  const result = schema.safeParse(data, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  let field = issue.path.map(String).join('.');
  let message = issue.message;
  const kind = data && typeof data === 'object' && typeof (data as { kind?: unknown }).kind === 'string' ? (data as { kind: string }).kind : undefined;
  if (issue.code === 'unrecognized_keys') {
    field = issue.keys.join(', ');
    message = kind ? `is not a known field for kind "${kind}"` : 'is not a known field';
  } else if (issue.code === 'invalid_type' && issue.input === undefined) {
    message = 'is required';
  }
  // A union's issue carries the whole object as input: show the field's own value.
  const input = issue.code === 'invalid_union' && issue.path.length ? valueAt(data, issue.path) : issue.input;
  const value = issue.code === 'unrecognized_keys' ? '' : shownValue(input);
  throw new InvalidInputError(`invalid ${what} payload: ${field || '(root)'} ${message}${value}`, field || '(root)');
}
