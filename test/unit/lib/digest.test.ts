/**
 * Digest: the one value a content digest is past a trust boundary. What it
 * accepts and refuses, what it exposes, and that its wire form is the plain
 * `sha256:<hex>` string (job data, return values and images.json unchanged).
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { EnsureImagePayload, EnsureImageResult } from '../../../src/jobs/contracts/ensure-image.js';
import { Digest, DIGEST_RULE } from '../../../src/lib/digest.js';
import { InvalidInputError } from '../../../src/lib/errors.js';
import { ImageIndex } from '../../../src/store/image-index.js';

const HEX = '0123456789abcdef'.repeat(4);
const D = `sha256:${HEX}`;

function refusal(value: unknown, field?: string): InvalidInputError {
  try {
    Digest.parse(value, field);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return err as InvalidInputError;
  }
  throw new Error(`${JSON.stringify(value)} was accepted`);
}

describe('Digest.parse', () => {
  it('accepts sha256: + 64 lowercase hex, and exposes the whole value and the hex', () => {
    const d = Digest.parse(D, 'imageDigest');
    expect(d).toBeInstanceOf(Digest);
    expect(d.value).toBe(D);
    expect(d.hex).toBe(HEX);
    expect(d.hex).toHaveLength(64);
  });

  it.each([
    ['upper-case hex', `sha256:${HEX.toUpperCase()}`],
    ['63 hex', `sha256:${HEX.slice(1)}`],
    ['65 hex', `sha256:${HEX}0`],
    ['another algorithm', `sha512:${HEX}`],
    ['no algorithm', HEX],
    ['a path in disguise', `sha256:../../${HEX.slice(6)}`],
    ['a trailing newline', `${D}\n`],
    ['a leading blank', ` ${D}`],
    ['empty', ''],
  ])('refuses %s, naming the field, the rule and the value', (_name, value) => {
    const err = refusal(value, 'imageDigest');
    expect(err.code).toBe('E_INVALID_INPUT');
    expect(err.permanent).toBe(true);
    expect(err.field).toBe('imageDigest');
    expect(err.message).toBe(`imageDigest ${DIGEST_RULE} (got ${JSON.stringify(value)})`);
  });

  it('refuses what is not a string, saying what it got', () => {
    expect(refusal(42, 'digest').message).toBe(`digest ${DIGEST_RULE} (got a number)`);
    expect(refusal(null, 'digest').message).toBe(`digest ${DIGEST_RULE} (got null)`);
    expect(refusal({ value: D }, 'content_sum').message).toBe(`content_sum ${DIGEST_RULE} (got an object)`);
  });

  it('a missing value is "required"; the field defaults to "digest"', () => {
    const err = refusal(undefined);
    expect(err.field).toBe('digest');
    expect(err.message).toBe('digest is required');
  });

  it('cuts a long value short in the message', () => {
    const err = refusal(`sha256:${'z'.repeat(500)}`, 'imageDigest');
    expect(err.message.length).toBeLessThan(200);
    expect(err.message).toContain('..."');
  });
});

describe('Digest.from / fromHex / test: the same rule, without throwing', () => {
  it('from: a Digest for a digest, undefined for anything else', () => {
    expect(Digest.from(D)?.value).toBe(D);
    expect(Digest.from(`sha256:${HEX.toUpperCase()}`)).toBeUndefined();
    expect(Digest.from(undefined)).toBeUndefined();
    expect(Digest.from(7)).toBeUndefined();
  });

  it('fromHex: a blob file name or an image_blob_ids key', () => {
    expect(Digest.fromHex(HEX)?.value).toBe(D);
    expect(Digest.fromHex('../x')).toBeUndefined();
    expect(Digest.fromHex(`${HEX}.qcow2`)).toBeUndefined();
    expect(Digest.fromHex(D)).toBeUndefined();
  });

  it('test', () => {
    expect(Digest.test(D)).toBe(true);
    expect(Digest.test(HEX)).toBe(false);
    expect(Digest.test(Digest.parse(D))).toBe(false);
  });
});

describe('a Digest value', () => {
  it('is immutable', () => {
    const d = Digest.parse(D);
    expect(Object.isFrozen(d)).toBe(true);
    expect(() => Object.assign(d, { hex: 'x' })).toThrow(TypeError);
    expect(d.hex).toBe(HEX);
  });

  it('equals compares values, not objects', () => {
    const other = `sha256:${'f'.repeat(64)}`;
    expect(Digest.parse(D).equals(Digest.parse(D))).toBe(true);
    expect(Digest.parse(D).equals(Digest.parse(other))).toBe(false);
    expect(Digest.parse(D).equals(undefined)).toBe(false);
  });

  it('is the plain string in JSON and in text, and round-trips', () => {
    const d = Digest.parse(D);
    expect(JSON.stringify({ imageDigest: d })).toBe(`{"imageDigest":"${D}"}`);
    expect(`${d}`).toBe(D);
    expect(String(d)).toBe(D);
    const back = Digest.parse(JSON.parse(JSON.stringify(d)));
    expect(back.equals(d)).toBe(true);
  });
});

describe('Digest.schema: the digest field of the zod contracts', () => {
  it('parses a job payload into a Digest, and serialises back to the same JSON', () => {
    const wire = { image: 'https://e.example/a.img', imageType: 'cloudimg', imageDigest: D };
    const payload = parsePayload(EnsureImagePayload, wire, 'ensure-image');
    expect(payload.imageDigest).toBeInstanceOf(Digest);
    expect(payload.imageDigest?.hex).toBe(HEX);
    expect(JSON.parse(JSON.stringify(payload))).toEqual(wire);
  });

  it('accepts a Digest as input, so a parsed payload can be submitted again as it is', () => {
    const payload = parsePayload(EnsureImagePayload, { image: 'https://e.example/a.img', imageDigest: D }, 'ensure-image');
    const again = parsePayload(EnsureImagePayload, payload, 'ensure-image');
    expect(again.imageDigest?.equals(payload.imageDigest)).toBe(true);
  });

  it('a bad payload digest names the field and the rule', () => {
    expect(() => parsePayload(EnsureImagePayload, { image: 'https://e.example/a.img', imageDigest: 'sha256:nope' }, 'ensure-image')).toThrow(
      `invalid ensure-image payload: imageDigest ${DIGEST_RULE} (got "sha256:nope")`,
    );
  });

  it('a job result read back from Redis gives a Digest', () => {
    const r = EnsureImageResult.parse({ outcome: 'present', digest: D, path: '/x', size: 1, bytesDownloaded: 0, durationMs: 0 });
    expect(r.digest).toBeInstanceOf(Digest);
    expect(r.digest.value).toBe(D);
  });

  it("images.json: cocoon's content_sum is read as a Digest and written back byte for byte", () => {
    const text = JSON.stringify({ images: { 'https://e.example/a.img': { ref: 'https://e.example/a.img', content_sum: D, size: 3, created_at: 'now', extra: 1 } } });
    const index = ImageIndex.parse(JSON.parse(text));
    expect(index.images['https://e.example/a.img']?.content_sum).toBeInstanceOf(Digest);
    expect(JSON.stringify(index)).toBe(text);
    expect(ImageIndex.safeParse({ images: { u: { ref: 'u', content_sum: HEX, size: 3, created_at: 'now' } } }).success).toBe(false);
  });

  it('shows the digest pattern in JSON Schema (input side), as docs/job-schema publishes', () => {
    expect(z.toJSONSchema(Digest.schema, { io: 'input' })).toMatchObject({ type: 'string', pattern: '^sha256:[0-9a-f]{64}$' });
  });
});
