/**
 * What a host publishes from `cocoon snapshot ls` (pure parts): the listing
 * as cocoon prints it (contract §7: a JSON array, or `No snapshots found.`
 * even with --format json), the argv, and the catalog (cap, digests, names a
 * job can use).
 */
import { describe, expect, it } from 'vitest';
import { snapshotListArgs } from '../../../src/restore/cocoon-args.js';
import { type CocoonSnapshot, parseSnapshotList } from '../../../src/restore/cocoon-records.js';
import { catalogFrom, MAX_PUBLISHED_SNAPSHOTS } from '../../../src/placement/snapshot-catalog.js';

const HEX = 'ab'.repeat(32);
const snap = (i: number, o: Partial<CocoonSnapshot> = {}): CocoonSnapshot => ({ id: `ID${String(i).padStart(24, 'A')}`, name: `s${i}`, ...o });

describe('cocoon snapshot ls', () => {
  it('argv: --format json and the global flags, like every other call', () => {
    expect(snapshotListArgs({ rootDir: '/r', config: '/c.yaml', runDir: '/run', logDir: '/log' })).toEqual([
      'snapshot', 'ls', '--format', 'json', '--config', '/c.yaml', '--root-dir', '/r', '--run-dir', '/run', '--log-dir', '/log',
    ]);
  });

  it('parses the array, the "No snapshots found." line, and nothing else', () => {
    const json = `[\n  {\n    "cpu": 2,\n    "image_digest": "sha256:${HEX}",\n    "id": "A",\n    "name": "golden",\n    "created_at": "2026-04-27T10:00:00.123456789+02:00"\n  },\n  {\n    "name": "no-id"\n  }\n]\n`;
    expect(parseSnapshotList(json)).toEqual({ snapshots: [expect.objectContaining({ id: 'A', name: 'golden', image_digest: `sha256:${HEX}` })], invalid: 1 });
    expect(parseSnapshotList('No snapshots found.\n')).toEqual({ snapshots: [], invalid: 0 });
    expect(parseSnapshotList('[]\n')).toEqual({ snapshots: [], invalid: 0 });
    for (const junk of ['', 'Manage VM snapshots\n\nUsage:\n  cocoon snapshot [command]', '{"id":"A"}', '[{"id": ', 'No snapshots found for VM.']) {
      expect(parseSnapshotList(junk), junk).toBeUndefined();
    }
  });
});

describe('catalogFrom', () => {
  it("records each snapshot's base digest as restores read it: image_digest, else the single image_blob_ids key, else none", () => {
    const c = catalogFrom([
      snap(1, { image_digest: `sha256:${HEX}` }),
      snap(2, { image_blob_ids: { [HEX]: {} } }),
      snap(3, { image_blob_ids: { [HEX]: {}, ['cd'.repeat(32)]: {} } }), // ambiguous: no digest
      snap(4, { image_digest: 'sha256:nothex' }), // not a digest: none
      snap(5),
    ]);
    expect(c.entries.map((e) => [e.name, e.digest])).toEqual([
      ['s1', `sha256:${HEX}`],
      ['s2', `sha256:${HEX}`],
      ['s3', undefined],
      ['s4', undefined],
      ['s5', undefined],
    ]);
    expect(c).toMatchObject({ count: 5, truncated: 0, unnamed: 0 });
  });

  it('keeps the newest snapshots up to the cap (cocoon lists oldest first) and counts the rest', () => {
    const all = Array.from({ length: 7 }, (_, i) => snap(i));
    const c = catalogFrom(all, 3);
    expect(c.entries.map((e) => e.name)).toEqual(['s4', 's5', 's6']);
    expect(c).toMatchObject({ count: 7, truncated: 4 });
    expect(MAX_PUBLISHED_SNAPSHOTS).toBe(1000);
    expect(catalogFrom(Array.from({ length: 1001 }, (_, i) => snap(i))).entries).toHaveLength(1000);
  });

  it('counts snapshots without a name a job can use (they are published by ID only)', () => {
    const c = catalogFrom([snap(1, { name: '' }), snap(2, { name: '-bad' }), snap(3)]);
    expect(c.unnamed).toBe(2);
    expect(c.entries).toHaveLength(3);
  });
});
