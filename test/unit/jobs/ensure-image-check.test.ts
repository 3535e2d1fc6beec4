import { describe, expect, it } from 'vitest';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { EnsureImagePayload } from '../../../src/jobs/contracts/ensure-image.js';
import { fastEnsureImagePayload, parseEnsureImagePayload } from '../../../src/jobs/contracts/ensure-image-check.js';
import { InvalidInputError } from '../../../src/lib/errors.js';
import { Digest } from '../../../src/lib/digest.js';

const D = `sha256:${'0123456789abcdef'.repeat(4)}`;
const zod = (data: unknown) => parsePayload(EnsureImagePayload, data, 'ensure-image');

function outcome(f: () => unknown): { ok: unknown } | { err: string; field: string | undefined; permanent: boolean } {
  try {
    return { ok: f() };
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    const e = err as InvalidInputError;
    return { err: e.message, field: e.field, permanent: e.permanent };
  }
}

const inherited = Object.assign(Object.create({ extra: 1 }) as object, { image: 'http://x.example/inh' });

const CASES: Array<[string, unknown]> = [
  ['canonical URL', { image: 'http://x.example/a' }],
  ['canonical URL, pinned', { image: 'http://x.example/a', imageDigest: D }],
  ['all fields', { image: 'https://x.example/b?sig=1', imageType: 'cloudimg', imageDigest: D, force: true }],
  ['fields given as undefined', { image: 'http://x.example/a', imageDigest: undefined, force: undefined, imageType: undefined }],
  ['force false', { image: 'http://x.example/a', force: false }],
  ['non-canonical spelling', { image: 'HTTP://X.example:80/./a#frag' }],
  ['trailing-slash host', { image: 'http://x.example' }],
  ['bad digest after a good URL', { image: 'http://x.example/a', imageDigest: 'sha256:abc' }],
  ['uppercase digest', { image: 'http://x.example/a', imageDigest: D.toUpperCase() }],
  ['digest not a string', { image: 'http://x.example/a', imageDigest: 7 }],
  ['oci imageType', { image: 'http://x.example/a', imageType: 'oci' }],
  ['force a string', { image: 'http://x.example/a', force: 'yes' }],
  ['unknown field', { image: 'http://x.example/a', imgae: 'x' }],
  ['image missing', { imageDigest: D }],
  ['image not a string', { image: 42 }],
  ['credentials', { image: 'https://u:p@x.example/a' }],
  ['null', null],
  ['array', [{ image: 'http://x.example/a' }]],
  ['string', 'http://x.example/a'],
  ['inherited extra field', inherited],
];

describe('parseEnsureImagePayload (the worker check without zod on the hot path)', () => {
  it.each(CASES)('%s: same result or same error as zod, first and second time', (_name, data) => {
    const expected = outcome(() => zod(data));
    // The first call may teach the check a URL; the second may take the fast path: both must equal zod.
    expect(outcome(() => parseEnsureImagePayload(data))).toStrictEqual(expected);
    expect(outcome(() => parseEnsureImagePayload(data))).toStrictEqual(expected);
  });

  it('takes the fast path only for a URL zod accepted as canonical, with well-formed fields', () => {
    const url = 'http://fast.example/img.qcow2';
    expect(fastEnsureImagePayload({ image: url, imageDigest: D })).toBeUndefined(); // never seen: zod decides
    parseEnsureImagePayload({ image: url });
    expect(fastEnsureImagePayload({ image: url, imageDigest: D })).toStrictEqual({ image: url, imageType: 'cloudimg', imageDigest: Digest.parse(D) });
    expect(fastEnsureImagePayload({ image: url, imageDigest: `${D}0` })).toBeUndefined();
    expect(fastEnsureImagePayload({ image: url, force: 1 })).toBeUndefined();
    expect(fastEnsureImagePayload({ image: url, other: 1 })).toBeUndefined();
    // A spelling zod rewrites is never learnt (zod gives the canonical form every time), nor is its canonical form until seen.
    expect(parseEnsureImagePayload({ image: 'HTTP://Fast.example/img2' }).image).toBe('http://fast.example/img2');
    expect(fastEnsureImagePayload({ image: 'HTTP://Fast.example/img2' })).toBeUndefined();
    expect(fastEnsureImagePayload({ image: 'http://fast.example/img2' })).toBeUndefined();
  });

  it('a bad field still fails with the InvalidInputError naming it once the URL is known', () => {
    parseEnsureImagePayload({ image: 'http://known.example/a' });
    const r = outcome(() => parseEnsureImagePayload({ image: 'http://known.example/a', imageDigest: 'sha256:../x' }));
    expect(r).toMatchObject({ field: 'imageDigest', permanent: true });
    expect((r as { err: string }).err).toMatch(/invalid ensure-image payload: imageDigest .*64 lowercase hex/);
  });
});
