import { describe, expect, it } from 'vitest';
import { sniff } from '../../../src/store/sniff.js';
import { qcow2Image } from '../../helpers/images.js';

const bytes = (...b: number[]) => Buffer.from([...b, ...new Array(32).fill(0)]);

describe('sniff', () => {
  it('accepts a qcow2 v3 image made by qemu-img as-is', () => {
    const s = sniff(qcow2Image(16).body.subarray(0, 512));
    expect(s).toEqual({ kind: 'qcow2', version: 3, hasBackingFile: false, needsConversion: false });
  });

  it('wants an old qcow2 v2 converted', () => {
    const head = Buffer.alloc(64);
    head.writeUInt32BE(0x514649fb, 0);
    head.writeUInt32BE(2, 4);
    expect(sniff(head)).toMatchObject({ kind: 'qcow2', version: 2, needsConversion: true });
  });

  it('treats anything else as raw (converted)', () => {
    expect(sniff(Buffer.alloc(512, 7))).toEqual({ kind: 'raw', needsConversion: true });
  });

  it.each([
    ['HTML', Buffer.from('  <!DOCTYPE html><html>'), /HTML/],
    ['XML', Buffer.from('<?xml version="1.0"?><Error/>'), /HTML\/XML/],
    ['gzip', bytes(0x1f, 0x8b, 8), /gzip/],
    ['xz', bytes(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0), /xz/],
    ['zstd', bytes(0x28, 0xb5, 0x2f, 0xfd), /zstd/],
    ['zip', bytes(0x50, 0x4b, 3, 4), /zip/],
    ['bzip2', bytes(0x42, 0x5a, 0x68, 0x39), /bzip2/],
    ['tiny', Buffer.from('ab'), /only 2 bytes/],
  ])('rejects %s', (_n, head, reason) => {
    const s = sniff(head);
    expect(s.kind).toBe('rejected');
    expect(s.kind === 'rejected' && s.reason).toMatch(reason);
  });
});
