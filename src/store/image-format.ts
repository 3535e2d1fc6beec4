/**
 * What is this body? Looks at the first bytes of a download and decides
 * whether it may become a blob and whether it needs converting. Pure: no I/O.
 *
 * Bodies come from untrusted servers, and several disk formats can make qemu
 * open *other* files named inside the body: a qcow2 backing file, a qcow2 v3
 * external data file, a VMDK descriptor's extents, … We accept exactly what
 * cocoon accepts — raw and qcow2 (v2 or v3) — and validate a qcow2 header
 * here, in TypeScript, BEFORE qemu-img ever touches the file (see convert.ts,
 * which additionally always names the source format with `-f`, so qemu never
 * probes). Everything qcow2 can reference outside itself is refused:
 * backing files, external data files, encryption (needs a key secret).
 *
 * Reference: qemu docs/interop/qcow2.txt (all fields big-endian).
 */

/** How many leading bytes the caller keeps for inspection. */
export const HEAD_BYTES = 4096;

export type ImageFormat =
  /** v2, or a v3 with incompatible features set (dirty, zstd, extended L2) → convert to a clean v3 (compat=1.1); a clean v3 is used as-is. */
  | { kind: 'qcow2'; version: 2 | 3; needsConversion: boolean }
  | { kind: 'raw'; needsConversion: true }
  | { kind: 'rejected'; reason: string };

export interface Qcow2Header {
  version: number;
  backingFileOffset: bigint;
  backingFileSize: number;
  clusterBits: number;
  /** Virtual size in bytes. */
  size: bigint;
  /** 0 none, 1 AES, 2 LUKS. */
  cryptMethod: number;
  /** v3 only (0 for v2). */
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  /** 72 for v2; the header_length field for v3. */
  headerLength: number;
}

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const QCOW2_V2_HEADER = 72;
const QCOW2_V3_HEADER = 104;
const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21;

/** qcow2 v3 incompatible feature bits. */
const INCOMPAT_DIRTY = 1n << 0n;
const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_DATA_FILE = 1n << 2n;
const INCOMPAT_COMPRESSION = 1n << 3n;
const INCOMPAT_EXTL2 = 1n << 4n;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
/** qcow2 v3 autoclear bit 1: "raw external data" — only meaningful with an external data file. */
const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

const ACCEPTED = 'only raw and qcow2 are accepted';

const COMPRESSION_SIGNATURES: Array<[string, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['zip', [0x50, 0x4b, 0x03, 0x04]],
  ['7z', [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]],
];

const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));

/** Other disk formats qemu knows, by their leading magic (as qemu's own probes see them). */
const FORMAT_SIGNATURES: Array<[string, number[]]> = [
  ['VMDK', ascii('KDMV')], // hosted sparse extent
  ['VMDK', ascii('COWD')], // ESX / VMware 3 sparse extent
  ['VHDX', ascii('vhdxfile')],
  ['VPC/VHD', ascii('conectix')],
  ['QED', [...ascii('QED'), 0x00]],
  ['LUKS', [...ascii('LUKS'), 0xba, 0xbe]],
  ['Parallels', ascii('WithoutFreeSpace')],
  ['Parallels', ascii('WithouFreSpacExt')],
  ['bochs', ascii('Bochs Virtual HD Image')],
  ['cloop', ascii('#!/bin/sh\n#V2.0 Format\n')],
];

const VDI_SIGNATURE_OFFSET = 0x40;
const VDI_SIGNATURE = 0xbeda107f; // little-endian

function startsWith(buf: Uint8Array, sig: number[], at = 0): boolean {
  return buf.length >= at + sig.length && sig.every((b, i) => buf[at + i] === b);
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

function looksLikeMarkup(buf: Uint8Array): boolean {
  const text = Buffer.from(buf.subarray(0, 256)).toString('latin1').replace(/^\uFEFF/, '').replace(/^\xef\xbb\xbf/, '').trimStart().toLowerCase();
  return text.startsWith('<!doctype') || text.startsWith('<html') || text.startsWith('<?xml') || text.startsWith('<head') || text.startsWith('<body');
}

/**
 * A VMDK text descriptor, recognised as qemu's vmdk_probe does (leading
 * comment and blank lines, then `version=1|2|3`), or by its usual first line.
 */
function isVmdkDescriptor(buf: Uint8Array): boolean {
  const text = Buffer.from(buf).toString('latin1');
  if (text.startsWith('# Disk DescriptorFile')) return true;
  for (const line of text.split('\n')) {
    const l = line.replace(/\r$/, '');
    if (l.startsWith('#') || /^ *$/.test(l)) continue;
    return /^version=[123]$/.test(l);
  }
  return false;
}

/**
 * Text: no NUL, only tab/CR/LF, printable ASCII and valid UTF-8 sequences.
 * Returns the decoded text, or undefined for binary. A multibyte sequence cut
 * off at the end of the head is fine when the body continues past it.
 */
function asText(head: Uint8Array, truncated: boolean): string | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(head, { stream: truncated });
  } catch {
    return undefined;
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x09 || c === 0x0a || c === 0x0d || (c >= 0x20 && c <= 0x7e) || c >= 0x80) continue;
    return undefined;
  }
  return text;
}

function firstLineQuote(text: string): string | undefined {
  const line = text.split(/\r\n|\n|\r/).find((l) => l.trim() !== '');
  if (line === undefined) return undefined;
  const chars = Array.from(line.trim());
  return JSON.stringify(chars.slice(0, 80).join('')) + (chars.length > 80 ? '…' : '');
}

/** The qcow2 header fields this module checks; undefined when `head` is not qcow2 or too short for its version's header. */
export function parseQcow2Header(head: Uint8Array): Qcow2Header | undefined {
  if (head.length < QCOW2_V2_HEADER) return undefined;
  const v = view(head);
  if (v.getUint32(0) !== QCOW2_MAGIC) return undefined;
  const version = v.getUint32(4);
  const hasV3Fields = version >= 3;
  if (hasV3Fields && head.length < QCOW2_V3_HEADER) return undefined;
  return {
    version,
    backingFileOffset: v.getBigUint64(8),
    backingFileSize: v.getUint32(16),
    clusterBits: v.getUint32(20),
    size: v.getBigUint64(24),
    cryptMethod: v.getUint32(32),
    incompatibleFeatures: hasV3Fields ? v.getBigUint64(72) : 0n,
    compatibleFeatures: hasV3Fields ? v.getBigUint64(80) : 0n,
    autoclearFeatures: hasV3Fields ? v.getBigUint64(88) : 0n,
    headerLength: hasV3Fields ? v.getUint32(100) : QCOW2_V2_HEADER,
  };
}

function rejected(reason: string): ImageFormat {
  return { kind: 'rejected', reason };
}

/** The backing file name as stored in the head, quoted for a message (it is attacker-controlled). */
function backingName(head: Uint8Array, h: Qcow2Header): string {
  const start = Number(h.backingFileOffset);
  if (h.backingFileOffset > BigInt(head.length) || h.backingFileSize === 0) return '';
  const end = Math.min(head.length, start + Math.min(h.backingFileSize, 1023));
  const name = Buffer.from(head.subarray(start, end)).toString('latin1');
  return ` ${JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name)}`;
}

function inspectQcow2(head: Uint8Array): ImageFormat {
  if (head.length < 8) return rejected(`qcow2 header is truncated (${head.length} bytes)`);
  const version = view(head).getUint32(4);
  if (version === 1) return rejected('body is a qcow (version 1) image; only raw and qcow2 (v2, v3) are accepted');
  if (version !== 2 && version !== 3) return rejected(`qcow2 version ${version} is not supported (only 2 and 3)`);
  const need = version === 2 ? QCOW2_V2_HEADER : QCOW2_V3_HEADER;
  const h = parseQcow2Header(head);
  if (!h) return rejected(`qcow2 v${version} header is truncated (${head.length} of ${need} bytes)`);

  if (h.backingFileOffset !== 0n) {
    return rejected(
      `qcow2 has a backing file${backingName(head, h)} (offset ${hex(h.backingFileOffset)}, ${h.backingFileSize} bytes) — a body may not reference other files`,
    );
  }
  if (h.cryptMethod !== 0) {
    const how = h.cryptMethod === 1 ? 'AES' : h.cryptMethod === 2 ? 'LUKS' : `method ${h.cryptMethod}`;
    return rejected(`qcow2 is encrypted (${how}) — encrypted images are not accepted`);
  }
  if (h.clusterBits < MIN_CLUSTER_BITS || h.clusterBits > MAX_CLUSTER_BITS) {
    return rejected(`qcow2 cluster_bits ${h.clusterBits} is out of range (${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS})`);
  }
  if (version === 3) {
    const inc = h.incompatibleFeatures;
    if (inc & INCOMPAT_DATA_FILE) return rejected('qcow2 has an external data file (incompatible feature bit 2) — a body may not reference other files');
    if (h.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) {
      return rejected('qcow2 declares raw external data (autoclear bit 1), which implies an external data file — a body may not reference other files');
    }
    if (inc & INCOMPAT_CORRUPT) return rejected('qcow2 is marked corrupt (incompatible feature bit 1)');
    const unknown = inc & ~INCOMPAT_KNOWN;
    if (unknown) return rejected(`qcow2 has unknown incompatible features ${hex(unknown)}`);
    if (h.headerLength < QCOW2_V3_HEADER) return rejected(`qcow2 v3 header_length ${h.headerLength} is below ${QCOW2_V3_HEADER}`);
    if (h.headerLength % 8 !== 0) return rejected(`qcow2 v3 header_length ${h.headerLength} is not a multiple of 8`);
    if (h.headerLength > 2 ** h.clusterBits) return rejected(`qcow2 v3 header_length ${h.headerLength} exceeds the cluster size`);
  }
  return { kind: 'qcow2', version, needsConversion: version === 2 || h.incompatibleFeatures !== 0n };
}

/**
 * @param head the first min(HEAD_BYTES, total) bytes of the body
 * @param total the whole body length (known at the end of the download)
 */
export function inspectImageHead(head: Uint8Array, total: number): ImageFormat {
  if (total < 4 || head.length < 4) {
    const n = Math.min(total, head.length);
    return rejected(`body is only ${n} byte${n === 1 ? '' : 's'} (not an image)`);
  }
  if (looksLikeMarkup(head)) return rejected('body is HTML/XML, not a disk image (an error or login page?)');
  for (const [name, sig] of COMPRESSION_SIGNATURES) {
    if (startsWith(head, sig)) {
      return rejected(`body is ${name}-compressed; cloudimg does not auto-decompress (serve the raw or qcow2 image)`);
    }
  }
  if (view(head).getUint32(0) === QCOW2_MAGIC) return inspectQcow2(head);
  for (const [name, sig] of FORMAT_SIGNATURES) {
    if (startsWith(head, sig)) return rejected(`body is a ${name} image; ${ACCEPTED}`);
  }
  if (head.length >= VDI_SIGNATURE_OFFSET + 4 && view(head).getUint32(VDI_SIGNATURE_OFFSET, true) === VDI_SIGNATURE) {
    return rejected(`body is a VDI image; ${ACCEPTED}`);
  }
  if (isVmdkDescriptor(head)) return rejected(`body is a VMDK image (text descriptor); ${ACCEPTED}`);
  const text = asText(head, head.length < total);
  if (text !== undefined) {
    const quote = firstLineQuote(text);
    return rejected(quote === undefined ? 'body is blank text, not a disk image' : `body is text, not a disk image: ${quote}`);
  }
  return { kind: 'raw', needsConversion: true };
}
