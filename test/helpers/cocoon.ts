/**
 * Helpers around test/fixtures/fake-cocoon, the stand-in for the cocoon CLI
 * (../shared/reference/cocoon-cli.md): where it keeps things under a root,
 * planting VM and snapshot records in the shapes it reads and prints, its
 * invocation log and its fault control.
 *
 * The fake takes its root only as cocoon does (--root-dir, COCOON_ROOT_DIR or
 * --config), never from FLEETQ_ROOT. Run and log dirs are <root>/run and
 * <root>/log here, so nothing touches /var/lib/cocoon.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FAKE_COCOON = fileURLToPath(new URL('../fixtures/fake-cocoon', import.meta.url));

const GIB = 1024 ** 3;
const HYPERVISOR = 'cloud-hypervisor';
/** Global flags that take a value (skipped when reading a call's verb). */
const GLOBAL_VALUE_FLAGS = new Set(['--config', '--root-dir', '--run-dir', '--log-dir', '--cni-conf-dir', '--cni-bin-dir', '--dns', '--log-level']);
const GROUPS = new Set(['vm', 'snapshot', 'image']);

export function cocoonDirs(root: string): { root: string; runDir: string; logDir: string } {
  return { root, runDir: join(root, 'run'), logDir: join(root, 'log') };
}

/** Env for a fleetq worker that drives the fake: FLEETQ_COCOON_BIN, FLEETQ_COCOON_RUN_DIR, FLEETQ_COCOON_LOG_DIR. */
export function cocoonWorkerEnv(root: string): Record<string, string> {
  const d = cocoonDirs(root);
  return { FLEETQ_COCOON_BIN: FAKE_COCOON, FLEETQ_COCOON_RUN_DIR: d.runDir, FLEETQ_COCOON_LOG_DIR: d.logDir };
}

/** Global flags for calling the fake directly on `root`: ['--root-dir', root, '--run-dir', …, '--log-dir', …]. */
export function cocoonGlobalArgs(root: string): string[] {
  const d = cocoonDirs(root);
  return ['--root-dir', d.root, '--run-dir', d.runDir, '--log-dir', d.logDir];
}

// ───────────── stores, in the fake's (and cocoon's) layout ─────────────

const vmsDb = (root: string) => join(root, 'cloudhypervisor', 'db', 'vms.json');
const snapsDb = (root: string) => join(root, 'snapshot', 'db', 'snapshots.json');
const controlFile = (root: string) => join(root, '.fake-cocoon', 'control.json');
const callsFile = (root: string) => join(root, '.fake-cocoon', 'calls.jsonl');

type Rec = Record<string, any>;
interface VmIndex {
  vms: Record<string, Rec>;
  names: Record<string, string>;
}
interface SnapIndex {
  snapshots: Record<string, Rec>;
  names: Record<string, string>;
}

function readJson<T>(file: string, fallback: T): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw err;
  }
}
function writeJsonAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, `${JSON.stringify(value)}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}
const spin = new Int32Array(new SharedArrayBuffer(4));
/** The fake's lock: an mkdir'd dir beside the db file, held around one read-modify-write. */
function withDbLock<T>(file: string, fn: () => T): T {
  mkdirSync(dirname(file), { recursive: true });
  const lock = `${file}.lockdir`;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        /* gone already */
      }
      Atomics.wait(spin, 0, 0, 5);
    }
  }
  try {
    return fn();
  } finally {
    rmdirSync(lock);
  }
}
function loadVms(root: string): VmIndex {
  const idx = readJson<Partial<VmIndex>>(vmsDb(root), {});
  return { vms: idx.vms ?? {}, names: idx.names ?? {} };
}
function loadSnaps(root: string): SnapIndex {
  const idx = readJson<Partial<SnapIndex>>(snapsDb(root), {});
  return { snapshots: idx.snapshots ?? {}, names: idx.names ?? {} };
}
function updateVms<T>(root: string, fn: (idx: VmIndex) => T): T {
  return withDbLock(vmsDb(root), () => {
    const idx = loadVms(root);
    const r = fn(idx);
    writeJsonAtomic(vmsDb(root), idx);
    return r;
  });
}
function updateSnaps<T>(root: string, fn: (idx: SnapIndex) => T): T {
  return withDbLock(snapsDb(root), () => {
    const idx = loadSnaps(root);
    const r = fn(idx);
    writeJsonAtomic(snapsDb(root), idx);
    return r;
  });
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** A cocoon ID: 26 characters of [A-Z2-7]. */
function newId(): string {
  return Array.from(randomBytes(26), (b) => B32[b & 31]).join('');
}

/** types.Config (omitempty) in cocoon's key order. */
function config(c: { cpu?: number; memory?: number; storage?: number; image?: string; imageDigest?: string | null; imageType?: string }): Rec {
  const o: Rec = {};
  if (c.cpu) o.cpu = c.cpu;
  if (c.memory) o.memory = c.memory;
  if (c.storage) o.storage = c.storage;
  if (c.image) o.image = c.image;
  if (c.imageDigest) o.image_digest = c.imageDigest;
  if (c.imageType) o.image_type = c.imageType;
  return o;
}
function blobIds(hex: string | null | undefined): Rec | undefined {
  return hex ? { [hex]: {} } : undefined;
}
function defaultBlobHex(imageDigest: string | null | undefined, blobHex: string | null | undefined): string | null {
  if (blobHex !== undefined) return blobHex;
  return imageDigest ? imageDigest.replace(/^sha256:/, '') : null;
}
/** `qemu-img create -f qcow2 [-F qcow2 -u -b <backing>] <file> <size>`. */
function createOverlay(file: string, size: number, backing: string | undefined): void {
  mkdirSync(dirname(file), { recursive: true });
  rmSync(file, { force: true });
  const args = ['create', '-q', '-f', 'qcow2'];
  if (backing) args.push('-F', 'qcow2', '-u', '-b', backing);
  execFileSync('qemu-img', [...args, file, String(size)], { stdio: ['ignore', 'ignore', 'pipe'] });
}
/** NICs as the fake invents them (no CNI here). */
function fakeNics(id: string, n: number, cpu: number): Rec[] {
  return Array.from({ length: n }, (_, i) => ({
    tap: `tap${id.slice(0, 8).toLowerCase()}-${i}`,
    mac: ['02', ...Array.from(randomBytes(5), (b) => b.toString(16).padStart(2, '0'))].join(':'),
    num_queues: cpu * 2,
    queue_size: 512,
    backend: 'cni',
    netns_path: `/var/run/netns/cocoon-${id}`,
    network: { ip: `10.88.${randomInt(0, 255)}.${randomInt(2, 254)}`, gateway: '10.88.0.1', prefix: 16 },
  }));
}

// ───────────── planting ─────────────

export interface PlantSnapshotOptions {
  name: string;
  /** URL the VM was created from. */
  image?: string;
  /** sha256:<hex>; null/undefined → no image_digest field (older snapshot). */
  imageDigest?: string | null;
  /** Key of image_blob_ids; default: hex of imageDigest; null → no image_blob_ids. */
  blobHex?: string | null;
  /** Defaults 2, 1 GiB, 10 GiB, 0 (bytes for sizes). */
  cpu?: number;
  memory?: number;
  storage?: number;
  nics?: number;
  /** Name of a planted VM: the snapshot ID is added to its snapshot_ids. */
  owner?: string;
  /** Overlay backing path; default <root>/cloudimg/blobs/<blobHex>.qcow2 (none when there is no blobHex either). */
  backing?: string;
  /** Default true: create snapshot/localfile/<ID>/overlay.qcow2 with real qemu-img. */
  overlay?: boolean;
}

/** A snapshot record (snapshots.json) and its overlay, as `cocoon snapshot save` leaves them. */
export function plantSnapshot(root: string, o: PlantSnapshotOptions): { id: string; name: string; overlay: string } {
  const id = newId();
  const hex = defaultBlobHex(o.imageDigest, o.blobHex);
  const storage = o.storage ?? 10 * GIB;
  const dataDir = join(root, 'snapshot', 'localfile', id);
  const overlay = join(dataDir, 'overlay.qcow2');
  const backing = o.backing ?? (hex ? join(root, 'cloudimg', 'blobs', `${hex}.qcow2`) : undefined);
  const rec: Rec = config({ cpu: o.cpu ?? 2, memory: o.memory ?? GIB, storage, image: o.image, imageDigest: o.imageDigest, imageType: o.image || o.imageDigest || hex ? 'cloudimg' : undefined });
  rec.id = id;
  rec.name = o.name;
  const ids = blobIds(hex);
  if (ids) rec.image_blob_ids = ids;
  rec.hypervisor = HYPERVISOR;
  if (o.nics) rec.nics = o.nics;
  rec.created_at = new Date().toISOString();
  rec.data_dir = dataDir;

  let ownerId: string | undefined;
  if (o.owner !== undefined) {
    ownerId = loadVms(root).names[o.owner];
    if (!ownerId) throw new Error(`plantSnapshot: no planted VM named ${JSON.stringify(o.owner)} under ${root}`);
  }
  if (o.overlay !== false) createOverlay(overlay, storage, backing);
  else mkdirSync(dataDir, { recursive: true });
  updateSnaps(root, (idx) => {
    if (idx.names[o.name]) throw new Error(`plantSnapshot: snapshot name ${JSON.stringify(o.name)} already exists under ${root}`);
    idx.snapshots[id] = rec;
    idx.names[o.name] = id;
  });
  if (ownerId) {
    updateVms(root, (idx) => {
      const vm = idx.vms[ownerId]!;
      vm.snapshot_ids = { ...(vm.snapshot_ids ?? {}), [id]: {} };
    });
  }
  return { id, name: o.name, overlay };
}

export interface PlantVmOptions {
  name: string;
  state: 'creating' | 'created' | 'running' | 'stopped' | 'error';
  image?: string;
  imageDigest?: string | null;
  blobHex?: string | null;
  /** Defaults 2, 1 GiB, 10 GiB, 0. */
  cpu?: number;
  memory?: number;
  storage?: number;
  nics?: number;
  /** Default now. */
  createdAt?: Date | string;
  snapshotIds?: string[];
  /** When given, also create its overlay in <root>/run/cloudhypervisor/<ID>/overlay.qcow2. */
  backing?: string;
}

/**
 * A VM record (vms.json) as cocoon keeps it. A `running` VM gets a made-up
 * PID (> 0: the fake treats it as alive); other states have pid 0.
 */
export function plantVm(root: string, o: PlantVmOptions): { id: string } {
  const id = newId();
  const { runDir, logDir } = cocoonDirs(root);
  const vmRun = join(runDir, 'cloudhypervisor', id);
  const vmLog = join(logDir, 'cloudhypervisor', id);
  const cpu = o.cpu ?? 2;
  const storage = o.storage ?? 10 * GIB;
  const hex = defaultBlobHex(o.imageDigest, o.blobHex);
  const created = o.createdAt === undefined ? new Date().toISOString() : typeof o.createdAt === 'string' ? o.createdAt : o.createdAt.toISOString();
  const overlay = join(vmRun, 'overlay.qcow2');
  const cfg = config({ cpu, memory: o.memory ?? GIB, storage, image: o.image, imageDigest: o.imageDigest, imageType: o.image || o.imageDigest || hex ? 'cloudimg' : undefined });
  cfg.name = o.name;
  const rec: Rec = { id, hypervisor: HYPERVISOR, state: o.state, config: cfg, pid: o.state === 'running' ? randomInt(100_000, 4_000_000) : 0 };
  if (o.nics) rec.network_configs = fakeNics(id, o.nics, cpu);
  rec.storage_configs = [
    { path: overlay, ro: false, serial: '', role: 'cow' },
    { path: join(vmRun, 'cidata.img'), ro: true, serial: '', role: 'cidata' },
  ];
  rec.first_booted = o.state === 'running' || o.state === 'stopped' || o.state === 'error';
  if (o.snapshotIds?.length) rec.snapshot_ids = Object.fromEntries(o.snapshotIds.map((s) => [s, {}]));
  rec.created_at = created;
  rec.updated_at = created;
  if (o.state === 'running' || o.state === 'stopped') rec.started_at = created;
  if (o.state === 'stopped') rec.stopped_at = new Date().toISOString();
  const ids = blobIds(hex);
  if (ids) rec.image_blob_ids = ids;
  rec.run_dir = vmRun;
  rec.log_dir = vmLog;

  mkdirSync(vmRun, { recursive: true });
  mkdirSync(vmLog, { recursive: true });
  if (o.backing) createOverlay(overlay, storage, o.backing);
  updateVms(root, (idx) => {
    if (idx.names[o.name]) throw new Error(`plantVm: vm name ${JSON.stringify(o.name)} already exists under ${root}`);
    idx.vms[id] = rec;
    idx.names[o.name] = id;
  });
  return { id };
}

// ───────────── reading back ─────────────

/** The stored VM record (as in vms.json, including image_blob_ids) by name, or undefined. */
export function readVm(root: string, name: string): Record<string, any> | undefined {
  const idx = loadVms(root);
  const id = idx.names[name];
  return id ? idx.vms[id] : undefined;
}

/** The stored snapshot record by name, or undefined. */
export function readSnapshot(root: string, name: string): Record<string, any> | undefined {
  const idx = loadSnaps(root);
  const id = idx.names[name];
  return id ? idx.snapshots[id] : undefined;
}

/** <root>/run/cloudhypervisor/<id>/overlay.qcow2 */
export function vmOverlay(root: string, id: string): string {
  return join(cocoonDirs(root).runDir, 'cloudhypervisor', id, 'overlay.qcow2');
}

export interface CocoonCall {
  pid: number;
  argv: string[];
  env: { COCOON_ROOT_DIR?: string; FLEETQ_ROOT?: string };
}

/** Invocations logged by the fake for this root (argv without the node/script words). */
export function cocoonCalls(root: string): CocoonCall[] {
  const f = callsFile(root);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as CocoonCall);
}

/** The verb of a call's argv, e.g. 'vm clone', 'vm inspect', 'snapshot inspect', 'gc' (global flags skipped). */
export function cocoonVerb(argv: string[]): string {
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (GLOBAL_VALUE_FLAGS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    words.push(a);
    if (!GROUPS.has(words[0]!)) break;
  }
  return words.join(' ');
}

/** The verb of each call, e.g. 'vm clone', 'vm inspect', 'snapshot inspect' (global flags skipped). */
export function cocoonVerbs(root: string): string[] {
  return cocoonCalls(root).map((c) => cocoonVerb(c.argv));
}

/**
 * The calls a restore made: every call but the worker's snapshot listing
 * (`snapshot ls`, published for placement at start and every
 * FLEETQ_SNAPSHOT_REFRESH), which runs on its own clock.
 */
export function restoreCalls(root: string): CocoonCall[] {
  return cocoonCalls(root).filter((c) => cocoonVerb(c.argv) !== 'snapshot ls');
}

/** The verbs of `restoreCalls`. */
export function restoreVerbs(root: string): string[] {
  return restoreCalls(root).map((c) => cocoonVerb(c.argv));
}

// ───────────── fault control ─────────────

export interface CocoonFault {
  only?: 'clone' | 'restore';
  at?: 'network' | 'preflight' | 'launch' | 'resume';
  message?: string;
  sleepMs?: number;
  killSelf?: 'SIGKILL' | 'SIGTERM';
  helpInstead?: boolean;
  /** clone only: SIGKILL the calling process (the worker) once the VM is committed — "killed after cocoon returned". */
  killParentAfter?: boolean;
}
interface Control {
  hostCores?: number;
  fault?: CocoonFault;
}
function writeControl(root: string, change: (c: Control) => void): void {
  const c = readJson<Control>(controlFile(root), {});
  change(c);
  writeJsonAtomic(controlFile(root), c);
}

/** Write control.json (keeps hostCores); undefined clears the fault. */
export function setCocoonFault(root: string, fault: CocoonFault | undefined): void {
  writeControl(root, (c) => {
    if (fault) c.fault = fault;
    else delete c.fault;
  });
}

export function setHostCores(root: string, n: number): void {
  writeControl(root, (c) => {
    c.hostCores = n;
  });
}

// ───────────── running it ─────────────

/**
 * Run the fake directly (argument array, no shell). The environment is this
 * process's without COCOON_* (so an outer setting cannot move the root), plus `env`.
 */
export function runFakeCocoon(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COCOON_') && k !== 'FAKE_COCOON_ALLOW_DEFAULTS') base[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FAKE_COCOON, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : -1), stdout, stderr }));
  });
}
function signalNumber(sig: NodeJS.Signals): number | undefined {
  return ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[sig];
}
