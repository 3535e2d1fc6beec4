/**
 * runCocoon's process handling on real processes: a binary that cannot be
 * started fails at once with its code (it emits no 'exit', only 'error' and
 * 'close'), and stdout beyond the cap is flagged, not silently cut.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CocoonError } from '../../../src/restore/restore-errors.js';
import { runCocoon } from '../../../src/restore/run-cocoon.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetq-run-cocoon-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('runCocoon', () => {
  it('a missing binary is E_COCOON_MISSING (permanent), at once rather than at the timeout', async () => {
    const started = Date.now();
    const err = await runCocoon({ bin: join(dir, 'no-such-cocoon'), args: ['snapshot', 'ls'], timeoutMs: 30_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CocoonError);
    expect(err).toMatchObject({ code: 'E_COCOON_MISSING', permanent: true, message: `cocoon binary not found: ${join(dir, 'no-such-cocoon')} (install cocoon or point the worker at it)` });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a file that is not executable is E_COCOON_SPAWN', async () => {
    const file = join(dir, 'not-executable');
    writeFileSync(file, '#!/bin/sh\necho hi\n');
    chmodSync(file, 0o644);
    const err = await runCocoon({ bin: file, args: ['vm', 'ls'], timeoutMs: 30_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_COCOON_SPAWN' });
  });

  it('stdout over maxStdout is flagged; under it, kept whole', async () => {
    const script = join(dir, 'lines');
    writeFileSync(script, '#!/bin/sh\ni=0\nwhile [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done\n');
    chmodSync(script, 0o755);
    const cut = await runCocoon({ bin: script, args: [], timeoutMs: 30_000, maxStdout: 100 });
    expect(cut.stdoutTruncated).toBe(true);
    expect(cut.stdout.length).toBeLessThan(120);
    const whole = await runCocoon({ bin: script, args: [], timeoutMs: 30_000 });
    expect(whole.stdoutTruncated).toBe(false);
    expect(whole.stdout.split('\n').filter(Boolean)).toHaveLength(200);
  });
});
