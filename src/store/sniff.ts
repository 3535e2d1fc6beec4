/**
 * What is this body? Looks at the first bytes of a download, as cocoon does,
 * and decides whether it can become a blob and whether it needs converting.
 * Pure.
 */

/** How many leading bytes `sniff` wants to see (it copes with fewer at end of body). */
export const SNIFF_BYTES = 512;

export type Sniffed =
  | { kind: 'qcow2'; version: number; hasBackingFile: boolean; needsConversion: boolean }
  | { kind: 'raw'; needsConversion: true }
  | { kind: 'rejected'; reason: string };

const SIGNATURES: Array<[string, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['zip', [0x50, 0x4b, 0x03, 0x04]],
  ['7z', [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]],
];

function startsWith(buf: Uint8Array, sig: number[]): boolean {
  return buf.length >= sig.length && sig.every((b, i) => buf[i] === b);
}

function looksLikeMarkup(buf: Uint8Array): boolean {
  const text = Buffer.from(buf.subarray(0, 256)).toString('latin1').replace(/^\uFEFF/, '').trimStart().toLowerCase();
  return text.startsWith('<!doctype') || text.startsWith('<html') || text.startsWith('<?xml') || text.startsWith('<head') || text.startsWith('<body');
}

/** @param head the first bytes of the body (up to SNIFF_BYTES); `total` the full body length when known. */
export function sniff(head: Uint8Array, total = head.length): Sniffed {
  if (total < 4) return { kind: 'rejected', reason: `body is only ${total} byte${total === 1 ? '' : 's'} (not an image)` };
  if (looksLikeMarkup(head)) return { kind: 'rejected', reason: 'body is HTML/XML, not a disk image (an error or login page?)' };
  for (const [name, sig] of SIGNATURES) {
    if (startsWith(head, sig)) {
      return { kind: 'rejected', reason: `body is ${name}-compressed; cloudimg does not auto-decompress (serve the raw or qcow2 image)` };
    }
  }
  if (startsWith(head, [0x51, 0x46, 0x49, 0xfb]) && head.length >= 16) {
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const version = view.getUint32(4);
    const hasBackingFile = view.getBigUint64(8) !== 0n;
    return { kind: 'qcow2', version, hasBackingFile, needsConversion: version < 3 || hasBackingFile };
  }
  return { kind: 'raw', needsConversion: true };
}
