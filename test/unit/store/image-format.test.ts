/**
 * inspectImageHead / parseQcow2Header on headers made by the real qemu-img
 * (and synthetic variants of them): only raw and clean qcow2 v2/v3 pass; a
 * body that names another file (backing file, external data file, VMDK
 * extent) or needs a key is rejected before qemu-img ever sees it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HEAD_BYTES, type ImageFormat, inspectImageHead, parseQcow2Header } from '../../../src/store/image-format.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetq-imgfmt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
/** Run `qemu-img create <args> <file> 1M` and return the file's head and length. */
function created(args: string[], size = '1M'): { head: Buffer; total: number; file: string } {
  const file = join(dir, `img-${++seq}`);
  execFileSync('qemu-img', ['create', '-q', ...args, file, size], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { ...headOf(file), file };
}

/**
 * LUKS key setup benchmarks PBKDF2 and, on a busy machine, sometimes fails
 * with "Unable to get accurate CPU usage": try a few times.
 */
function createLuksLike(args: string[], file: string): boolean {
  for (let i = 0; i < 4; i++) {
    if (spawnSync('qemu-img', ['create', '-q', ...args, file, '1M']).status === 0) return true;
  }
  return false;
}

function headOf(file: string): { head: Buffer; total: number } {
  const body = readFileSync(file);
  return { head: body.subarray(0, Math.min(HEAD_BYTES, body.length)), total: body.length };
}

/** Inspect a whole in-memory body as the downloader would. */
const inspect = (body: Buffer): ImageFormat => inspectImageHead(body.subarray(0, HEAD_BYTES), body.length);

function reason(f: ImageFormat): string {
  expect(f.kind).toBe('rejected');
  return f.kind === 'rejected' ? f.reason : '';
}

/** A clean v3 header from qemu-img, then patched. */
function patchedV3(patch: (h: Buffer) => void): Buffer {
  const head = Buffer.from(created(['-f', 'qcow2']).head);
  patch(head);
  return head;
}

describe('qcow2 made by qemu-img', () => {
  it('accepts a clean v3 as-is and parses its header', () => {
    const { head, total } = created(['-f', 'qcow2', '-o', 'compat=1.1']);
    expect(inspectImageHead(head, total)).toEqual({ kind: 'qcow2', version: 3, needsConversion: false });
    expect(parseQcow2Header(head)).toEqual({
      version: 3,
      backingFileOffset: 0n,
      backingFileSize: 0,
      clusterBits: 16,
      size: 1024n * 1024n,
      cryptMethod: 0,
      incompatibleFeatures: 0n,
      compatibleFeatures: 0n,
      autoclearFeatures: 0n,
      headerLength: 112,
    });
  });

  it('accepts a v2 (compat=0.10) and wants it converted', () => {
    const { head, total } = created(['-f', 'qcow2', '-o', 'compat=0.10']);
    expect(inspectImageHead(head, total)).toEqual({ kind: 'qcow2', version: 2, needsConversion: true });
    expect(parseQcow2Header(head)).toMatchObject({ version: 2, headerLength: 72, incompatibleFeatures: 0n });
  });

  it('rejects a backing file, naming it, offset and length', () => {
    const backing = join(dir, 'some-host-file');
    const { head, total } = created(['-f', 'qcow2', '-b', backing, '-F', 'raw', '-u']);
    const h = parseQcow2Header(head)!;
    expect(h.backingFileOffset).not.toBe(0n);
    expect(h.backingFileSize).toBe(backing.length);
    expect(reason(inspectImageHead(head, total))).toBe(
      `qcow2 has a backing file ${JSON.stringify(backing)} (offset 0x${h.backingFileOffset.toString(16)}, ${backing.length} bytes) — a body may not reference other files`,
    );
  });

  it('rejects a v2 with a backing file too', () => {
    const { head, total } = created(['-f', 'qcow2', '-o', 'compat=0.10', '-b', '/etc/hostname', '-F', 'raw', '-u']);
    expect(reason(inspectImageHead(head, total))).toMatch(/^qcow2 has a backing file "\/etc\/hostname" \(offset 0x[0-9a-f]+, 13 bytes\)/);
  });

  it('rejects an external data file (incompatible bit 2)', () => {
    const { head, total } = created(['-f', 'qcow2', '-o', `data_file=${join(dir, 'data-file.bin')}`]);
    expect(parseQcow2Header(head)!.incompatibleFeatures & 4n).toBe(4n);
    expect(reason(inspectImageHead(head, total))).toMatch(/external data file/);
  });

  it('rejects data_file_raw=on', () => {
    const { head, total } = created(['-f', 'qcow2', '-o', `data_file=${join(dir, 'data-file-raw.bin')},data_file_raw=on`]);
    expect(parseQcow2Header(head)!.autoclearFeatures & 2n).toBe(2n);
    expect(reason(inspectImageHead(head, total))).toMatch(/external data file/);
  });

  it('rejects LUKS encryption inside qcow2', (ctx) => {
    const file = join(dir, 'enc.qcow2');
    if (!createLuksLike(['--object', 'secret,id=sec0,data=hunter2', '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10'], file)) ctx.skip();
    const { head, total } = headOf(file);
    expect(parseQcow2Header(head)!.cryptMethod).toBe(2);
    expect(reason(inspectImageHead(head, total))).toMatch(/qcow2 is encrypted \(LUKS\)/);
  });
});

describe('qcow2 synthetic headers', () => {
  it('rejects AES encryption', () => {
    expect(reason(inspect(patchedV3((h) => h.writeUInt32BE(1, 32))))).toMatch(/encrypted \(AES\)/);
  });

  it('rejects raw external data (autoclear bit 1) even without incompatible bit 2', () => {
    expect(reason(inspect(patchedV3((h) => h.writeBigUInt64BE(2n, 88))))).toMatch(/autoclear bit 1.*external data file/);
  });

  it('rejects the corrupt bit', () => {
    expect(reason(inspect(patchedV3((h) => h.writeBigUInt64BE(2n, 72))))).toMatch(/marked corrupt/);
  });

  it.each([
    [1n << 5n, '0x20'],
    [1n << 63n, '0x8000000000000000'],
    [(1n << 7n) | 1n, '0x80'],
  ])('rejects unknown incompatible features %s', (bits, shown) => {
    expect(reason(inspect(patchedV3((h) => h.writeBigUInt64BE(bits, 72))))).toBe(`qcow2 has unknown incompatible features ${shown}`);
  });

  it.each([
    ['dirty', 1n],
    ['compression type', 8n],
    ['extended L2', 16n],
    ['all three', 25n],
  ])('accepts the %s bit, converting to a clean v3', (_n, bits) => {
    expect(inspect(patchedV3((h) => h.writeBigUInt64BE(bits, 72)))).toEqual({ kind: 'qcow2', version: 3, needsConversion: true });
  });

  it('accepts unknown compatible and autoclear bits', () => {
    const head = patchedV3((h) => {
      h.writeBigUInt64BE(0xffn, 80);
      h.writeBigUInt64BE(1n | (1n << 40n), 88);
    });
    expect(inspect(head)).toEqual({ kind: 'qcow2', version: 3, needsConversion: false });
  });

  it.each([
    [0, /qcow2 version 0 is not supported/],
    [1, /qcow \(version 1\)/],
    [4, /qcow2 version 4 is not supported/],
    [0xffffffff, /qcow2 version 4294967295 is not supported/],
  ])('rejects version %s', (version, re) => {
    expect(reason(inspect(patchedV3((h) => h.writeUInt32BE(version, 4))))).toMatch(re);
  });

  it.each([0, 8, 22, 64])('rejects cluster_bits %s', (bits) => {
    expect(reason(inspect(patchedV3((h) => h.writeUInt32BE(bits, 20))))).toMatch(new RegExp(`cluster_bits ${bits} is out of range \\(9\\.\\.21\\)`));
  });

  it.each([9, 21])('accepts cluster_bits %s', (bits) => {
    expect(inspect(patchedV3((h) => h.writeUInt32BE(bits, 20)))).toMatchObject({ kind: 'qcow2' });
  });

  it('rejects a v3 header_length below 104, not a multiple of 8, or beyond the cluster', () => {
    expect(reason(inspect(patchedV3((h) => h.writeUInt32BE(72, 100))))).toMatch(/header_length 72 is below 104/);
    expect(reason(inspect(patchedV3((h) => h.writeUInt32BE(108, 100))))).toMatch(/not a multiple of 8/);
    expect(reason(inspect(patchedV3((h) => (h.writeUInt32BE(9, 20), h.writeUInt32BE(1024, 100)))))).toMatch(/exceeds the cluster size/);
  });

  it('rejects headers too short for their version', () => {
    const v3 = patchedV3(() => {});
    expect(reason(inspectImageHead(v3.subarray(0, 100), 100))).toBe('qcow2 v3 header is truncated (100 of 104 bytes)');
    const v2 = Buffer.from(v3);
    v2.writeUInt32BE(2, 4);
    expect(reason(inspectImageHead(v2.subarray(0, 71), 71))).toBe('qcow2 v2 header is truncated (71 of 72 bytes)');
    expect(inspectImageHead(v2.subarray(0, 72), 72)).toEqual({ kind: 'qcow2', version: 2, needsConversion: true });
    expect(reason(inspectImageHead(v3.subarray(0, 6), 6))).toMatch(/truncated \(6 bytes\)/);
    expect(parseQcow2Header(v3.subarray(0, 100))).toBeUndefined();
  });

  it('parseQcow2Header: undefined without the magic', () => {
    expect(parseQcow2Header(Buffer.alloc(512))).toBeUndefined();
    expect(parseQcow2Header(Buffer.from('QFI'))).toBeUndefined();
  });
});

describe('other disk formats are rejected by name', () => {
  it.each([
    ['vmdk', [], 'VMDK'],
    ['vdi', [], 'VDI'],
    ['vhdx', [], 'VHDX'],
    ['vpc', [], 'VPC/VHD'],
    ['qed', [], 'QED'],
    ['parallels', [], 'Parallels'],
  ])('%s made by qemu-img', (fmt, opts: string[], name) => {
    const { head, total } = created(['-f', fmt, ...opts]);
    expect(reason(inspectImageHead(head, total))).toBe(`body is a ${name} image; only raw and qcow2 are accepted`);
  });

  it('LUKS made by qemu-img', (ctx) => {
    const file = join(dir, 'plain.luks');
    if (!createLuksLike(['--object', 'secret,id=s0,data=abc', '-f', 'luks', '-o', 'key-secret=s0,iter-time=10'], file)) ctx.skip();
    const { head, total } = headOf(file);
    expect(reason(inspectImageHead(head, total))).toBe('body is a LUKS image; only raw and qcow2 are accepted');
  });

  it('the VMDK text descriptor qemu-img writes for monolithicFlat', () => {
    const { head, total } = created(['-f', 'vmdk', '-o', 'subformat=monolithicFlat']);
    expect(head.toString('latin1')).toContain('FLAT "');
    expect(reason(inspectImageHead(head, total))).toBe('body is a VMDK image (text descriptor); only raw and qcow2 are accepted');
  });

  it('a hand-written VMDK descriptor naming /etc/hostname as its extent', () => {
    const desc = Buffer.from(
      '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 8 FLAT "/etc/hostname" 0\n',
    );
    expect(reason(inspect(desc))).toMatch(/^body is a VMDK image \(text descriptor\)/);
    // qemu's own probe needs no "# Disk DescriptorFile" line: comments, blanks, then version=N.
    expect(reason(inspect(Buffer.from('# anything\n   \r\nversion=2\r\nRW 8 FLAT "/etc/hostname" 0\n')))).toMatch(/VMDK/);
  });

  it.each([
    ['bochs', Buffer.concat([Buffer.from('Bochs Virtual HD Image\0'), Buffer.alloc(600)]), 'bochs'],
    ['cloop', Buffer.from('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n'), 'cloop'],
    ['Parallels (old)', Buffer.concat([Buffer.from('WithoutFreeSpace'), Buffer.alloc(100)]), 'Parallels'],
    ['COWD', Buffer.concat([Buffer.from('COWD'), Buffer.alloc(100)]), 'VMDK'],
    ['LUKS', Buffer.concat([Buffer.from('LUKS\xba\xbe\x00\x01', 'latin1'), Buffer.alloc(600)]), 'LUKS'],
  ])('%s (synthetic)', (_n, body, name) => {
    expect(reason(inspect(body))).toBe(`body is a ${name} image; only raw and qcow2 are accepted`);
  });
});

describe('what the old sniff rejected', () => {
  const bytes = (...b: number[]) => Buffer.from([...b, ...new Array(32).fill(0)]);
  it.each([
    ['HTML', Buffer.from('  <!DOCTYPE html><html>'), /HTML/],
    ['HTML after a UTF-8 BOM', Buffer.from('\uFEFF<html><body>'), /HTML/],
    ['XML', Buffer.from('<?xml version="1.0"?><Error/>'), /HTML\/XML/],
    ['gzip', bytes(0x1f, 0x8b, 8), /gzip-compressed/],
    ['xz', bytes(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0), /xz/],
    ['zstd', bytes(0x28, 0xb5, 0x2f, 0xfd), /zstd/],
    ['zip', bytes(0x50, 0x4b, 3, 4), /zip/],
    ['bzip2', bytes(0x42, 0x5a, 0x68, 0x39), /bzip2/],
    ['7z', bytes(0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c), /7z/],
    ['tiny', Buffer.from('ab'), /only 2 bytes/],
    ['empty', Buffer.alloc(0), /only 0 bytes/],
    ['one byte', Buffer.from([0]), /only 1 byte \(/],
  ])('%s', (_n, body, re) => {
    expect(reason(inspect(body))).toMatch(re);
  });

  it('a real gzip stream', () => {
    const file = join(dir, 'gz');
    writeFileSync(file, randomBytes(1000));
    execFileSync('gzip', ['-f', file]);
    expect(reason(inspect(readFileSync(`${file}.gz`)))).toMatch(/^body is gzip-compressed/);
  });
});

describe('text bodies', () => {
  it('an error message padded to 1 KiB, quoting its first line', () => {
    let body = 'Error: access denied for user bob\nrequest id: 1234\n';
    while (body.length < 1024) body += 'please contact your administrator.\n';
    expect(reason(inspect(Buffer.from(body)))).toBe('body is text, not a disk image: "Error: access denied for user bob"');
  });

  it('a shell script', () => {
    const script = Buffer.from('#!/bin/sh\nset -eu\ncurl -fsSL https://example.invalid/install | sh\n');
    expect(reason(inspect(script))).toBe('body is text, not a disk image: "#!/bin/sh"');
  });

  it('skips leading blank lines, keeps UTF-8, cuts at 80 characters and escapes quotes', () => {
    const line = `Fehler: „Zugriff verweigert" – ${'ü'.repeat(100)}`;
    const r = reason(inspect(Buffer.from(`\r\n  \n${line}\r\nmore\n`)));
    expect(r).toBe(`body is text, not a disk image: ${JSON.stringify(Array.from(line).slice(0, 80).join(''))}…`);
  });

  it('a 4 KiB head of a longer text body, cut inside a UTF-8 sequence', () => {
    const body = Buffer.from(`Not Found!\n${'€'.repeat(3000)}`);
    const head = body.subarray(0, HEAD_BYTES);
    expect(() => new TextDecoder('utf-8', { fatal: true }).decode(head)).toThrow(); // really cut mid-sequence
    expect(reason(inspectImageHead(head, body.length))).toBe('body is text, not a disk image: "Not Found!"');
  });

  it('only whitespace', () => {
    expect(reason(inspect(Buffer.from(' \n\n\t\r\n    ')))).toBe('body is blank text, not a disk image');
  });

  it('is not fooled by binary: a NUL, a control byte or invalid UTF-8 makes it raw', () => {
    const text = Buffer.from('Error: access denied for user bob\n'.repeat(150));
    for (const [at, byte] of [
      [4000, 0x00],
      [500, 0x1b],
      [10, 0x7f],
      [20, 0xff],
      [30, 0xc0],
    ] as const) {
      const b = Buffer.from(text);
      b[at] = byte;
      expect(inspect(b), `byte ${byte} at ${at}`).toEqual({ kind: 'raw', needsConversion: true });
    }
    // A truncated multibyte sequence at the very end of the WHOLE body is invalid.
    expect(inspect(Buffer.concat([Buffer.from('hello'), Buffer.from([0xe2, 0x82])]))).toEqual({ kind: 'raw', needsConversion: true });
  });
});

describe('raw disks', () => {
  it('random bytes', () => {
    expect(inspect(randomBytes(64 * 1024))).toEqual({ kind: 'raw', needsConversion: true });
  });

  it('an MBR: boot code, partition table and the 0x55AA signature', () => {
    const mbr = Buffer.alloc(1024 * 1024);
    Buffer.from('\xfa\x31\xc0\x8e\xd8\x8e\xd0\xbc\x00\x7c', 'latin1').copy(mbr, 0);
    mbr[446] = 0x80; // bootable partition entry
    mbr[450] = 0x83;
    mbr.writeUInt32LE(2048, 454);
    mbr.writeUInt32LE(4096, 458);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    expect(inspect(mbr)).toEqual({ kind: 'raw', needsConversion: true });
  });

  it('all zeros (a blank disk)', () => {
    expect(inspect(Buffer.alloc(8192))).toEqual({ kind: 'raw', needsConversion: true });
  });

  it('a raw disk from qemu-img create -f raw', () => {
    const { file } = created(['-f', 'raw']);
    expect(statSync(file).size).toBe(1024 * 1024);
    expect(inspect(readFileSync(file))).toEqual({ kind: 'raw', needsConversion: true });
  });
});
