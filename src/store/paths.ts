/**
 * cocoon's cloudimg layout under a root directory. Pure: computes paths only.
 *
 *   <root>/cloudimg/db/images.json      URL → digest index
 *   <root>/cloudimg/db/images.lock      flock held around every index read-modify-write
 *   <root>/cloudimg/temp/               downloads in progress
 *   <root>/cloudimg/blobs/<hex>.qcow2   base images, 0444, named by sha256 of the HTTP body
 */
import { join } from 'node:path';
import type { Digest } from '../lib/digest.js';

export interface StorePaths {
  root: string;
  cloudimg: string;
  blobs: string;
  db: string;
  index: string;
  indexLock: string;
  temp: string;
}

export function storePaths(root: string): StorePaths {
  const cloudimg = join(root, 'cloudimg');
  const db = join(cloudimg, 'db');
  return {
    root,
    cloudimg,
    blobs: join(cloudimg, 'blobs'),
    db,
    index: join(db, 'images.json'),
    indexLock: join(db, 'images.lock'),
    temp: join(cloudimg, 'temp'),
  };
}

/** blobs/<hex>.qcow2. A `Digest` was checked where it entered, so no path is ever built from an unchecked string. */
export function blobPath(paths: StorePaths, digest: Digest): string {
  return join(paths.blobs, `${digest.hex}.qcow2`);
}
