/**
 * `fleetq jobs watch` (= `jobs ls --watch`): the listing again every
 * --interval until Ctrl-C.
 *   - On a terminal: the screen is redrawn with the table (like `watch`).
 *   - Otherwise: the first listing, then one line per change (a job appears,
 *     changes state or attempt, or leaves the listed states: completed,
 *     removed…), like `kubectl get -w`. With --json, one JSON object a line.
 */
import { readProgress } from './progress.js';

export interface WatchRow {
  id: string;
  host: string;
  queue: string;
  name: string;
  state: string;
  attemptsMade: number;
  attempts: number;
  /** `42%`, or a restore's phase. */
  progress?: string | undefined;
  reason?: string | undefined;
  when?: number | undefined;
}

export const rowKey = (r: Pick<WatchRow, 'host' | 'queue' | 'id'>) => `${r.host}/${r.queue}/${r.id}`;

/** What the progress column shows for a job's raw progress. Pure. */
export function progressCell(p: unknown): string | undefined {
  const info = readProgress(p);
  if (info.phase) return info.phase;
  if (info.percent !== undefined) return `${Math.floor(info.percent)}%`;
  return undefined;
}

export interface WatchChange {
  row: WatchRow;
  /** The state before, when the job was listed already. */
  prev?: string | undefined;
}

/**
 * Rows that are new or changed since `prev` (state, attempt or progress
 * mark), and keys of rows no longer listed. Pure.
 */
export function diffRows(prev: Map<string, WatchRow> | undefined, rows: WatchRow[]): { changed: WatchChange[]; left: WatchRow[] } {
  const changed: WatchChange[] = [];
  const seen = new Set<string>();
  for (const r of rows) {
    const k = rowKey(r);
    seen.add(k);
    const p = prev?.get(k);
    if (!p) changed.push({ row: r });
    else if (p.state !== r.state || p.attemptsMade !== r.attemptsMade || (r.state === 'active' && quarter(p.progress) !== quarter(r.progress))) changed.push({ row: r, prev: p.state });
  }
  const left = prev ? [...prev.entries()].filter(([k]) => !seen.has(k)).map(([, r]) => r) : [];
  return { changed, left };
}

/** Progress in 25 % steps (or the phase): the line mode reports crossings, not every tick. */
function quarter(p: string | undefined): string | undefined {
  const m = p ? /^(\d+)%$/.exec(p) : null;
  return m ? String(Math.floor(Number(m[1]) / 25) * 25) : p;
}

/** One line for a change: `2025-01-01T12:00:00Z 42 h1/images ensure-image: waiting -> active (attempt 1/5)`. Pure. */
export function changeLine(c: WatchChange, now: number): string {
  const r = c.row;
  const attempt = r.state === 'active' ? `attempt ${r.attemptsMade + 1}/${r.attempts}` : `attempts ${r.attemptsMade}/${r.attempts}`;
  const extra = [attempt, r.state === 'active' && r.progress ? r.progress : undefined].filter(Boolean).join(', ');
  const reason = r.state === 'failed' || (r.state === 'delayed' && r.attemptsMade > 0) ? r.reason : undefined;
  return `${new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z')} ${r.id} ${r.host}/${r.queue} ${r.name}: ${c.prev && c.prev !== r.state ? `${c.prev} -> ` : ''}${r.state} (${extra})${reason ? `: ${reason}` : ''}`;
}
