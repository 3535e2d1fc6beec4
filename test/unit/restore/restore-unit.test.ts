/** The pure half of restores: payload rules, cocoon argv, failure table, snapshot base, existing clones. */
import { describe, expect, it } from 'vitest';
import { parsePayload } from '../../../src/jobs/contracts/common.js';
import { COCOON_NAME_RE, MIN_CLONE_MEMORY, MIN_CLONE_STORAGE, parseCocoonSize, RestorePayload } from '../../../src/jobs/contracts/restore.js';
import { Digest } from '../../../src/lib/digest.js';
import { cloneArgs, restoreArgs, snapshotInspectArgs, vmInspectArgs } from '../../../src/restore/cocoon-args.js';
import { cocoonEnv } from '../../../src/restore/cocoon-cli.js';
import { classifyCocoonFailure, COCOON_FAILURE_TABLE } from '../../../src/restore/cocoon-failures.js';
import { CocoonSnapshot, CocoonVm, parseCocoonJson } from '../../../src/restore/cocoon-records.js';
import { judgeExistingClone } from '../../../src/restore/existing-clone.js';
import { resolveBase } from '../../../src/restore/snapshot-base.js';

const D = `sha256:${'ab'.repeat(32)}`;
const E = `sha256:${'cd'.repeat(32)}`;
const parse = (d: unknown) => parsePayload(RestorePayload, d, 'restore');
const G = { rootDir: '/srv/fleetq', runDir: '/run/cocoon', logDir: '/var/log/cocoon-fq' };

function fieldOf(fn: () => unknown): { field?: string; message: string } {
  try {
    fn();
  } catch (e) {
    return e as { field?: string; message: string };
  }
  throw new Error('did not throw');
}

describe('restore payload (cocoon\'s own rules, checked at enqueue)', () => {
  it('accepts a clone without image or digest (the snapshot decides)', () => {
    expect(parse({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-042' })).toEqual({ kind: 'clone', snapshot: 'win11-golden', name: 'vm-042', imageType: 'cloudimg' });
  });

  it('accepts go-units sizes as cocoon does', () => {
    for (const [s, bytes] of [
      ['512M', 512 * 1024 ** 2],
      ['8g', 8 * 1024 ** 3],
      ['1.5GiB', 1.5 * 1024 ** 3],
      ['40gb', 40 * 1024 ** 3],
      ['1073741824', 1024 ** 3],
    ] as const) {
      expect(parseCocoonSize(s)).toBe(bytes);
    }
    expect(parseCocoonSize('8X')).toBeUndefined();
    expect(parseCocoonSize('abc')).toBeUndefined();
  });

  it.each([
    [{ kind: 'clone', snapshot: 's' }, 'name', /is required/],
    [{ kind: 'restore', snapshot: 's' }, 'vm', /is required/],
    [{ kind: 'clone', snapshot: 's', name: 'n', vm: 'v' }, 'vm', /not a known field for kind "clone"/],
    [{ kind: 'restore', vm: 'v', snapshot: 's', nics: 2 }, 'nics', /not a known field for kind "restore"/],
    [{ kind: 'restore', vm: 'v', snapshot: 's', name: 'x' }, 'name', /not a known field for kind "restore"/],
    [{ kind: 'clone', snapshot: 's', name: 'n', cpu: 0 }, 'cpu', /at least 1/],
    [{ kind: 'clone', snapshot: 's', name: 'n', cpu: 1.5 }, 'cpu', /whole number/],
    [{ kind: 'clone', snapshot: 's', name: 'n', memory: '8X' }, 'memory', /size such as/],
    [{ kind: 'clone', snapshot: 's', name: 'n', memory: '256M' }, 'memory', /at least 512M/],
    [{ kind: 'clone', snapshot: 's', name: 'n', storage: '9G' }, 'storage', /at least 10G/],
    [{ kind: 'clone', snapshot: 's', name: 'n', nics: 0 }, 'nics', /at least 1/],
    [{ kind: 'nope', snapshot: 's' }, 'kind', /"clone" or "restore" \(got "nope"\)/],
    [{ kind: 'clone', snapshot: 's', name: 'n', extra: true }, 'extra', /not a known field/],
    [{ kind: 'clone', snapshot: '-o', name: 'n' }, 'snapshot', /must match/],
    [{ kind: 'clone', snapshot: 's', name: 'a'.repeat(64) }, 'name', /must match/],
    [{ kind: 'clone', snapshot: 's', name: 'n', image: 'file:///x' }, 'image', /unsupported protocol/],
    [{ kind: 'clone', snapshot: 's', name: 'n', imageDigest: 'sha256:xyz' }, 'imageDigest', /64 lowercase hex/],
  ])('rejects %j naming %s', (data, field, msg) => {
    const err = fieldOf(() => parse(data));
    expect(err.field).toBe(field);
    expect(err.message).toMatch(msg);
  });

  it('a restore keeps cocoon\'s minimums to itself (cocoon checks them only on clone)', () => {
    expect(parse({ kind: 'restore', vm: 'v', snapshot: 's', memory: '256M' })).toMatchObject({ memory: '256M' });
  });
});

describe('cocoon argv (contract §2–§5, §7)', () => {
  it('clone always names the VM, asks for JSON and points cocoon at the store', () => {
    const p = parse({ kind: 'clone', snapshot: 'snap', name: 'vm1', cpu: 4, memory: '8G', nics: 2, onDemand: true });
    if (p.kind !== 'clone') throw new Error('kind');
    expect(cloneArgs(p, G)).toEqual(['vm', 'clone', 'snap', '--name', 'vm1', '--cpu', '4', '--memory', '8G', '--nics', '2', '--on-demand', '-o', 'json', '--root-dir', '/srv/fleetq', '--run-dir', '/run/cocoon', '--log-dir', '/var/log/cocoon-fq']);
  });
  it('restore has no --nics/--name', () => {
    const p = parse({ kind: 'restore', vm: 'vm1', snapshot: 'snap-7', storage: '40G' });
    if (p.kind !== 'restore') throw new Error('kind');
    expect(restoreArgs(p, { rootDir: '/r' })).toEqual(['vm', 'restore', 'vm1', 'snap-7', '--storage', '40G', '-o', 'json', '--root-dir', '/r']);
  });
  it('inspect commands take no -o (cocoon rejects it) and the config file comes first', () => {
    expect(vmInspectArgs('vm1', { rootDir: '/r', config: '/etc/cocoon.yaml' })).toEqual(['vm', 'inspect', 'vm1', '--config', '/etc/cocoon.yaml', '--root-dir', '/r']);
    expect(snapshotInspectArgs('s', { rootDir: '/r' })).toEqual(['snapshot', 'inspect', 's', '--root-dir', '/r']);
  });
  it('cocoon gets no FLEETQ_* variables (secrets, and FLEETQ_ROOT means nothing to it) and plain logs', () => {
    const env = cocoonEnv({ PATH: '/bin', FLEETQ_BOARD_PASSWORD: 'x', FLEETQ_ROOT: '/r', REDIS_URL: 'redis://:pw@h', COCOON_DNS: '1.1.1.1' });
    expect(env).toEqual({ PATH: '/bin', COCOON_DNS: '1.1.1.1', NO_COLOR: '1' });
  });
});

describe('cocoon failure table: every error text of the contract (§1–§5)', () => {
  it.each([
    // §1 arguments
    ["Error: unknown shorthand flag: 'o' in -o", 'E_COCOON_BAD_ARGS', true],
    ['Error: unknown flag: --output', 'E_COCOON_BAD_ARGS', true],
    ['Error: flag needs an argument: --name', 'E_COCOON_BAD_ARGS', true],
    ["Error: flag needs an argument: 'o' in -o", 'E_COCOON_BAD_ARGS', true],
    ['Error: invalid argument "x" for "--cpu" flag: strconv.ParseInt: parsing "x": invalid syntax', 'E_COCOON_BAD_ARGS', true],
    ['Error: bad flag syntax: ---x', 'E_COCOON_BAD_ARGS', true],
    ['Error: unknown command "foo" for "cocoon"\nRun \'cocoon --help\' for usage.', 'E_COCOON_BAD_ARGS', true],
    ['Error: accepts 1 arg(s), received 2', 'E_COCOON_BAD_ARGS', true],
    ['Error: requires at least 1 arg(s), only received 0', 'E_COCOON_BAD_ARGS', true],
    // §2 configuration
    ['Error: read config: open /etc/c.yaml: no such file or directory', 'E_COCOON_CONFIG', true],
    ['Error: read config: Unsupported Config Type "conf"', 'E_COCOON_CONFIG', true],
    ['Error: config: root_dir must not be empty', 'E_COCOON_CONFIG', true],
    ['Error: config: stop_timeout_seconds must be > 0, got 0', 'E_COCOON_CONFIG', true],
    ['Error: config: dns: invalid DNS server address "x"', 'E_COCOON_CONFIG', true],
    ["Error: Unknown Level String: 'loud', defaulting to NoLevel", 'E_COCOON_CONFIG', true],
    // §3 clone, in cocoon's order
    ['Error: inspect snapshot S: snapshot not found', 'E_COCOON_SNAPSHOT_NOT_FOUND', true],
    ['Error: invalid --memory "8X": invalid suffix: \'x\'', 'E_COCOON_INVALID_SIZE', true],
    ['Error: invalid --memory "abc": invalid size: \'abc\'', 'E_COCOON_INVALID_SIZE', true],
    ['Error: --cpu 1 below snapshot minimum 2', 'E_COCOON_BELOW_SNAPSHOT', true],
    ['Error: --memory 536.9MB below snapshot minimum 1.074GB', 'E_COCOON_BELOW_SNAPSHOT', true],
    ['Error: --storage 10.74GB below snapshot minimum 21.47GB', 'E_COCOON_BELOW_SNAPSHOT', true],
    ['Error: vm name cannot be empty', 'E_COCOON_INVALID_NAME', true],
    ['Error: vm name "-x" is invalid: must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$ (max 63 chars)', 'E_COCOON_INVALID_NAME', true],
    ['Error: --cpu must be at least 1, got 0', 'E_COCOON_BELOW_MINIMUM', true],
    ['Error: --memory must be at least 512M, got 268435456', 'E_COCOON_BELOW_MINIMUM', true],
    ['Error: --storage must be at least 10G, got 1073741824', 'E_COCOON_BELOW_MINIMUM', true],
    ['Error: --queue-size must be non-negative, got -1', 'E_COCOON_BELOW_MINIMUM', true],
    ['Error: --nics 1 below snapshot minimum 2', 'E_COCOON_BELOW_SNAPSHOT', true],
    ['Error: init network: no conflist found in /etc/cni/net.d', 'E_COCOON_NETWORK', true],
    ['Error: configure network: plugin bridge failed', 'E_COCOON_NETWORK', true],
    ['Error: clone VM: requested 64 vCPUs exceeds host cores (16)', 'E_COCOON_TOO_MANY_CPUS', true],
    ['Error: clone VM: reserve VM record: vm name "vm-1" already exists (id: ABCDEFGHIJKLMNOPQRSTUVWXYZ)', 'E_COCOON_VM_EXISTS', true],
    ['Error: clone VM: launch CH: fork/exec /usr/bin/cloud-hypervisor: no such file or directory', 'E_COCOON_HYPERVISOR', false],
    ['Error: clone VM: vm.restore: PUT http://localhost/api/v1/vm.restore → 500: Backing file I/O error: /var/lib/cocoon/cloudimg/blobs/ab.qcow2', 'E_COCOON_BACKING_FILE', false],
    ["Error: clone VM: resize COW: qemu-img resize /run/x/overlay.qcow2 20G: qemu-img: Could not open backing file: Could not open '/b.qcow2': No such file or directory", 'E_COCOON_BACKING_FILE', false],
    ['Error: clone VM: hot-swap NICs: timeout', 'E_COCOON_HYPERVISOR', false],
    ['Error: clone VM: vm.resume: PUT http://localhost/api/v1/vm.resume → 500: x', 'E_COCOON_HYPERVISOR', false],
    // §4 restore, in cocoon's order
    ['Error: find VM v: vm v: VM not found', 'E_COCOON_VM_NOT_FOUND', true],
    ['Error: inspect snapshot: snapshot not found', 'E_COCOON_SNAPSHOT_NOT_FOUND', true],
    ['Error: snapshot S does not belong to VM V', 'E_COCOON_SNAPSHOT_NOT_OWNED', true],
    ['Error: nic count mismatch: vm has 1, snapshot has 2', 'E_COCOON_NIC_MISMATCH', true],
    ['Error: restore: requested 8 vCPUs exceeds host cores (4)', 'E_COCOON_TOO_MANY_CPUS', true],
    ['Error: restore: vm ABCDEFGHIJKLMNOPQRSTUVWXYZ is stopped, must be running to restore', 'E_COCOON_VM_NOT_RUNNING', true],
    ['Error: restore: snapshot preflight: missing memory-ranges', 'E_COCOON_HYPERVISOR', false],
    ['Error: restore: launch CH: exit status 1', 'E_COCOON_HYPERVISOR', false],
    ['Error: restore: vm.restore: PUT http://localhost/api/v1/vm.restore → 500: Backing file I/O error: /b', 'E_COCOON_BACKING_FILE', false],
    // §5 inspect
    ['Error: inspect: vm X: VM not found', 'E_COCOON_VM_NOT_FOUND', true],
    ['Error: inspect: inspect X in cloud-hypervisor: ambiguous ref "X": multiple matches', 'E_COCOON_AMBIGUOUS_REF', true],
    ['Error: inspect: snapshot not found', 'E_COCOON_SNAPSHOT_NOT_FOUND', true],
    ['Error: something nobody documented', 'E_COCOON_FAILED', false],
  ])('%s → %s (permanent: %s)', (stderr, code, permanent) => {
    expect(classifyCocoonFailure(stderr)).toMatchObject({ code, permanent });
  });
  it('every rule\'s hint names what went wrong and the remedy', () => {
    const gib = (b: number) => `${b / 1024 ** 3}G`;
    const mib = (b: number) => `${b / 1024 ** 2}M`;
    /** Per code: what the operator reads in the job's reason (`[code: hint]`), each part required. */
    const remedy: Record<string, Array<RegExp | string>> = {
      E_COCOON_BACKING_FILE: [/base image is missing/, /the retry ensures it first/],
      E_COCOON_BAD_ARGS: [/rejected the arguments/, /fleetq and cocoon versions/],
      E_COCOON_CONFIG: [/cannot load its configuration/, /check the worker's cocoon --config file/],
      E_COCOON_SNAPSHOT_NOT_FOUND: [/snapshot does not exist on this host/],
      E_COCOON_VM_NOT_FOUND: [/VM does not exist on this host/],
      E_COCOON_AMBIGUOUS_REF: [/matches several VMs or snapshots/, /use the full name or ID/],
      E_COCOON_INVALID_SIZE: [/size cocoon cannot parse/],
      E_COCOON_BELOW_SNAPSHOT: [/raised above the snapshot's, never lowered/],
      E_COCOON_INVALID_NAME: [`breaks cocoon's rule ${COCOON_NAME_RE.source}`],
      E_COCOON_BELOW_MINIMUM: [`1 vCPU, ${mib(MIN_CLONE_MEMORY)} memory, ${gib(MIN_CLONE_STORAGE)} storage`],
      E_COCOON_TOO_MANY_CPUS: [/more vCPUs than this host has cores/],
      E_COCOON_VM_EXISTS: [/already has this name/, /pick another name or remove it \(cocoon vm rm\)/],
      E_COCOON_SNAPSHOT_NOT_OWNED: [/one of the VM's own snapshots/],
      E_COCOON_NIC_MISMATCH: [/NIC count must match the snapshot/],
      E_COCOON_VM_NOT_RUNNING: [/not running/, /start it \(cocoon vm start\) and retry/],
      E_COCOON_NETWORK: [/CNI network set-up failed/, /check the CNI conflist and plugins \(--cni-conf-dir\)/],
      E_COCOON_HYPERVISOR: [/hypervisor failed to start the VM/, /retried/],
    };
    expect(COCOON_FAILURE_TABLE.map((r) => r.code).sort()).toEqual(Object.keys(remedy).sort());
    for (const r of COCOON_FAILURE_TABLE) {
      for (const part of remedy[r.code]!) {
        if (typeof part === 'string') expect(r.hint, r.code).toContain(part);
        else expect(r.hint, r.code).toMatch(part);
      }
      // A transient failure says the retry is what happens next; a permanent one never promises it.
      if (r.permanent) expect(r.hint, r.code).not.toMatch(/\bretried\b|the retry /);
      else expect(r.hint, r.code).toMatch(/\bretried\b|the retry /);
    }
    // The fallback for a text nobody documented is transient and says so.
    expect(classifyCocoonFailure('Error: something new')).toEqual({ code: 'E_COCOON_FAILED', permanent: false, hint: 'unrecognised cocoon failure: retried' });
  });
});

const snap = (s: Record<string, unknown>) => CocoonSnapshot.parse({ id: 'AAAAAAAAAAAAAAAAAAAAAAAAAA', name: 'golden', ...s });

describe('the snapshot decides the base digest', () => {
  const clone = (extra: Record<string, unknown> = {}) => parse({ kind: 'clone', snapshot: 'golden', name: 'n', ...extra });
  it('image_digest wins; the URL comes from the job, else from the snapshot', () => {
    expect(resolveBase(snap({ image: 'https://e/win11', image_digest: D }), clone())).toMatchObject({ digest: Digest.parse(D), url: 'https://e/win11', source: 'snapshot' });
    expect(resolveBase(snap({ image: 'https://e/win11', image_digest: D }), clone({ image: 'https://mirror/w' }))).toMatchObject({ url: 'https://mirror/w' });
  });
  it('older snapshots: the single image_blob_ids key', () => {
    expect(resolveBase(snap({ image: 'https://e/w', image_blob_ids: { [D.slice(7)]: {} } }), clone())).toMatchObject({ digest: Digest.parse(D), source: 'snapshot' });
  });
  it('a job digest contradicting the snapshot fails, naming both', () => {
    const err = fieldOf(() => resolveBase(snap({ image_digest: D }), clone({ imageDigest: E })));
    expect(err.message).toContain(D);
    expect(err.message).toContain(E);
    expect((err as unknown as { permanent: boolean }).permanent).toBe(true);
  });
  it('no digest in the snapshot: the job\'s, else the URL, said in a note', () => {
    expect(resolveBase(snap({ image: 'https://e/w' }), clone({ imageDigest: E }))).toMatchObject({ digest: Digest.parse(E), source: 'job' });
    const b = resolveBase(snap({ image: 'https://e/w' }), clone());
    expect(b).toMatchObject({ url: 'https://e/w', source: 'url' });
    expect(b.digest).toBeUndefined();
    expect(b.note).toMatch(/falling back to the URL/);
  });
  it('records that cannot become a path are refused', () => {
    expect(fieldOf(() => resolveBase(snap({ image_digest: 'sha256:../../etc' }), clone())).message).toMatch(/not sha256:<64 hex>/);
    expect(fieldOf(() => resolveBase(snap({ image_blob_ids: { '../x': {} } }), clone())).message).toMatch(/not 64 hex/);
    expect(fieldOf(() => resolveBase(snap({ image_type: 'oci', image: 'ubuntu:24.04' }), clone())).message).toMatch(/cloudimg images only/);
    expect(fieldOf(() => resolveBase(snap({}), clone())).message).toMatch(/nothing to ensure/);
  });
  it('a snapshot URL that is not http(s) is never used', () => {
    expect(fieldOf(() => resolveBase(snap({ image: 'file:///etc/passwd' }), clone())).message).toMatch(/no usable image URL/);
  });
});

describe('is an existing VM this job\'s earlier clone?', () => {
  const now = Date.parse('2026-11-28T12:00:00Z');
  const jobStartedAt = now - 60_000;
  const vm = (v: Record<string, unknown>) =>
    CocoonVm.parse({ id: 'BBBBBBBBBBBBBBBBBBBBBBBBBB', state: 'running', config: { name: 'vm-1', image: 'https://e/w', image_digest: D }, created_at: '2026-11-28T11:59:30.123456789Z', ...v });
  const want = { name: 'vm-1', snapshot: { image: 'https://e/w', image_digest: D }, jobStartedAt, now, cocoonTimeoutMs: 600_000 };

  it('name, digest, created after the job started, running → already done', () => {
    expect(judgeExistingClone(vm({}), want).verdict).toBe('already-done');
  });
  it('older snapshots: both digests absent and the image URL matches', () => {
    expect(judgeExistingClone(vm({ config: { name: 'vm-1', image: 'https://e/w' } }), { ...want, snapshot: { image: 'https://e/w' } }).verdict).toBe('already-done');
    expect(judgeExistingClone(vm({ config: { name: 'vm-1', image: 'https://e/other' } }), { ...want, snapshot: { image: 'https://e/w' } }).verdict).toBe('conflict');
  });
  it.each([
    ['another digest', { config: { name: 'vm-1', image_digest: E } }, 'conflict', /boots sha256:cdcd/],
    ['created before the job started', { created_at: '2026-11-28T11:00:00Z' }, 'conflict', /before this job first started/],
    ['a young creating record', { state: 'creating' }, 'in-progress', /still being created/],
    ['an old creating record', { state: 'creating', created_at: '2026-11-28T11:00:00Z' }, 'leftover', /cocoon vm rm --force vm-1/],
    ['an error record', { state: 'error' }, 'leftover', /state "error".*cocoon vm rm/],
    ['ours but stopped', { state: 'stopped' }, 'not-running', /cocoon vm start vm-1/],
  ])('%s → %s', (_what, v, verdict, msg) => {
    const j = judgeExistingClone(vm(v), want);
    expect(j.verdict).toBe(verdict);
    expect((j as { message: string }).message).toMatch(msg);
  });
});

describe('cocoon output must be the JSON it promises', () => {
  it('help text, empty output and other shapes are not a record', () => {
    expect(parseCocoonJson(CocoonVm, 'Manage VMs\n\nUsage:\n  cocoon vm [command]\n')).toBeUndefined();
    expect(parseCocoonJson(CocoonVm, '')).toBeUndefined();
    expect(parseCocoonJson(CocoonVm, '{"succeeded": []}\n')).toBeUndefined();
    expect(parseCocoonJson(CocoonVm, '{\n  "id": "X",\n  "state": "running",\n  "config": {\n    "name": "a \\u0026 b"\n  }\n}\n')).toMatchObject({ id: 'X', config: { name: 'a & b' } });
  });
});
