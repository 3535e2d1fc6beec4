/**
 * qemu-img conversion to qcow2 v3 (compat=1.1), as cocoon commits raw or old
 * qcow2 bodies, and the re-check of the final blob.
 *
 * Bodies come from untrusted servers, and qemu will happily open host files a
 * body names: a VMDK descriptor's extent (`RW 2048 FLAT "/etc/shadow" 0`), a
 * qcow2 backing file, a qcow2 v3 external data file. Hence, in this order:
 *
 * 1. The header is validated in TypeScript first (image-format.ts:
 *    inspectImageHead) — only raw, or qcow2 with no backing file, no external
 *    data file and no encryption, gets here. qemu-img cannot be asked safely:
 *    with the installed 7.2, `check`, `convert -f qcow2`, and `info` without
 *    `-f` all open the backing file / data file / extent a body names. Both
 *    functions below re-read the header themselves before running qemu-img.
 * 2. The source format is ALWAYS given with `-f`: without it qemu probes the
 *    format, and a body that claims to be a VMDK descriptor gets its extents
 *    opened. `-f raw` never opens anything but the file itself.
 * 3. The source is passed as `json:{"backing":null,"file":{"driver":"file",…}}`:
 *    the file protocol is pinned (a path is never parsed as `nbd:`/`http:`…)
 *    and qemu is told not to open any backing file even if one were declared
 *    (belt and braces: step 1 already refused it). External data files have no
 *    such switch, which is why step 1 must refuse them.
 *
 * qemu-img runs via execFile with argument arrays, never a shell.
 */
import { type ExecFileException, execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { HEAD_BYTES, inspectImageHead } from './image-format.js';
import { BodyRejectedError, ConversionError } from './store-errors.js';

interface QemuRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `qemu-img check` exit codes. */
const CHECK_OK = 0;
const CHECK_NOT_COMPLETED = 1;
const CHECK_CORRUPTIONS = 2;
const CHECK_LEAKS_ONLY = 3; // leaked clusters waste space but are harmless: accepted
const CHECK_UNSUPPORTED = 63;

/** OS-level failures: not the body's fault, worth a retry. */
const TRANSIENT_ERRNO =
  /No space left on device|Disk quota exceeded|Input\/output error|Too many open files|Cannot allocate memory|Read-only file system|Permission denied|No such file or directory|Resource temporarily unavailable|Stale file handle/i;

/**
 * How qemu-img is told to open a source image: the `file` protocol pinned,
 * and no backing file ever opened. Exported for tests.
 */
export function qemuSourceSpec(path: string): string {
  return `json:${JSON.stringify({ backing: null, file: { driver: 'file', filename: resolve(path) } })}`;
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' / ');
}

function runQemuImg(qemuImg: string, args: string[], signal?: AbortSignal): Promise<QemuRun> {
  return new Promise((done, fail) => {
    execFile(qemuImg, args, { signal, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' }, (err: ExecFileException | null, stdout, stderr) => {
      if (!err) return done({ code: 0, stdout, stderr });
      if (err.code === 'ENOENT') {
        return fail(new ConversionError(`${qemuImg} not found: install qemu-utils (apt-get install qemu-utils) or point the worker at qemu-img`, { cause: err, settings: ['qemuImg'] }));
      }
      if (signal?.aborted) return fail(signal.reason ?? err);
      if (typeof err.code === 'number') return done({ code: err.code, stdout, stderr });
      fail(new ConversionError(`qemu-img ${args[0]} failed: ${lastLines(stderr || err.message)}`, { cause: err }));
    });
  });
}

/** Read the first HEAD_BYTES of `path` and insist it is an acceptable qcow2 header. */
async function assertQcow2Header(path: string, what: string, requireV3: boolean): Promise<void> {
  const fh = await open(path, 'r');
  let head: Buffer;
  let total: number;
  try {
    total = (await fh.stat()).size;
    head = Buffer.alloc(Math.min(HEAD_BYTES, total));
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    head = head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const f = inspectImageHead(head, total);
  if (f.kind === 'rejected') throw new BodyRejectedError(`${what}: ${f.reason}`);
  if (f.kind !== 'qcow2') throw new BodyRejectedError(`${what}: not a qcow2 image (no qcow2 header)`);
  if (requireV3 && (f.version !== 3 || f.needsConversion)) {
    throw new BodyRejectedError(`${what}: not a clean qcow2 v3 image (${f.version === 3 ? 'incompatible features set: dirty, zstd or extended L2' : `version ${f.version}`})`);
  }
}

/**
 * Convert `src` to a qcow2 v3 (compat=1.1) at `dst` with an EXPLICIT source
 * format; qemu never probes. A qcow2 source must have passed inspectImageHead
 * (its header is read and checked again here before qemu-img runs).
 *
 * Throws BodyRejectedError when the body is at fault (unacceptable header,
 * or qemu-img cannot open the qcow2 structures), ConversionError (transient)
 * otherwise (qemu-img missing, disk full, I/O error…), or the abort reason.
 */
export async function convertToQcow2(qemuImg: string, src: string, dst: string, format: 'raw' | 'qcow2', signal?: AbortSignal): Promise<void> {
  if (format !== 'raw' && format !== 'qcow2') throw new TypeError(`convertToQcow2: unsupported source format ${JSON.stringify(format)}`);
  signal?.throwIfAborted();
  if (format === 'qcow2') await assertQcow2Header(src, 'qcow2 body', false);
  const r = await runQemuImg(qemuImg, ['convert', '-f', format, '-O', 'qcow2', '-o', 'compat=1.1', qemuSourceSpec(src), resolve(dst)], signal);
  if (r.code === 0) return;
  const msg = lastLines(r.stderr || `exit code ${r.code}`);
  // qemu-img could not make sense of the qcow2 structures (bad L1/refcount
  // tables, …): retrying the same bytes cannot help.
  const sourceUnreadable = r.stderr.includes(`Could not open '${qemuSourceSpec(src)}'`) || /Marking image as corrupt/.test(r.stderr);
  if (format === 'qcow2' && sourceUnreadable && !TRANSIENT_ERRNO.test(r.stderr)) {
    throw new BodyRejectedError(`qemu-img cannot read the qcow2 body: ${msg}`);
  }
  throw new ConversionError(`qemu-img convert -f ${format} failed: ${msg}`);
}

interface QemuInfo {
  format?: string;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  encrypted?: boolean;
  'dirty-flag'?: boolean;
  'format-specific'?: { type?: string; data?: { compat?: string; 'data-file'?: string; 'data-file-raw'?: boolean; corrupt?: boolean; encrypt?: unknown } };
}

interface QemuCheck {
  'check-errors'?: number;
  corruptions?: number;
  leaks?: number;
}

function parseJson<T>(what: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new ConversionError(`${what} printed no JSON: ${lastLines(text) || '(empty)'}`, { cause: err });
  }
}

/**
 * Re-check the final blob before it is committed: its header in TypeScript
 * (clean qcow2 v3: no backing file, data file or encryption), then
 * `qemu-img info -f qcow2 --output=json` (format qcow2, compat 1.1, no
 * backing-filename, no data-file, not encrypted, dirty or corrupt) and
 * `qemu-img check -f qcow2 --output=json` (no corruptions; leaked clusters
 * are fine). Throws BodyRejectedError naming what was found.
 */
export async function verifyFinalQcow2(qemuImg: string, path: string, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const what = 'final qcow2';
  await assertQcow2Header(path, what, true);

  const info = await runQemuImg(qemuImg, ['info', '-f', 'qcow2', '--output=json', qemuSourceSpec(path)], signal);
  if (info.code !== 0) {
    if (TRANSIENT_ERRNO.test(info.stderr)) throw new ConversionError(`qemu-img info failed: ${lastLines(info.stderr)}`);
    throw new BodyRejectedError(`${what}: qemu-img info cannot open it: ${lastLines(info.stderr || `exit code ${info.code}`)}`);
  }
  const i = parseJson<QemuInfo>('qemu-img info', info.stdout);
  const data = i['format-specific']?.data;
  const problems: string[] = [];
  if (i.format !== 'qcow2') problems.push(`format ${JSON.stringify(i.format)}`);
  if (data?.compat !== '1.1') problems.push(`compat ${JSON.stringify(data?.compat)} (want "1.1")`);
  const backing = i['backing-filename'] ?? i['full-backing-filename'] ?? i['backing-filename-format'];
  if (backing !== undefined) problems.push(`a backing file ${JSON.stringify(i['backing-filename'] ?? i['full-backing-filename'] ?? '')}`);
  if (data?.['data-file'] !== undefined || data?.['data-file-raw'] === true) problems.push(`an external data file ${JSON.stringify(data?.['data-file'] ?? '')}`);
  if (i.encrypted || data?.encrypt !== undefined) problems.push('encryption');
  if (data?.corrupt) problems.push('the corrupt flag');
  if (i['dirty-flag']) problems.push('the dirty flag');
  if (problems.length) throw new BodyRejectedError(`${what}: qemu-img info found ${problems.join(', ')}`);

  const check = await runQemuImg(qemuImg, ['check', '-f', 'qcow2', '--output=json', qemuSourceSpec(path)], signal);
  switch (check.code) {
    case CHECK_OK:
    case CHECK_LEAKS_ONLY:
      break;
    case CHECK_CORRUPTIONS: {
      const c = parseJson<QemuCheck>('qemu-img check', check.stdout);
      throw new BodyRejectedError(`${what}: qemu-img check found ${c.corruptions ?? 'some'} corruption(s)`);
    }
    case CHECK_NOT_COMPLETED:
      if (TRANSIENT_ERRNO.test(check.stderr)) throw new ConversionError(`qemu-img check failed: ${lastLines(check.stderr)}`);
      throw new BodyRejectedError(`${what}: qemu-img check could not complete: ${lastLines(check.stderr || `exit code ${check.code}`)}`);
    case CHECK_UNSUPPORTED:
      throw new ConversionError(`qemu-img check: format does not support checks (exit ${CHECK_UNSUPPORTED}) — is ${qemuImg} really qemu-img?`);
    default:
      throw new ConversionError(`qemu-img check exited ${check.code}: ${lastLines(check.stderr)}`);
  }
  const c = parseJson<QemuCheck>('qemu-img check', check.stdout);
  if ((c.corruptions ?? 0) > 0) throw new BodyRejectedError(`${what}: qemu-img check found ${c.corruptions} corruption(s)`);
  if ((c['check-errors'] ?? 0) > 0) throw new BodyRejectedError(`${what}: qemu-img check hit ${c['check-errors']} error(s) while checking`);
}
