/**
 * Benchmark images on disk: qcow2 v3 files (no backing file, so fleetq's
 * commit does not run `qemu-img convert`) whose clusters hold random-looking
 * data, made by writing a raw file of one random 1 MiB block repeated and
 * converting it with `qemu-img convert -O qcow2 -o compat=1.1`.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;

export interface BenchImage {
  /** File name under the server's directory (also the URL path). */
  name: string;
  file: string;
  digest: string;
  hex: string;
  size: number;
}

export async function sha256File(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
    return `sha256:${hash.digest('hex')}`;
  } finally {
    await fh.close();
  }
}

/** A qcow2 v3 image of about `bytes` (rounded up to whole MiB) in `dir`. */
export async function makeQcow2(dir: string, name: string, bytes: number): Promise<BenchImage> {
  const mib = Math.max(1, Math.ceil(bytes / MiB));
  const raw = join(dir, `${name}.raw`);
  const file = join(dir, name);
  const block = randomBytes(MiB);
  const fh = await open(raw, 'w');
  try {
    for (let i = 0; i < mib; i++) {
      // A different first word per MiB keeps qemu-img from seeing repeated clusters as anything special.
      block.writeUInt32LE(i, 0);
      await fh.write(block, 0, MiB);
    }
  } finally {
    await fh.close();
  }
  try {
    await execFileP('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=1.1', raw, file]);
  } finally {
    await rm(raw, { force: true });
  }
  const digest = await sha256File(file);
  return { name, file, digest, hex: digest.slice(7), size: (await stat(file)).size };
}
