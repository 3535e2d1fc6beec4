/**
 * What this worker knows about its store, for the host registry and for
 * pausing pulls: `disk-full` after ENOSPC/EDQUOT (pulls pause until a probe
 * write succeeds again; restores of present images go on), `store-unwritable`
 * after EROFS/EACCES/EPERM (the worker reports itself unhealthy; jobs fail
 * permanently until an operator fixes the mount or ownership).
 */
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { StorePaths } from '../store/paths.js';

export type StoreHealthState = 'ok' | 'disk-full' | 'store-unwritable';

export class StoreHealth {
  state: StoreHealthState = 'ok';
  detail: string | undefined;
  private readonly listeners = new Set<(s: StoreHealthState) => void>();

  set(state: StoreHealthState, detail?: string): void {
    const changed = state !== this.state;
    this.state = state;
    this.detail = state === 'ok' ? undefined : detail;
    if (changed) for (const l of this.listeners) l(state);
  }

  onChange(l: (s: StoreHealthState) => void): void {
    this.listeners.add(l);
  }
}

/** Can the store take a write again? A 1 MiB probe file in temp/, fsynced and removed. */
export async function storeAcceptsWrites(paths: StorePaths, probeBytes = 1024 * 1024): Promise<boolean> {
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
