/**
 * qemu-img must never open a file the body names. With the real qemu-img and
 * a secret host file holding a unique marker:
 *  (a) a VMDK descriptor naming the secret as its extent is converted as raw
 *      text (`-f raw`), not followed: the marker is not in the output;
 *  (b) verifyFinalQcow2 refuses backing files, data files, corruption, and
 *      accepts what qemu-img makes;
 *  (c) nothing else is opened: backing file / data file / extent point at a
 *      FIFO, which blocks whoever opens it — every call returns promptly (and,
 *      where strace exists, the traced opens never touch the secret or FIFO);
 *  (d) a qcow2 v2 converts to compat 1.1 with its contents intact.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertToQcow2, qemuSourceSpec, verifyFinalQcow2 } from '../../src/store/convert.js';
import { HEAD_BYTES, inspectImageHead } from '../../src/store/image-format.js';
import { BodyRejectedError, ConversionError } from '../../src/store/store-errors.js';

const QEMU_IMG = 'qemu-img';
/** Any call that opened a FIFO would hang; this is "promptly". */
const PROMPT_MS = 5_000;

let dir: string;
let secret: string;
let marker: Buffer;
const fifos: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetq-qemu-rules-'));
  marker = Buffer.from(`FLEETQ-SECRET-${randomBytes(16).toString('hex')}`);
  // 64 KiB: random bytes with the marker spread through it.
  const chunks: Buffer[] = [];
  for (let i = 0; i < 16; i++) chunks.push(marker, randomBytes(4096 - marker.length));
  secret = join(dir, 'host-secret.bin');
  writeFileSync(secret, Buffer.concat(chunks));
  chmodSync(secret, 0o600);
});

afterAll(() => {
  // Release any qemu-img still blocked on a FIFO (only if a test failed): a writer gives the reader EOF.
  for (const f of fifos) {
    try {
      closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      /* no reader: fine */
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
const tmp = (name: string) => join(dir, `${++seq}-${name}`);

function qemuImg(...args: string[]): string {
  return execFileSync(QEMU_IMG, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
}

function mkfifo(): string {
  const p = tmp('trap.fifo');
  execFileSync('mkfifo', [p]);
  fifos.push(p);
  return p;
}

function createQcow2(name: string, ...opts: string[]): string {
  const p = tmp(name);
  qemuImg('create', '-q', '-f', 'qcow2', ...opts, p, '1M');
  return p;
}

/** A qcow2 whose external data file is the given path (created as a regular file first, then optionally swapped). */
function qcow2WithDataFile(dataFile: string): string {
  const p = tmp('datafile.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${dataFile}`, p, '1M');
  return p;
}

function vmdkDescriptorNaming(extent: string, sectors: number): string {
  const p = tmp('descriptor.vmdk');
  writeFileSync(
    p,
    `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\nRW ${sectors} FLAT "${extent}" 0\n\nddb.virtualHWVersion = "4"\n`,
  );
  return p;
}

/** The guest-visible contents of a qcow2, read back with qemu-img. */
function rawContents(qcow2: string): Buffer {
  const out = tmp('readback.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', qcow2, out);
  return readFileSync(out);
}

function info(p: string): { format: string; 'format-specific': { data: { compat: string } }; 'backing-filename'?: string } {
  return JSON.parse(qemuImg('info', '-f', 'qcow2', '--output=json', qemuSourceSpec(p)));
}

/** Runs `fn` with an abort deadline; resolves with its outcome and how long it took. A hang shows up as a TimeoutError, not a stuck suite. */
async function timed(fn: (signal: AbortSignal) => Promise<void>): Promise<{ ms: number; error?: unknown }> {
  const t0 = Date.now();
  try {
    await fn(AbortSignal.timeout(PROMPT_MS));
    return { ms: Date.now() - t0 };
  } catch (error) {
    return { ms: Date.now() - t0, error };
  }
}

function expectRejected(error: unknown, re: RegExp): void {
  expect(error).toBeInstanceOf(BodyRejectedError);
  const e = error as BodyRejectedError;
  expect(e.code).toBe('E_BODY_REJECTED');
  expect(e.permanent).toBe(true);
  expect(e.message).toMatch(re);
}

describe('(a) a VMDK descriptor naming a host file, converted with -f raw', () => {
  it('is converted as its own text, never following the extent', async () => {
    const desc = vmdkDescriptorNaming(secret, 128);
    // The attack is real: letting qemu probe the format pulls the secret in.
    const probed = tmp('probed.qcow2');
    qemuImg('convert', '-O', 'qcow2', desc, probed);
    expect(rawContents(probed).includes(marker)).toBe(true);

    // Our inspection names it…
    const body = readFileSync(desc);
    expect(inspectImageHead(body.subarray(0, HEAD_BYTES), body.length)).toMatchObject({ kind: 'rejected', reason: expect.stringMatching(/VMDK/) });
    // …and even if a caller converted it anyway, `-f raw` converts the bytes, not the extent.
    const dst = tmp('converted.qcow2');
    await convertToQcow2(QEMU_IMG, desc, dst, 'raw');
    const contents = rawContents(dst);
    expect(contents.includes(marker)).toBe(false);
    expect(contents.subarray(0, body.length).equals(body)).toBe(true);
    expect(info(dst)['format-specific'].data.compat).toBe('1.1');
    await verifyFinalQcow2(QEMU_IMG, dst);
  });
});

describe('(b) verifyFinalQcow2', () => {
  it('accepts a clean v3 made by qemu-img, and the output of convertToQcow2', async () => {
    await verifyFinalQcow2(QEMU_IMG, createQcow2('clean.qcow2', '-o', 'compat=1.1'));
    const raw = tmp('disk.raw');
    writeFileSync(raw, randomBytes(512 * 1024));
    const dst = tmp('from-raw.qcow2');
    await convertToQcow2(QEMU_IMG, raw, dst, 'raw');
    await verifyFinalQcow2(QEMU_IMG, dst);
    expect(rawContents(dst).subarray(0, 512 * 1024).equals(readFileSync(raw))).toBe(true);
  });

  it('rejects a qcow2 with a backing file', async () => {
    const p = createQcow2('backed.qcow2', '-b', secret, '-F', 'raw');
    const { error } = await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s));
    expectRejected(error, /final qcow2: qcow2 has a backing file ".*host-secret\.bin" \(offset 0x[0-9a-f]+, \d+ bytes\)/);
  });

  it('rejects a qcow2 with an external data file (and with data_file_raw)', async () => {
    const { error } = await timed((s) => verifyFinalQcow2(QEMU_IMG, qcow2WithDataFile(tmp('data.bin')), s));
    expectRejected(error, /external data file/);
    const p = tmp('datafile-raw.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${tmp('data-raw.bin')},data_file_raw=on`, p, '1M');
    expectRejected((await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s))).error, /external data file/);
  });

  it('rejects a v2 (the final blob must be compat 1.1), a raw file, and a missing qemu-img cleanly', async () => {
    expectRejected((await timed((s) => verifyFinalQcow2(QEMU_IMG, createQcow2('old.qcow2', '-o', 'compat=0.10'), s))).error, /not a clean qcow2 v3 image \(version 2\)/);
    const raw = tmp('plain.raw');
    writeFileSync(raw, randomBytes(8192));
    expectRejected((await timed((s) => verifyFinalQcow2(QEMU_IMG, raw, s))).error, /not a qcow2 image/);
    const err = await verifyFinalQcow2('/nonexistent/qemu-img', createQcow2('c.qcow2')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConversionError);
    expect((err as Error).message).toMatch(/not found: install qemu-utils .* or point the worker at qemu-img$/);
    expect(err).toMatchObject({ settings: ['qemuImg'] });
  });

  /** A v3 with data, for refcount surgery: [path, refcount block offset, cluster size, file size]. */
  function imageWithData(): { p: string; refblock: number; clusterSize: number } {
    const raw = tmp('data.raw');
    writeFileSync(raw, randomBytes(256 * 1024));
    const p = tmp('data.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=1.1', raw, p);
    const body = readFileSync(p);
    const refTable = Number(body.readBigUInt64BE(48));
    return { p, refblock: Number(body.readBigUInt64BE(refTable)), clusterSize: 2 ** body.readUInt32BE(20) };
  }

  it('rejects corruption found by qemu-img check (exit 2)', async () => {
    const { p, refblock } = imageWithData();
    const body = readFileSync(p);
    body.writeUInt16BE(0, refblock); // the header cluster's refcount (refcount_order 4: 16-bit entries)
    writeFileSync(p, body);
    expectRejected((await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s))).error, /qemu-img check found [1-9]\d* corruption/);
  });

  it('accepts leaked clusters only (exit 3)', async () => {
    const { p, refblock, clusterSize } = imageWithData();
    const body = readFileSync(p);
    expect(body.length % clusterSize).toBe(0);
    const leaked = body.length / clusterSize;
    const grown = Buffer.concat([body, Buffer.alloc(clusterSize)]);
    grown.writeUInt16BE(1, refblock + 2 * leaked);
    writeFileSync(p, grown);
    expect(spawnSync(QEMU_IMG, ['check', '-f', 'qcow2', p]).status).toBe(3);
    await verifyFinalQcow2(QEMU_IMG, p);
  });

  it('rejects an image qemu-img cannot open (bad L1 table offset)', async () => {
    const p = createQcow2('bad-l1.qcow2');
    const body = readFileSync(p);
    body.writeBigUInt64BE(0x30001n, 40);
    writeFileSync(p, body);
    expectRejected((await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s))).error, /qemu-img info cannot open it: .*L1 table/);
    expectRejected((await timed((s) => convertToQcow2(QEMU_IMG, p, tmp('x.qcow2'), 'qcow2', s))).error, /cannot read the qcow2 body: .*L1 table/);
  });
});

describe('(c) no file the body names is ever opened (FIFO traps)', () => {
  it('the trap works: an unprotected qemu-img blocks on the FIFO', () => {
    const fifo = mkfifo();
    const backed = createQcow2('trap-control.qcow2', '-b', fifo, '-F', 'raw', '-u');
    const r = spawnSync(QEMU_IMG, ['check', '-f', 'qcow2', backed], { timeout: 1_500 });
    expect(r.error && (r.error as NodeJS.ErrnoException).code).toBe('ETIMEDOUT');
  });

  it('backing file → FIFO: verify and convert -f qcow2 refuse promptly; convert -f raw copies the bytes', async () => {
    const p = createQcow2('trap-backing.qcow2', '-b', mkfifo(), '-F', 'raw', '-u');
    const v = await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s));
    expect(v.ms).toBeLessThan(PROMPT_MS);
    expectRejected(v.error, /backing file/);
    const c = await timed((s) => convertToQcow2(QEMU_IMG, p, tmp('o.qcow2'), 'qcow2', s));
    expect(c.ms).toBeLessThan(PROMPT_MS);
    expectRejected(c.error, /qcow2 body: qcow2 has a backing file/);
    const dst = tmp('o-raw.qcow2');
    const r = await timed((s) => convertToQcow2(QEMU_IMG, p, dst, 'raw', s));
    expect(r.error).toBeUndefined();
    expect(rawContents(dst).subarray(0, 4).toString('latin1')).toBe('QFI\xfb');
  });

  it('backing file → FIFO: the json:{"backing":null} source spec keeps qemu-img itself from opening it', () => {
    const p = createQcow2('trap-backing2.qcow2', '-b', mkfifo(), '-F', 'raw', '-u');
    for (const args of [
      ['check', '-f', 'qcow2', qemuSourceSpec(p)],
      ['info', '-f', 'qcow2', qemuSourceSpec(p)],
      ['convert', '-f', 'qcow2', '-O', 'qcow2', qemuSourceSpec(p), tmp('o.qcow2')],
    ]) {
      const r = spawnSync(QEMU_IMG, args, { timeout: PROMPT_MS, encoding: 'utf8' });
      expect(r.error, args.join(' ')).toBeUndefined();
      expect(r.status, `${args[0]}: ${r.stderr}`).toBe(0);
    }
  });

  it('external data file → FIFO: verify and convert -f qcow2 refuse promptly', async () => {
    const dataFile = join(dir, 'will-be-fifo.bin');
    const p = qcow2WithDataFile(dataFile);
    rmSync(dataFile);
    execFileSync('mkfifo', [dataFile]);
    fifos.push(dataFile);
    const v = await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s));
    expect(v.ms).toBeLessThan(PROMPT_MS);
    expectRejected(v.error, /external data file/);
    const c = await timed((s) => convertToQcow2(QEMU_IMG, p, tmp('o.qcow2'), 'qcow2', s));
    expect(c.ms).toBeLessThan(PROMPT_MS);
    expectRejected(c.error, /external data file/);
  });

  it('VMDK extent → FIFO: convert -f raw returns promptly', async () => {
    const fifo = mkfifo();
    const desc = vmdkDescriptorNaming(fifo, 2048);
    expect(spawnSync(QEMU_IMG, ['info', desc], { timeout: 1_500 }).error).toBeDefined(); // probing would hang
    const dst = tmp('o.qcow2');
    const r = await timed((s) => convertToQcow2(QEMU_IMG, desc, dst, 'raw', s));
    expect(r.error).toBeUndefined();
    expect(r.ms).toBeLessThan(PROMPT_MS);
    await verifyFinalQcow2(QEMU_IMG, dst);
  });

  const hasStrace = spawnSync('strace', ['-V']).status === 0;
  it.skipIf(!hasStrace)('strace: the only files qemu-img opens are the source and the destination', async (ctx) => {
    const traceDir = tmp('trace');
    mkdirSync(traceDir);
    const log = join(traceDir, 'opens');
    const wrapper = join(traceDir, 'qemu-img');
    writeFileSync(wrapper, `#!/bin/sh\nexec strace -f -qq -s 4096 -e trace=open,openat,openat2,creat -o "${log}.$$" ${QEMU_IMG} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const logs = () => readdirSync(traceDir).filter((n) => n.startsWith('opens.'));
    const opened = (): string[] =>
      logs().flatMap((n) => [...readFileSync(join(traceDir, n), 'utf8').matchAll(/open(?:at2?)?\((?:[^,]*, )?"([^"]*)"/g)].map((m) => m[1]!));
    const forget = () => logs().forEach((n) => rmSync(join(traceDir, n)));
    // Sanity: strace works here and sees the qemu-img probe follow the extent.
    const desc = vmdkDescriptorNaming(secret, 128);
    const probe = spawnSync(wrapper, ['info', desc], { timeout: 10_000 });
    if (probe.status !== 0) ctx.skip(); // ptrace not permitted in this sandbox: the FIFO traps above stand
    expect(opened()).toContain(secret);
    forget();

    const dst = tmp('traced.qcow2');
    await convertToQcow2(wrapper, desc, dst, 'raw');
    await verifyFinalQcow2(wrapper, dst);
    const v2 = createQcow2('traced-v2.qcow2', '-o', 'compat=0.10');
    const dst2 = tmp('traced-v3.qcow2');
    await convertToQcow2(wrapper, v2, dst2, 'qcow2');
    const files = opened().filter((f) => f.startsWith(dir));
    expect(files.length).toBeGreaterThan(0);
    expect(new Set(files)).toEqual(new Set([desc, dst, v2, dst2]));
    // Refused bodies never reach qemu-img at all.
    forget();
    const backed = createQcow2('traced-backed.qcow2', '-b', secret, '-F', 'raw');
    await expect(verifyFinalQcow2(wrapper, backed)).rejects.toBeInstanceOf(BodyRejectedError);
    await expect(convertToQcow2(wrapper, backed, tmp('x.qcow2'), 'qcow2')).rejects.toBeInstanceOf(BodyRejectedError);
    expect(opened()).toEqual([]);
  });
});

describe('(d) qcow2 v2 → v3', () => {
  it('convertToQcow2(…, "qcow2") gives compat 1.1 with the same contents, which then verifies', async () => {
    const raw = tmp('v2-src.raw');
    const data = Buffer.concat([randomBytes(300 * 1024), Buffer.alloc(200 * 1024), randomBytes(12 * 1024)]);
    writeFileSync(raw, data);
    const v2 = tmp('old.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=0.10', raw, v2);
    const head = readFileSync(v2).subarray(0, HEAD_BYTES);
    expect(inspectImageHead(head, readFileSync(v2).length)).toEqual({ kind: 'qcow2', version: 2, needsConversion: true });
    expect(info(v2)['format-specific'].data.compat).toBe('0.10');

    const dst = tmp('new.qcow2');
    await convertToQcow2(QEMU_IMG, v2, dst, 'qcow2');
    expect(info(dst)).toMatchObject({ format: 'qcow2', 'format-specific': { data: { compat: '1.1' } } });
    expect(info(dst)['backing-filename']).toBeUndefined();
    expect(rawContents(dst).equals(data)).toBe(true);
    await verifyFinalQcow2(QEMU_IMG, dst);
  });

  it('a dirty v3 is converted to a clean one', async () => {
    const p = createQcow2('dirty.qcow2');
    const body = readFileSync(p);
    body.writeBigUInt64BE(1n, 72);
    writeFileSync(p, body);
    expect(inspectImageHead(body.subarray(0, HEAD_BYTES), body.length)).toEqual({ kind: 'qcow2', version: 3, needsConversion: true });
    expectRejected((await timed((s) => verifyFinalQcow2(QEMU_IMG, p, s))).error, /not a clean qcow2 v3/);
    const dst = tmp('clean.qcow2');
    await convertToQcow2(QEMU_IMG, p, dst, 'qcow2');
    await verifyFinalQcow2(QEMU_IMG, dst);
  });

  it('honours an abort signal and a missing qemu-img', async () => {
    const raw = tmp('abort.raw');
    writeFileSync(raw, randomBytes(4096));
    const ac = new AbortController();
    ac.abort(new Error('job cancelled'));
    await expect(convertToQcow2(QEMU_IMG, raw, tmp('a.qcow2'), 'raw', ac.signal)).rejects.toThrow('job cancelled');
    await expect(verifyFinalQcow2(QEMU_IMG, raw, ac.signal)).rejects.toThrow('job cancelled');
    const err = await convertToQcow2('/nonexistent/qemu-img', raw, tmp('b.qcow2'), 'raw').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConversionError);
    expect((err as Error).message).toBe('/nonexistent/qemu-img not found: install qemu-utils (apt-get install qemu-utils) or point the worker at qemu-img');
    expect(err).toMatchObject({ settings: ['qemuImg'] });
  });
});
