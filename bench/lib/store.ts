/** Bench-side helpers on a cocoon root: plant or remove blobs, plant snapshots for the fake cocoon. */
import { chmod, copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Digest } from '../../src/lib/digest.js';
import { blobPath, storePaths } from '../../src/store/paths.js';
import { plantSnapshot as plantCocoonSnapshot, setHostCores } from '../../test/helpers/cocoon.js';
import type { BenchImage } from './images.js';
import { FAKE_COCOON } from './paths.js';

export async function plantBlob(root: string, img: BenchImage): Promise<void> {
  const p = storePaths(root);
  await mkdir(p.blobs, { recursive: true });
  const file = blobPath(p, Digest.parse(img.digest));
  await copyFile(img.file, file);
  await chmod(file, 0o444);
}

/** Remove the blob (and leftovers in temp/) so the next job must download again. */
export async function removeBlob(root: string, img: BenchImage): Promise<void> {
  const p = storePaths(root);
  await rm(blobPath(p, Digest.parse(img.digest)), { force: true });
  let names: string[] = [];
  try {
    names = await readdir(p.temp);
  } catch {
    /* no temp dir yet */
  }
  await Promise.all(names.map((n) => rm(join(p.temp, n), { force: true })));
}

/** A cocoon snapshot record (+ overlay backed by the image's blob path), as the fake cocoon reads it. */
export async function plantSnapshot(root: string, name: string, img: { url: string; digest: string }): Promise<void> {
  plantCocoonSnapshot(root, { name, image: img.url, imageDigest: img.digest });
}

/** Environment for a worker driving the fake cocoon on `root` (run/log dirs inside it). */
export function fakeCocoonEnv(root: string): Record<string, string> {
  setHostCores(root, 64);
  return { FLEETQ_COCOON_BIN: FAKE_COCOON, FLEETQ_COCOON_RUN_DIR: join(root, 'run'), FLEETQ_COCOON_LOG_DIR: join(root, 'log') };
}

/** Drop the VMs the fake cocoon made (records, overlays, logs) between runs. */
export async function removeVms(root: string): Promise<void> {
  for (const dir of ['cloudhypervisor', 'run', 'log']) await rm(join(root, dir), { recursive: true, force: true });
}
