/**
 * cocoon's cloudimg layout under a root directory. Pure: computes paths only.
 *
 *   <root>/cloudimg/db/images.json      URL → digest index
 *   <root>/cloudimg/db/images.lock      flock held around every index read-modify-write
 *   <root>/cloudimg/temp/               downloads in progress
 *   <root>/cloudimg/blobs/<hex>.qcow2   base images, 0444, named by sha256 of the HTTP body
 */
import { join } from 'node:path';
import { DIGEST_RE } from '../jobs/contracts/common.js';

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

/**
 * The hex part of a digest. Throws unless the digest is exactly `sha256:` + 64
 * lowercase hex, so no caller can build a path from an unchecked string.
 */
export function digestHex(digest: string): string {
  if (!DIGEST_RE.test(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
  return digest.slice('sha256:'.length);
}

export function blobPath(paths: StorePaths, digest: string): string {
  return join(paths.blobs, `${digestHex(digest)}.qcow2`);
}
