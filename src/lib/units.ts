/**
 * Parsers for the human units used in configuration and on the command line.
 * Pure; every failure says what was expected.
 */

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  KB: 1024,
  KI: 1024,
  KIB: 1024,
  M: 1024 ** 2,
  MB: 1024 ** 2,
  MI: 1024 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1024 ** 3,
  GI: 1024 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TB: 1024 ** 4,
  TI: 1024 ** 4,
  TIB: 1024 ** 4,
};

/** `20G`, `512M`, `1.5GiB`, `4096` → bytes (binary units, as cocoon). */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new Error(`"${input}" is not a size`);
    return Math.floor(input);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = m?.[2]?.toUpperCase() ?? '';
  const mult = SIZE_UNITS[unit];
  if (!m || mult === undefined) {
    throw new Error(`"${input}" is not a size (expected a number with an optional unit K, M, G or T, e.g. 512M or 20G)`);
  }
  return Math.floor(Number(m[1]) * mult);
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/y;

/**
 * `30s`, `5m`, `2h`, `7d`, `1500ms`, `1h30m` → milliseconds.
 *
 * Text must carry a unit: a bare number (`7`) is refused, because it
 * silently meant milliseconds, and `--older-than 7` removed every job older
 * than 7 ms. `0` is the one exception (it is 0 in every unit), as in Go's
 * time.ParseDuration. A JavaScript number (from code, not from a person) is
 * milliseconds.
 */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new Error(`${input} is not a duration`);
    return Math.floor(input);
  }
  const text = input.trim();
  if (text === '0') return 0;
  if (/^\d+(?:\.\d+)?$/.test(text)) {
    throw new Error(`"${text}" has no unit: write ${text}ms, ${text}s, ${text}m, ${text}h or ${text}d`);
  }
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(text);
    if (!m) break;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = DURATION_PART.lastIndex;
  }
  if (pos === 0 || pos !== text.length) {
    throw new Error(`"${text.length > 40 ? `${text.slice(0, 37)}...` : text}" is not a duration (expected a number with a unit: 1500ms, 30s, 5m, 2h, 7d or 1h30m)`);
  }
  return Math.floor(total);
}

/** Milliseconds → a short human duration: `850ms`, `4s`, `1m30s`, `2h5m`, `3d4h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 999.5) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const parts: Array<[number, string]> = [
    [Math.floor(s / 86_400), 'd'],
    [Math.floor((s % 86_400) / 3600), 'h'],
    [Math.floor((s % 3600) / 60), 'm'],
    [s % 60, 's'],
  ];
  const first = parts.findIndex(([v]) => v > 0);
  return parts
    .slice(first, first + 2)
    .filter(([v]) => v > 0)
    .map(([v, u]) => `${v}${u}`)
    .join('');
}

/** Bytes → `512 B`, `1.5 MiB`, `20.0 GiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
