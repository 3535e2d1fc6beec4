/**
 * Log lines for machines (no key twice in a line: Elasticsearch rejects such
 * documents) and for people (FLEETQ_LOG_FORMAT).
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { lazyChild } from '../../../src/lib/lazy-log.js';
import { loadConfig } from '../../../src/config/load.js';
import { createLogger, resolveLogFormat } from '../../../src/lib/log.js';

function capture() {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', host: 'h1' }, dest), lines };
}

/** Every key of the line's top-level object, in order, as written (JSON.parse would merge repeats). */
function topKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && line[j + 1] === ':') keys.push(JSON.parse(line.slice(i, j + 1)));
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}

const noRepeats = (keys: string[]) => expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);

describe('no key twice in a line', () => {
  it("a call repeating a child's binding with the same value: written once", () => {
    const { log, lines } = capture();
    log.child({ jobId: 'j1', digest: 'sha256:aa' }).info({ digest: 'sha256:aa', durationMs: 3 }, 'done');
    const keys = topKeys(lines[0]!);
    noRepeats(keys);
    expect(JSON.parse(lines[0]!)).toMatchObject({ host: 'h1', jobId: 'j1', digest: 'sha256:aa', durationMs: 3, msg: 'done' });
  });

  it('with another value: the binding stays, the call\'s value is written as <key>_2', () => {
    const { log, lines } = capture();
    log.child({ digest: 'sha256:aa' }).info({ digest: 'sha256:bb' }, 'other');
    noRepeats(topKeys(lines[0]!));
    expect(JSON.parse(lines[0]!)).toMatchObject({ digest: 'sha256:aa', digest_2: 'sha256:bb' });
  });

  it("the root's host and pid, pino's level and time, and msg next to a message", () => {
    const { log, lines } = capture();
    log.info({ host: 'h1', pid: 1, level: 'x', time: 'y', msg: 'field' }, 'message');
    log.info({ msg: 'only the field' });
    noRepeats(topKeys(lines[0]!));
    noRepeats(topKeys(lines[1]!));
    expect(JSON.parse(lines[0]!)).toMatchObject({ host: 'h1', level: 30, msg: 'message', msg_2: 'field', pid_2: 1, level_2: 'x', time_2: 'y' });
    expect(JSON.parse(lines[1]!).msg).toBe('only the field');
  });

  it('a child of a child re-binding a key; a lazy job logger binding the root\'s host', () => {
    const { log, lines } = capture();
    const base = log.child({ jobId: 'j1', host: 'h1' });
    base.child({ jobId: 'j1', vm: 'vm-1' }).info({ vm: 'vm-1', snapshot: 's' }, 'restore done');
    lazyChild(log, () => ({ jobId: 'j2', host: 'h1', image: 'https://h/x?token=SECRET' })).warn({ image: 'https://h/x?token=SECRET', err: new Error('boom') }, 'failed');
    for (const l of lines) noRepeats(topKeys(l));
    expect(JSON.parse(lines[0]!)).toMatchObject({ host: 'h1', jobId: 'j1', vm: 'vm-1', snapshot: 's' });
    expect(lines[1]).not.toContain('SECRET');
    expect(JSON.parse(lines[1]!)).toMatchObject({ jobId: 'j2', image: 'https://h/x?token=REDACTED', err: { message: 'boom' } });
  });

  it('an Error as the only argument still becomes err + its (redacted) message', () => {
    const { log, lines } = capture();
    log.child({ jobId: 'j' }).error(new Error('GET https://h/x?sig=SECRET failed'));
    noRepeats(topKeys(lines[0]!));
    const l = JSON.parse(lines[0]!);
    expect(l.msg).toBe('GET https://h/x?sig=REDACTED failed');
    expect(l.err.message).toBe(l.msg);
  });
});

describe('FLEETQ_LOG_FORMAT', () => {
  it('auto is pretty on a terminal and json otherwise; json and pretty are what they say', () => {
    expect(resolveLogFormat('auto', { isTTY: true })).toBe('pretty');
    expect(resolveLogFormat('auto', { isTTY: false })).toBe('json');
    expect(resolveLogFormat('auto', {})).toBe('json');
    expect(resolveLogFormat('json', { isTTY: true })).toBe('json');
    expect(resolveLogFormat('pretty', { isTTY: false })).toBe('pretty');
  });

  it('unset: auto; the FLEETQ_LOG_FORMAT variable reaches the logger through the config only', () => {
    expect(resolveLogFormat(undefined, { isTTY: false })).toBe('json');
    expect(resolveLogFormat(undefined, { isTTY: true })).toBe('pretty');
    expect(loadConfig({ FLEETQ_LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(loadConfig({}).logFormat).toBe('auto');
    expect(() => loadConfig({ FLEETQ_LOG_FORMAT: 'nonsense' })).toThrow(/^invalid FLEETQ_LOG_FORMAT \(got "nonsense"\): must be json, pretty or auto$/);
    expect(loadConfig({ NO_COLOR: '1' }).noColor).toBe(true);
    expect(loadConfig({}).noColor).toBe(false);
  });
});
