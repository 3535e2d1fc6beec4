/** queues/resubmit.ts: the one place a job's payload is checked and its options are built. Pure. */
import { Digest } from '../../../src/lib/digest.js';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/lib/errors.js';
import { ensureImageDedupId } from '../../../src/queues/names.js';
import { jobSubmission, validatePayload } from '../../../src/queues/resubmit.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const retry = { attempts: 7, backoffMs: 1234 };

describe('jobSubmission', () => {
  it('an ensure-image job: parsed payload, the host\'s dedup id, the retry options given', () => {
    const s = jobSubmission('ensure-image', { image: 'https://images.example/a.qcow2#frag', imageDigest: DIGEST }, { host: 'h1', jobId: 'j1', priority: 5, ...retry });
    expect(JSON.parse(JSON.stringify(s.data))).toEqual({ image: 'https://images.example/a.qcow2', imageType: 'cloudimg', imageDigest: DIGEST });
    expect(s.opts).toMatchObject({
      jobId: 'j1',
      priority: 5,
      attempts: 7,
      backoff: { type: 'exponential', delay: 1234, jitter: 0.3 },
      deduplication: { id: ensureImageDedupId('h1', 'https://images.example/a.qcow2', Digest.parse(DIGEST), undefined) },
    });
    // Another host, another dedup id: a pull collapses only with one for the same host.
    const other = jobSubmission('ensure-image', s.data, { host: 'h2', ...retry });
    expect(other.opts.deduplication!.id).not.toBe(s.opts.deduplication!.id);
    expect(other.opts.jobId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a restore job: no dedup id (BullMQ refuses one with a parent; restores are never collapsed)', () => {
    const s = jobSubmission('restore', { kind: 'clone', snapshot: 'golden', name: 'vm-1' }, { host: 'h1', ...retry });
    expect(s.data).toMatchObject({ kind: 'clone', snapshot: 'golden', name: 'vm-1' });
    expect(s.opts.deduplication).toBeUndefined();
    expect(s.opts.attempts).toBe(7);
  });

  it('a bad payload is an InvalidInputError naming the field and the value', () => {
    let err: unknown;
    try {
      jobSubmission('ensure-image', { image: 'https://images.example/a.qcow2', imageDigest: 'sha256:XYZ' }, { host: 'h1', ...retry });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe('imageDigest');
    expect((err as Error).message).toBe('invalid ensure-image payload: imageDigest must be "sha256:" followed by 64 lowercase hex characters (got "sha256:XYZ")');
  });

  it('an unknown job name is refused', () => {
    expect(() => validatePayload('reboot', {})).toThrow(/^unknown job name "reboot": must be ensure-image or restore$/);
    expect(() => validatePayload('toString', {})).toThrow(InvalidInputError);
  });
});
