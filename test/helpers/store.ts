/** Temporary cocoon roots, planting entries, and reading back what the store holds. */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storePaths } from '../../src/store/paths.js';

export function tempRoot(): string {
  return mkdtempSync(join(tmpdir(), 'fleetq-root-'));
}

export function removeRoot(root: string): void {
  rmSync(root, { recursive: true, force: true });
}

/** Put a blob into the store directly (as an earlier pull would have). */
export function plantBlob(root: string, hex: string, body: Buffer): string {
  const p = storePaths(root);
  mkdirSync(p.blobs, { recursive: true });
  const file = join(p.blobs, `${hex}.qcow2`);
  writeFileSync(file, body);
  chmodSync(file, 0o444);
  return file;
}

/** Point `url` at `digest` in images.json with cocoon's field names. */
export function plantIndexEntry(root: string, url: string, digest: string, size: number): void {
  const p = storePaths(root);
  mkdirSync(p.db, { recursive: true });
  const index = readIndexFile(root);
  index.images[url] = { ref: url, content_sum: digest, size, created_at: new Date().toISOString() };
  writeFileSync(p.index, JSON.stringify(index, null, 2));
}

export function readIndexFile(root: string): { images: Record<string, { ref: string; content_sum: string; size: number; created_at: string }> } {
  try {
    return JSON.parse(readFileSync(storePaths(root).index, 'utf8'));
  } catch {
    return { images: {} };
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

export interface StoreState {
  blobs: string[];
  temp: string[];
  index: Record<string, string>;
}

/** Snapshot of the store: blob names, temp files, and URL → digest. */
export function storeState(root: string): StoreState {
  const p = storePaths(root);
  const index: Record<string, string> = {};
  for (const [url, e] of Object.entries(readIndexFile(root).images)) index[url] = e.content_sum;
  return { blobs: list(p.blobs), temp: list(p.temp), index };
}

/** Every index entry points at a blob that exists with the recorded size; every blob is 0444. */
export function assertConsistent(root: string): void {
  const p = storePaths(root);
  for (const [url, e] of Object.entries(readIndexFile(root).images)) {
    const file = join(p.blobs, `${e.content_sum.slice(7)}.qcow2`);
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st) throw new Error(`index points ${url} at ${e.content_sum} but ${file} is missing`);
    if (st.size !== e.size) throw new Error(`index says ${e.size} bytes for ${file}, disk has ${st.size}`);
  }
  for (const name of list(p.blobs)) {
    if (!/^[0-9a-f]{64}\.qcow2$/.test(name)) throw new Error(`unexpected file in blobs/: ${name}`);
    const mode = statSync(join(p.blobs, name)).mode & 0o777;
    if (mode !== 0o444) throw new Error(`blob ${name} has mode ${mode.toString(8)}, want 444`);
  }
}
