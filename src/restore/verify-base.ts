/** Before cocoon runs: the base image blob must provably be on disk. */
import { statBlob, type BlobInfo } from '../store/blob-store.js';
import { blobPath, type StorePaths } from '../store/paths.js';
import { BlobMissingError } from '../store/store-errors.js';

/** The blob for `digest` as a regular, non-empty file of `expectedSize`, or a BlobMissingError naming path and digest. */
export async function verifyBase(paths: StorePaths, digest: string, expectedSize?: number): Promise<BlobInfo> {
  const blob = await statBlob(paths, digest, expectedSize);
  if (blob) return blob;
  const loose = await statBlob(paths, digest);
  const path = blobPath(paths, digest);
  const why = loose ? `has ${loose.size} bytes, expected ${expectedSize}` : 'is missing (deleted, garbage-collected or wiped?)';
  throw new BlobMissingError(`base image ${path} (${digest}) ${why}; not starting the VM on it — the retry fetches the image again`);
}
