/**
 * Field schemas shared by job contracts, and the one function that turns a
 * zod failure into an error naming the field.
 */
import { z } from 'zod';
import { Digest } from '../../lib/digest.js';
import { InvalidInputError } from '../../lib/errors.js';
import { redactUrl } from '../../lib/redact.js';

/** A digest field: a `sha256:` + 64 lowercase hex string on the wire, a `Digest` once parsed (src/lib/digest.ts). */
export const DigestField = Digest.schema;

/**
 * A cloud image reference: an absolute http(s) URL with a host, parsed once
 * with the WHATWG parser (the one undici fetches with) and stored as its
 * canonical `href`, fragment dropped. Spellings the parser silently rewrites
 * are refused rather than guessed at, so what is shown, stored, locked on and
 * fetched is one string: blanks or control characters anywhere (the parser
 * trims them or drops tabs and newlines), backslashes before the query (read
 * as "/"), `http:host` or `http:///host` (no or extra slashes). Credentials
 * (`user:pw@`) are refused: they would sit in Redis, job lists and the board;
 * the worker's credential store (FLEETQ_IMAGE_AUTH_FILE) holds them instead.
 * Signed query strings (S3/GCS presigned URLs) are per-URL and short-lived:
 * allowed, and redacted wherever shown.
 */
const NO_CREDENTIALS =
  'must not carry credentials (user:password@): put them in the credential store of the workers that pull it (FLEETQ_IMAGE_AUTH_FILE), which sends them to that origin only';

export const ImageUrl = z
  .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') })
  .min(1, 'is required')
  .max(4096, 'is longer than 4096 characters')
  .transform((value, ctx) => {
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message, input: value });
      return z.NEVER;
    };
    if (/^\s|\s$/.test(value)) return fail('must not start or end with whitespace');
    if (/[\s\x00-\x1f\x7f]/.test(value)) return fail('must not contain whitespace or control characters (percent-encode them, e.g. %20)');
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value);
    if (!scheme) return fail('must be an absolute http:// or https:// URL');
    const protocol = scheme[1]!.toLowerCase();
    if (protocol !== 'http' && protocol !== 'https') {
      return fail(`has unsupported protocol scheme "${protocol}": only http and https are allowed`);
    }
    const rest = value.slice(scheme[0].length);
    const beforeQuery = rest.split(/[?#]/, 1)[0]!;
    // The authority however it is spelled (http:u@h, http:\\u@h, http:///u@h): credentials get their own message.
    const authority = beforeQuery.replace(/^[/\\]*/, '').split(/[/\\]/, 1)[0]!;
    if (authority.includes('@')) {
      return fail(NO_CREDENTIALS);
    }
    if (beforeQuery.includes('\\')) return fail('must not contain "\\" before the query (URL parsers read it as "/"): use "/"');
    if (!/^\/\/[^/]/.test(rest)) return fail(`must be written ${protocol}://host/path (exactly two slashes after "${protocol}:")`);
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return fail('must be an absolute http:// or https:// URL (its host or port is not valid)');
    }
    if (url.username || url.password) {
      return fail(NO_CREDENTIALS);
    }
    if (!url.hostname) return fail('must have a host');
    url.hash = '';
    return url.href;
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
