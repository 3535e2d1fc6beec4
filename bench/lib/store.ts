/** Bench-side helpers on a cocoon root: plant or remove blobs, plant snapshots for the fake cocoon. */
import { chmod, copyFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blobPath, storePaths } from '../../src/store/paths.js';
import type { BenchImage } from './images.js';

export async function plantBlob(root: string, img: BenchImage): Promise<void> {
  const p = storePaths(root);
  await mkdir(p.blobs, { recursive: true });
  const file = blobPath(p, img.digest);
  await copyFile(img.file, file);
  await chmod(file, 0o444);
}

/** Remove the blob (and leftovers in temp/) so the next job must download again. */
export async function removeBlob(root: string, img: BenchImage): Promise<void> {
  const p = storePaths(root);
  await rm(blobPath(p, img.digest), { force: true });
  let names: string[] = [];
  try {
    names = await readdir(p.temp);
  } catch {
    /* no temp dir yet */
  }
  await Promise.all(names.map((n) => rm(join(p.temp, n), { force: true })));
}

/** <root>/snapshots/<name>.json as test/helpers/cocoon.ts plants it for the fake cocoon. */
export async function plantSnapshot(root: string, name: string, img: { url: string; digest: string }): Promise<void> {
  await mkdir(join(root, 'snapshots'), { recursive: true });
  await writeFile(join(root, 'snapshots', `${name}.json`), JSON.stringify({ name, image_type: 'cloudimg', image: img.url, image_digest: img.digest }));
}

/** Drop the VMs the fake cocoon made (overlays and records) between runs. */
export async function removeVms(root: string): Promise<void> {
  await rm(join(root, 'vms'), { recursive: true, force: true });
  await rm(join(root, 'run'), { recursive: true, force: true });
}
