import { describe, expect, it } from 'vitest';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { RestorePayload } from '../../../src/jobs/contracts/restore.js';
import { cocoonArgs } from '../../../src/restore/cocoon-args.js';
import { classifyCocoonFailure, COCOON_FAILURE_TABLE } from '../../../src/restore/cocoon-failures.js';

const D = `sha256:${'ab'.repeat(32)}`;
const parse = (d: unknown) => parsePayload(RestorePayload, d, 'restore');

describe('restore payload', () => {
  it('accepts a clone with cocoon resources', () => {
    expect(parse({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-042', image: 'https://e/dl/w', imageDigest: D, cpu: 4, memory: '8G', storage: '40G', nics: 1, onDemand: true })).toMatchObject({
      kind: 'clone',
      imageType: 'cloudimg',
      memory: '8G',
    });
  });

  it.each([
    [{ kind: 'restore', snapshot: 's', image: 'http://h/x' }, 'vm', /required for kind "restore"/],
    [{ kind: 'clone', snapshot: 's', vm: 'v', image: 'http://h/x' }, 'vm', /only for kind "restore"/],
    [{ kind: 'restore', vm: 'v', snapshot: 's', image: 'http://h/x', nics: 2 }, 'nics', /only for kind "clone"/],
    [{ kind: 'clone', snapshot: 's', image: 'http://h/x', cpu: -1 }, 'cpu', /at least 1/],
    [{ kind: 'clone', snapshot: 's', image: 'http://h/x', cpu: 1.5 }, 'cpu', /whole number/],
    [{ kind: 'clone', snapshot: 's', image: 'http://h/x', memory: '8X' }, 'memory', /size such as/],
    [{ kind: 'clone', snapshot: 's', image: 'http://h/x', memory: '0G' }, 'memory', /size such as/],
    [{ kind: 'nope', snapshot: 's', image: 'http://h/x' }, 'kind', /"clone" or "restore"/],
    [{ kind: 'clone', snapshot: 's', image: 'http://h/x', extra: true }, 'extra', /not a known field/],
    [{ kind: 'clone', snapshot: '-o', image: 'http://h/x' }, 'snapshot', /starting with a letter or digit/],
    [{ kind: 'clone', snapshot: 's', image: 'file:///x' }, 'image', /unsupported protocol/],
  ])('rejects %j naming %s', (data, field, msg) => {
    let err: any;
    try {
      parse(data);
    } catch (e) {
      err = e;
    }
    expect(err?.field).toBe(field);
    expect(err.message).toMatch(msg);
  });
});

describe('cocoon argv', () => {
  it('clone', () => {
    const p = parse({ kind: 'clone', snapshot: 'snap', name: 'vm1', image: 'http://h/x', cpu: 4, memory: '8G', nics: 2, onDemand: true });
    expect(cocoonArgs(p)).toEqual(['vm', 'clone', 'snap', '--name', 'vm1', '--cpu', '4', '--memory', '8G', '--nics', '2', '--on-demand', '-o', 'json']);
  });
  it('restore', () => {
    const p = parse({ kind: 'restore', vm: 'vm1', snapshot: 'snap-7', image: 'http://h/x', storage: '40G' });
    expect(cocoonArgs(p)).toEqual(['vm', 'restore', 'vm1', 'snap-7', '--storage', '40G', '-o', 'json']);
  });
});

describe('cocoon failure table', () => {
  it.each([
    ['Error: snapshot "x" not found', 'E_COCOON_SNAPSHOT_NOT_FOUND', true],
    ['Error: snapshot "s" does not belong to VM "v"', 'E_COCOON_SNAPSHOT_NOT_OWNED', true],
    ['Error: VM "v" not found', 'E_COCOON_VM_NOT_FOUND', true],
    ['Error: VM "v" already exists', 'E_COCOON_VM_EXISTS', true],
    ['Error: NIC count mismatch: snapshot has 1', 'E_COCOON_NIC_MISMATCH', true],
    ["Error: --memory 2G is below the snapshot's 4G", 'E_COCOON_BELOW_SNAPSHOT', true],
    ['Error: unknown flag: --frobnicate', 'E_COCOON_BAD_ARGS', true],
    ['Error: vm.restore → 500: Backing file I/O error: /var/lib/cocoon/cloudimg/blobs/ad.qcow2 — No such file or directory', 'E_COCOON_BACKING_FILE', false],
    ['Error: something else entirely', 'E_COCOON_FAILED', false],
  ])('%s → %s', (stderr, code, permanent) => {
    expect(classifyCocoonFailure(stderr)).toMatchObject({ code, permanent });
  });
  it('every rule has a hint', () => {
    for (const r of COCOON_FAILURE_TABLE) expect(r.hint.length).toBeGreaterThan(5);
  });
});
