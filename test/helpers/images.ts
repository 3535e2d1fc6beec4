/** Real disk images for tests: qcow2 made by qemu-img, raw bytes, and their digests. */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestImage {
  body: Buffer;
  digest: string;
  hex: string;
}

export function digestOf(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

function image(body: Buffer): TestImage {
  const digest = digestOf(body);
  return { body, digest, hex: digest.slice(7) };
}

/** A qcow2 v3 image without backing file, made by `qemu-img create`. Different sizes give different digests. */
export function qcow2Image(virtualSizeMiB: number): TestImage {
  const dir = mkdtempSync(join(tmpdir(), 'fleetq-img-'));
  try {
    const file = join(dir, 'img.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', file, `${virtualSizeMiB}M`]);
    return image(readFileSync(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A qcow2 v3 image of about `bytes` bytes of random data (qemu-img convert of a
 * random raw file): stored as received, so its blob hashes to its digest.
 */
export function qcow2DataImage(bytes: number): TestImage {
  const dir = mkdtempSync(join(tmpdir(), 'fleetq-img-'));
  try {
    const raw = join(dir, 'img.raw');
    const file = join(dir, 'img.qcow2');
    writeFileSync(raw, randomBytes(bytes));
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=1.1', raw, file]);
    return image(readFileSync(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A raw image: random bytes (needs qemu-img convert on commit). */
export function rawImage(bytes: number): TestImage {
  return image(randomBytes(bytes));
}

/** Read a qcow2 file's format and backing file with qemu-img info. */
export function qemuInfo(file: string): { format: string; 'backing-filename'?: string; 'virtual-size': number; 'format-specific'?: { data?: { compat?: string } } } {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-U', file], { encoding: 'utf8' }));
}
