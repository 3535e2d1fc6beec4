/**
 * Output helpers for operator commands: aligned tables, JSON, lines, a
 * progress bar on terminals. Everything printed goes through the redaction
 * of `lib/redact.ts` here, whatever the command passes (job data, failed
 * reasons, logs, stack traces, URLs in keys): commands write through these
 * helpers only.
 *
 * JSON is printed only by `printJson`/`printJsonLine`, which commands call
 * only under `--json`; human output renders objects as `key=value` text.
 */
import { redactDeep, redactUrl } from '../lib/redact.js';
import { EXIT } from './exit-codes.js';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(redactDeep(value), null, 2)}\n`);
}

/** One JSON object on one line (`enqueue --json`, `jobs watch --json`). */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(redactDeep(value))}\n`);
}

/** Lines of text for people; a trailing newline is added. */
export function printLine(text: string): void {
  process.stdout.write(`${redactUrl(text)}\n`);
}

/** A line on stderr (notes, warnings, progress lines): redacted like stdout. */
export function printErr(text: string): void {
  process.stderr.write(`${redactUrl(text)}\n`);
}

/** Raw text to stderr, redacted, no newline added (terminal redraws). */
export function writeErr(text: string): void {
  process.stderr.write(redactUrl(text));
}

/** stdin and stderr are both terminals: a person is there to answer prompts (asked on stderr). */
export function interactive(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true;
}

/** A value for people: scalars as text, objects as `k=v k=v`, lists comma-separated. Never JSON. */
export function human(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return v.map((x) => (x !== null && typeof x === 'object' ? `(${human(x)})` : human(x))).join(', ');
  if (typeof v === 'object') {
    return Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined && x !== null)
      .map(([k, x]) => `${k}=${x !== null && typeof x === 'object' ? `(${human(x)})` : human(x)}`)
      .join(' ');
  }
  return String(v);
}

export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  for (const line of tableLines(rows, columns)) printLine(line);
}

/** The lines of an aligned table (header first), or `(none)`. */
export function tableLines(rows: Array<Record<string, unknown>>, columns: string[], maxWidth = 80): string[] {
  if (rows.length === 0) return ['(none)'];
  const cell = (v: unknown) => redactUrl(human(redactDeep(v)));
  const widths = columns.map((c) => Math.min(maxWidth, Math.max(c.length, ...rows.map((r) => cell(r[c]).length))));
  const line = (vals: string[]) => vals.map((v, i) => (i === vals.length - 1 ? v : v.slice(0, widths[i]).padEnd(widths[i]!))).join('  ');
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))];
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

/**
 * A reader that went away (`fleetq jobs ls | head -1`) is not an error: stop
 * quietly, with the exit code so far (0 unless a failure was already set).
 */
export function quietOnEpipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK);
    throw err;
  });
}
