/**
 * IndexReferences: which digests images.json references, kept current by an
 * inotify watch on db/ (no file-system call per job while nothing changes),
 * by this process's own writes, and by a stat where no watch is possible.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Digest } from '../../../src/lib/digest.js';
import { IndexReferences, type ImageIndex, setUrlEntry, writeIndex } from '../../../src/store/image-index.js';
import { storePaths } from '../../../src/store/paths.js';

const A = Digest.parse(`sha256:${'a'.repeat(64)}`);
const B = Digest.parse(`sha256:${'b'.repeat(64)}`);
const C = Digest.parse(`sha256:${'c'.repeat(64)}`);

const dirs: string[] = [];
const refsMade: IndexReferences[] = [];
afterEach(() => {
  for (const r of refsMade.splice(0)) r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'fleetq-refs-'));
  dirs.push(dir);
  const paths = storePaths(dir);
  mkdirSync(paths.db, { recursive: true });
  const refs = new IndexReferences();
  refsMade.push(refs);
  return { paths, refs };
}

function indexText(url: string, digest: Digest): string {
  const index: ImageIndex = { images: {} };
  setUrlEntry(index, url, digest, 1);
  index.images[url]!.created_at = '2026-01-01T00:00:00.000Z';
  return `${JSON.stringify(index)}\n`;
}

/** As another process (cocoon) writes it: temp file + rename, not through writeIndex. */
function writeAsOtherProcess(path: string, text: string): void {
  writeFileSync(`${path}.other.tmp`, text);
  renameSync(`${path}.other.tmp`, path);
}

const eventually = (f: () => Promise<void>) => vi.waitFor(f, { timeout: 5_000, interval: 5 });

describe('IndexReferences', () => {
  it('answers from images.json, and sees a write by another process', async () => {
    const { paths, refs } = setup();
    expect(await refs.has(paths, A)).toBe(false); // no index yet
    writeAsOtherProcess(paths.index, indexText('http://x/a', A));
    await eventually(async () => expect(await refs.has(paths, A)).toBe(true));
    writeAsOtherProcess(paths.index, indexText('http://x/a', B)); // the URL re-pointed: A loses its reference
    await eventually(async () => expect(await refs.has(paths, A)).toBe(false));
    expect(await refs.has(paths, B)).toBe(true);
  });

  it("sees this process's own write at once, without waiting for an event", async () => {
    const { paths, refs } = setup();
    await writeIndex(paths, { images: {} });
    expect(await refs.has(paths, C)).toBe(false);
    const index: ImageIndex = { images: {} };
    setUrlEntry(index, 'http://x/c', C, 1);
    await writeIndex(paths, index);
    expect(await refs.has(paths, C)).toBe(true); // same tick as the write: no inotify event delivered yet
  });

  it('sees an in-place rewrite that keeps size and mtime (a stat stamp would not)', async () => {
    const { paths, refs } = setup();
    const T = 1_700_000_000; // whole seconds: set exactly
    writeFileSync(paths.index, indexText('http://x/a', A));
    utimesSync(paths.index, T, T);
    const before = statSync(paths.index);
    expect(await refs.has(paths, A)).toBe(true);
    writeFileSync(paths.index, indexText('http://x/a', B)); // same length, same inode
    utimesSync(paths.index, T, T);
    expect(statSync(paths.index).mtimeMs).toBe(before.mtimeMs);
    expect(statSync(paths.index).size).toBe(before.size);
    await eventually(async () => expect(await refs.has(paths, B)).toBe(true));
    expect(await refs.has(paths, A)).toBe(false);
  });

  it('follows a db/ directory that was removed and made again', async () => {
    const { paths, refs } = setup();
    writeFileSync(paths.index, indexText('http://x/a', A));
    expect(await refs.has(paths, A)).toBe(true);
    rmSync(paths.db, { recursive: true });
    mkdirSync(paths.db);
    writeFileSync(paths.index, indexText('http://x/b', B));
    await eventually(async () => expect(await refs.has(paths, B)).toBe(true));
    writeAsOtherProcess(paths.index, indexText('http://x/c', C)); // the new directory is watched too
    await eventually(async () => expect(await refs.has(paths, C)).toBe(true));
  });

  it('knownReferenced answers without any file-system call only while the watched set is current', async () => {
    const { paths, refs } = setup();
    writeAsOtherProcess(paths.index, indexText('http://x/a', A));
    expect(refs.knownReferenced(paths, A)).toBe(false); // nothing read yet: ask has()
    expect(await refs.has(paths, A)).toBe(true);
    expect(refs.knownReferenced(paths, A)).toBe(true);
    expect(refs.knownReferenced(paths, B)).toBe(false);
    writeAsOtherProcess(paths.index, indexText('http://x/a', B));
    await eventually(async () => expect(refs.knownReferenced(paths, A)).toBe(false)); // the event made it stale
    expect(await refs.has(paths, A)).toBe(false);
    expect(refs.knownReferenced(paths, B)).toBe(true);
  });

  it('without a watch, falls back to a stat per call and still sees changes', async () => {
    const { paths, refs } = setup();
    refs.close();
    writeAsOtherProcess(paths.index, indexText('http://x/a', A));
    expect(await refs.has(paths, A)).toBe(true);
    writeAsOtherProcess(paths.index, indexText('http://x/a', B)); // a new inode: the stamp differs at once
    expect(await refs.has(paths, A)).toBe(false);
    expect(await refs.has(paths, B)).toBe(true);
  });
});
