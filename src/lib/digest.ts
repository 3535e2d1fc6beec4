/**
 * A content digest, `sha256:` + 64 lowercase hex: the one type every module
 * past a trust boundary uses for it (blob paths, lock keys, dedup ids, the
 * index, snapshot records, results). It is checked once, where it enters
 * (CLI flag and job payload through the zod contracts, images.json and
 * cocoon's records read from disk), and never re-checked or re-sliced after.
 *
 * On the wire and on disk it stays the plain string (`toJSON`), so job data,
 * return values and images.json are byte-for-byte what they were.
 * Cheap by design: one regex test and one slice per parse (the cache-hit path
 * parses one per job).
 */
import { z } from 'zod';
import { InvalidInputError } from './errors.js';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const PREFIX = 'sha256:';

/** What a bad digest is told (the zod contracts and `Digest.parse` say the same). */
export const DIGEST_RULE = 'must be "sha256:" followed by 64 lowercase hex characters';

export class Digest {
  /** `sha256:<64 hex>`. */
  readonly value: string;
  /** The 64 hex characters: blob file names, lock keys, dedup ids. */
  readonly hex: string;

  private constructor(value: string) {
    this.value = value;
    this.hex = value.slice(PREFIX.length);
    Object.freeze(this);
  }

  /** Whether `value` is a digest string, without building one. */
  static test(value: unknown): value is string {
    return typeof value === 'string' && DIGEST_RE.test(value);
  }

  /** The digest, or undefined for anything else (for callers that raise their own error, e.g. a bad record on disk). */
  static from(value: unknown): Digest | undefined {
    return Digest.test(value) ? new Digest(value) : undefined;
  }

  /** The digest, or an InvalidInputError naming `field` and what is wrong with the value. */
  static parse(value: unknown, field = 'digest'): Digest {
    if (Digest.test(value)) return new Digest(value);
    if (value === undefined) throw new InvalidInputError(`${field} is required`, field);
    const got = typeof value === 'string' ? JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value) : value === null ? 'null' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
    throw new InvalidInputError(`${field} ${DIGEST_RULE} (got ${got})`, field);
  }

  /** `sha256:<hex>` from a bare hex name (blob file names, cocoon's image_blob_ids keys); undefined unless 64 lowercase hex. */
  static fromHex(hex: string): Digest | undefined {
    return Digest.from(PREFIX + hex);
  }

  /**
   * The zod schema of a digest field: a string with the digest pattern (what
   * the published JSON Schemas show) that parses into a Digest. Input side: a
   * string, or a Digest (its string), so a parsed payload can be submitted
   * again as it is; output side: a Digest.
   */
  static readonly schema = z.coerce
    .string<string | Digest>()
    .regex(DIGEST_RE, DIGEST_RULE)
    .transform((v) => new Digest(v));

  equals(other: Digest | undefined): boolean {
    return other !== undefined && other.value === this.value;
  }

  toString(): string {
    return this.value;
  }

  toJSON(): string {
    return this.value;
  }
}
