/** Result rows, the people's table, and bench/results.json. */
import type { Summary } from './stats.js';

export interface Row {
  /** Scenario the row belongs to (several rows may share one). */
  scenario: string;
  /** What is measured, e.g. "cold pull: wall". */
  name: string;
  /** fleetq's figure: the median of the measured runs. */
  value: number | null;
  min?: number | undefined;
  max?: number | undefined;
  /** The baseline measured in the same run (median), when there is one. */
  baseline: number | null;
  baselineMin?: number | undefined;
  baselineMax?: number | undefined;
  /** value / baseline (medians), when there is a baseline. */
  ratio: number | null;
  unit: string;
  goal: string;
  /** true = goal met, false = missed, null = reported only (no goal). */
  pass: boolean | null;
  /** Set when the scenario crashed instead of producing a figure. */
  error?: string | undefined;
  details?: Record<string, unknown> | undefined;
}

export function row(r: Omit<Row, 'value' | 'min' | 'max' | 'baseline' | 'baselineMin' | 'baselineMax' | 'ratio'> & { value: Summary | number | null; baseline?: Summary | number | null; ratio?: number | null }): Row {
  const v = r.value;
  const b = r.baseline ?? null;
  const value = v === null ? null : typeof v === 'number' ? v : v.median;
  const baseline = b === null ? null : typeof b === 'number' ? b : b.median;
  return {
    ...r,
    value,
    min: v !== null && typeof v === 'object' ? v.min : undefined,
    max: v !== null && typeof v === 'object' ? v.max : undefined,
    baseline,
    baselineMin: b !== null && typeof b === 'object' ? b.min : undefined,
    baselineMax: b !== null && typeof b === 'object' ? b.max : undefined,
    ratio: r.ratio !== undefined ? r.ratio : value !== null && baseline ? value / baseline : null,
  };
}

export function errorRow(scenario: string, err: unknown): Row {
  const message = err instanceof Error ? err.message : String(err);
  return { scenario, name: `${scenario}: crashed`, value: null, baseline: null, ratio: null, unit: '', goal: '', pass: false, error: message };
}

/** Significant-enough digits: 12345 → "12,345", 12.345 → "12.3", 0.1234 → "0.123". */
export function fmt(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  const a = Math.abs(n);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function cell(v: number | null, min: number | undefined, max: number | undefined, unit: string): string {
  if (v === null) return '—';
  const u = unit ? ` ${unit}` : '';
  return min !== undefined && max !== undefined && (min !== v || max !== v) ? `${fmt(v)}${u} [${fmt(min)}–${fmt(max)}]` : `${fmt(v)}${u}`;
}

export function passText(r: Row): string {
  if (r.error) return 'ERROR';
  return r.pass === null ? 'report' : r.pass ? 'pass' : 'MISSED';
}

export function tableCells(r: Row): string[] {
  return [
    r.name,
    r.error ? `error: ${r.error.slice(0, 80)}` : cell(r.value, r.min, r.max, r.unit),
    cell(r.baseline, r.baselineMin, r.baselineMax, r.unit),
    r.ratio === null ? '—' : fmt(r.ratio),
    r.goal || '—',
    passText(r),
  ];
}

const HEAD = ['scenario', 'fleetq (median [min–max])', 'baseline (median [min–max])', 'ratio', 'goal', 'pass'];

export function textTable(rows: Row[]): string {
  const cells = [HEAD, ...rows.map(tableCells)];
  const widths = HEAD.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i]!)).join(' │ ').trimEnd();
  const sep = widths.map((w) => '─'.repeat(w)).join('─┼─');
  return [line(HEAD), sep, ...rows.map((r) => line(tableCells(r)))].join('\n');
}

export function markdownTable(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${HEAD.join(' | ')} |`,
    `|${HEAD.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${tableCells(r).map(esc).join(' | ')} |`),
  ].join('\n');
}
