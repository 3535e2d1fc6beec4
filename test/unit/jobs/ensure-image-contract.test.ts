import { describe, expect, it } from 'vitest';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { EnsureImagePayload } from '../../../src/jobs/contracts/ensure-image.js';
import { Digest } from '../../../src/lib/digest.js';
import { InvalidInputError } from '../../../src/lib/errors.js';

const D = `sha256:${'0123456789abcdef'.repeat(4)}`;
const parse = (data: unknown) => parsePayload(EnsureImagePayload, data, 'ensure-image');

function rejection(data: unknown): InvalidInputError {
  try {
    parse(data);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return err as InvalidInputError;
  }
  throw new Error('payload was accepted');
}

describe('ensure-image payload', () => {
  it('accepts an https URL with a pinned digest and defaults imageType', () => {
    expect(parse({ image: 'https://epoch.example/dl/win11', imageDigest: D })).toEqual({
      image: 'https://epoch.example/dl/win11',
      imageDigest: Digest.parse(D),
      imageType: 'cloudimg',
    });
  });

  it('stores the canonical URL, without fragment', () => {
    expect(parse({ image: 'HTTPS://Epoch.Example:443/dl/./win11#x' }).image).toBe('https://epoch.example/dl/win11');
  });

  it.each([
    ['credentials', { image: 'https://u:p@x/a' }, 'image', /must not carry credentials.*FLEETQ_IMAGE_AUTH_FILE/],
    ['scheme:user@host', { image: 'http:u:p@x/a' }, 'image', /must not carry credentials/],
    ['leading blank', { image: ' http://x/a' }, 'image', /whitespace/],
    ['backslash', { image: 'http://x\\a' }, 'image', /"\\"/],
    ['wrong scheme', { image: 'ftp://x/a' }, 'image', /unsupported protocol scheme "ftp"/],
    ['file://', { image: 'file:///etc/passwd' }, 'image', /unsupported protocol scheme "file"/],
    ['OCI ref on cloudimg', { image: 'simular/win10:22h2' }, 'image', /absolute http/],
    ['missing image', {}, 'image', /is required/],
    ['malformed digest', { image: 'http://x/a', imageDigest: 'sha256:abc' }, 'imageDigest', /64 lowercase hex/],
    ['uppercase digest', { image: 'http://x/a', imageDigest: D.toUpperCase() }, 'imageDigest', /64 lowercase hex/],
    ['../ in digest', { image: 'http://x/a', imageDigest: `sha256:../../${'a'.repeat(58)}` }, 'imageDigest', /64 lowercase hex/],
    ['md5 digest', { image: 'http://x/a', imageDigest: `md5:${'a'.repeat(32)}` }, 'imageDigest', /sha256/],
    ['oci imageType', { image: 'http://x/a', imageType: 'oci' }, 'imageType', /cloudimg/],
    ['force not boolean', { image: 'http://x/a', force: 'yes' }, 'force', /true or false/],
    ['unknown field', { image: 'http://x/a', imgae: 'x' }, 'imgae', /not a known field/],
  ])('rejects %s naming the field', (_name, data, field, message) => {
    const err = rejection(data);
    expect(err.field).toBe(field);
    expect(err.message).toContain(field);
    expect(err.message).toMatch(message);
    expect(err.permanent).toBe(true);
  });

  it('never echoes URL credentials in the error', () => {
    for (const image of ['ftp://user:hunter2@x/a?token=s3cret', 'http:user:hunter2@x/a?token=s3cret', ' http://user:hunter2@x/a#token=s3cret']) {
      const err = rejection({ image });
      expect(err.message).not.toContain('hunter2');
      expect(err.message).not.toContain('s3cret');
    }
  });
});
