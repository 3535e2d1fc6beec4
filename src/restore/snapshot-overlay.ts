/**
 * Before cocoon boots a snapshot: the snapshot's overlay carries the absolute
 * backing path of the base blob, written when the snapshot's VM was created
 * and never re-resolved (§3). If it points outside this store, cocoon would
 * boot from another tree whatever fleetq pulled. `qemu-img info -f qcow2`
 * (explicit format, no --backing-chain) reads the header only and opens no
 * other file.
 */
import { execFile } from 'node:child_process';
import { access, constants, realpath } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Digest } from '../lib/digest.js';
import { blobPath, type StorePaths } from '../store/paths.js';
import { SnapshotBackingError } from './restore-errors.js';

const execFileP = promisify(execFile);

/** cocoon IDs: 26 characters of [A-Z2-7] (utils/id.go). Anything else never becomes a path. */
const COCOON_ID_RE = /^[A-Z2-7]{26}$/;

export type OverlayCheck = { checked: false; why: string } | { checked: true; overlay: string; backing: string | undefined };

export function snapshotOverlayPath(root: string, snapshotId: string): string | undefined {
  return COCOON_ID_RE.test(snapshotId) ? join(root, 'snapshot', 'localfile', snapshotId, 'overlay.qcow2') : undefined;
}

async function sameFile(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  try {
    return (await realpath(a)) === (await realpath(b));
  } catch {
    return false;
  }
}

export async function checkSnapshotOverlay(opts: { paths: StorePaths; snapshotId: string; digest: Digest; qemuImg: string; signal?: AbortSignal | undefined }): Promise<OverlayCheck> {
  const overlay = snapshotOverlayPath(opts.paths.root, opts.snapshotId);
  if (!overlay) return { checked: false, why: `snapshot id ${JSON.stringify(opts.snapshotId)} is not a cocoon id` };
  try {
    await access(overlay, constants.R_OK);
  } catch {
    return { checked: false, why: `${overlay} is not readable` };
  }
  let info: { 'backing-filename'?: string; 'full-backing-filename'?: string };
  try {
    const { stdout } = await execFileP(opts.qemuImg, ['info', '-f', 'qcow2', '--output=json', '-U', overlay], { signal: opts.signal, maxBuffer: 1024 * 1024 });
    info = JSON.parse(stdout);
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    const e = err as { stderr?: string; message: string };
    throw new SnapshotBackingError(`cannot read the snapshot overlay ${overlay} as qcow2: ${(e.stderr || e.message).trim().split('\n').slice(-1)[0]}`);
  }
  const raw = info['full-backing-filename'] ?? info['backing-filename'];
  if (!raw) return { checked: true, overlay, backing: undefined };
  const backing = resolve(dirname(overlay), raw);
  const expected = blobPath(opts.paths, opts.digest);
  if (await sameFile(backing, expected)) return { checked: true, overlay, backing };
  const inStore = await sameFile(dirname(backing), opts.paths.blobs);
  throw new SnapshotBackingError(
    inStore
      ? `snapshot overlay ${overlay} is backed by ${backing}, but the snapshot records ${opts.digest} (${expected}); cocoon was not started`
      : `snapshot overlay ${overlay} is backed by ${backing}, outside this store's ${opts.paths.blobs}: cocoon would boot a base fleetq does not manage (snapshot made under another root?); cocoon was not started`,
  );
}
