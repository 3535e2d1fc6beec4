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

/** `30s`, `5m`, `2h`, `7d`, `1500ms` or a bare number of milliseconds → milliseconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new Error(`"${input}" is not a duration`);
    return Math.floor(input);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/.exec(input);
  if (!m) {
    throw new Error(`"${input}" is not a duration (expected e.g. 1500ms, 30s, 5m, 2h, 7d)`);
  }
  return Math.floor(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

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
