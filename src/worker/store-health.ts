/**
 * What this worker knows about its store, for the host registry and for
 * pausing pulls: `disk-full` after ENOSPC/EDQUOT (pulls pause until a probe
 * write succeeds again; restores of present images go on), `store-unwritable`
 * after EROFS/EACCES/EPERM (the worker reports itself unhealthy; jobs fail
 * permanently until an operator fixes the mount or ownership).
 */
import { open, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { StorePaths } from '../store/paths.js';

export type StoreHealthState = 'ok' | 'disk-full' | 'store-unwritable';

export class StoreHealth {
  state: StoreHealthState = 'ok';
  detail: string | undefined;
  /** disk-full: bytes the failed pull needed, so pulls resume only once that much is free. */
  needBytes = 0;
  private readonly listeners = new Set<(s: StoreHealthState) => void>();

  set(state: StoreHealthState, detail?: string, needBytes = 0): void {
    const changed = state !== this.state;
    this.state = state;
    this.detail = state === 'ok' ? undefined : detail;
    this.needBytes = state === 'disk-full' ? Math.max(needBytes, this.needBytes) : 0;
    if (changed) for (const l of this.listeners) l(state);
  }

  onChange(l: (s: StoreHealthState) => void): void {
    this.listeners.add(l);
  }
}

/**
 * Is there room again? The file system must report `needBytes` free (what the
 * failed pull needed, at least 1 MiB), and a 1 MiB probe file in temp/ must
 * be writable (quotas, reserved blocks).
 */
export async function storeAcceptsWrites(paths: StorePaths, needBytes = 0, probeBytes = 1024 * 1024): Promise<boolean> {
  try {
    const st = await statfs(paths.temp);
    if (st.bavail * st.bsize < Math.max(needBytes, probeBytes)) return false;
  } catch {
    return false;
  }
  const probe = join(paths.temp, `.fleetq-space-probe-${process.pid}`);
  try {
    const fh = await open(probe, 'w', 0o600);
    try {
      await fh.write(Buffer.alloc(probeBytes));
      await fh.sync();
    } finally {
      await fh.close();
    }
    return true;
  } catch {
    return false;
  } finally {
    await unlink(probe).catch(() => {});
  }
}
