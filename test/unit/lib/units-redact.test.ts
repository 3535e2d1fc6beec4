import { describe, expect, it } from 'vitest';
import { redactDeep, redactUrl } from '../../../src/lib/redact.js';
import { formatDuration, parseDuration, parseSize } from '../../../src/lib/units.js';

describe('units', () => {
  it('parses sizes in binary units', () => {
    expect(parseSize('8G')).toBe(8 * 1024 ** 3);
    expect(parseSize('512M')).toBe(512 * 1024 ** 2);
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('4096')).toBe(4096);
    expect(() => parseSize('8X')).toThrow(/not a size/);
    expect(() => parseSize('-1G')).toThrow(/not a size/);
  });
  it('parses durations', () => {
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration(250)).toBe(250); // a number from code is milliseconds
    expect(() => parseDuration('soon')).toThrow(/not a duration/);
    expect(() => parseDuration('5x')).toThrow(/not a duration/);
    expect(() => parseDuration('1h 30m')).toThrow(/not a duration/);
  });
  it('refuses a duration without a unit, saying how to write it', () => {
    expect(() => parseDuration('250')).toThrow('"250" has no unit: write 250ms, 250s, 250m, 250h or 250d');
    expect(() => parseDuration('7')).toThrow(/has no unit/);
    expect(() => parseDuration('1.5')).toThrow(/has no unit/);
  });
  it('formats durations for people', () => {
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(4_200)).toBe('4s');
    expect(formatDuration(90_000)).toBe('1m30s');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(7 * 86_400_000 + 3_600_000 * 5)).toBe('7d5h');
  });
});

describe('redaction', () => {
  it('removes URL credentials and secret query parameters', () => {
    const r = redactUrl('https://bob:hunter2@epoch.example/dl/win11?token=abc&X-Amz-Signature=def&tag=latest');
    expect(r).not.toMatch(/hunter2|abc|def/);
    expect(r).toBe('https://REDACTED@epoch.example/dl/win11?token=REDACTED&X-Amz-Signature=REDACTED&tag=latest');
  });
  it('leaves clean URLs and non-URLs untouched', () => {
    expect(redactUrl('https://epoch.example/dl/win11')).toBe('https://epoch.example/dl/win11');
    expect(redactUrl('not a url')).toBe('not a url');
  });
  it('redacts nested job data', () => {
    const out = redactDeep({ image: 'https://u:p@h/x', nested: [{ u: 'http://h/?access_token=zzz' }], n: 1 });
    expect(JSON.stringify(out)).not.toMatch(/:p@|zzz/);
    expect(out.nested[0]!.u).toBe('http://h/?access_token=REDACTED');
    expect(out.n).toBe(1);
  });
});
