/**
 * Output helpers for operator commands: aligned tables, JSON, lines, a
 * progress bar on terminals. Everything printed goes through the redaction
 * of `lib/redact.ts` here, whatever the command passes (job data, failed
 * reasons, logs, stack traces, URLs in keys): commands write through these
 * helpers only.
 */
import { redactDeep, redactUrl } from '../lib/redact.js';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(redactDeep(value), null, 2)}\n`);
}

/** One JSON object on one line (`enqueue --json`). */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(redactDeep(value))}\n`);
}

/** Lines of text for people; a trailing newline is added. */
export function printLine(text: string): void {
  process.stdout.write(`${redactUrl(text)}\n`);
}

export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  if (rows.length === 0) {
    printLine('(none)');
    return;
  }
  const cell = (v: unknown) => redactUrl(v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(redactDeep(v)) : String(v));
  const widths = columns.map((c) => Math.min(80, Math.max(c.length, ...rows.map((r) => cell(r[c]).length))));
  const line = (vals: string[]) => vals.map((v, i) => (i === vals.length - 1 ? v : v.slice(0, widths[i]).padEnd(widths[i]!))).join('  ');
  printLine(line(columns.map((c) => c.toUpperCase())));
  for (const r of rows) printLine(line(columns.map((c) => cell(r[c]))));
}

export function ago(ts: number | undefined, now = Date.now()): string {
  if (!ts) return '';
  const s = Math.round((now - ts) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** A one-line progress bar on stderr when it is a terminal; silent otherwise. */
export function progressBar(label: string, total: number) {
  const tty = process.stderr.isTTY === true;
  let done = 0;
  const draw = () => {
    if (!tty || total === 0) return;
    const width = 30;
    const filled = Math.round((done / total) * width);
    process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`);
  };
  draw();
  return {
    tick() {
      done++;
      draw();
    },
    end() {
      if (tty && total > 0) process.stderr.write('\n');
    },
  };
}
