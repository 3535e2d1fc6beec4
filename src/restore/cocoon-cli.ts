/**
 * The cocoon CLI as fleetq uses it: `snapshot inspect`, `snapshot ls`, `vm inspect`,
 * `vm clone`, `vm restore`, each with the global flags that point cocoon at
 * fleetq's store. Exit status alone proves nothing (`cocoon vm <typo>` prints
 * help and exits 0), so every call must also print the JSON it promises.
 */
import type { ClonePayload, RestoreVmPayload } from '../jobs/contracts/restore.js';
import { cloneArgs, type CocoonGlobals, restoreArgs, snapshotInspectArgs, snapshotListArgs, vmInspectArgs } from './cocoon-args.js';
import { CocoonSnapshot, CocoonVm, parseCocoonJson, parseSnapshotList } from './cocoon-records.js';
import { CocoonError, CocoonOutputError } from './restore-errors.js';
import { runCocoon } from './run-cocoon.js';
import type { z } from 'zod';

export interface CocoonCliOptions {
  bin: string;
  globals: CocoonGlobals;
  /** FLEETQ_COCOON_TIMEOUT: limit for clone/restore; inspections get at most a minute. */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
}

export interface CallContext {
  signal?: AbortSignal | undefined;
  onLine?: ((stream: 'stdout' | 'stderr', line: string) => void) | undefined;
  /** Told the argv before each call (job log). */
  onCall?: ((argv: string[]) => void) | undefined;
}

const INSPECT_TIMEOUT_MS = 60_000;
/** `snapshot ls` prints every record (about 500 bytes each): room for tens of thousands, and a bound. */
const LIST_MAX_STDOUT = 32 * 1024 * 1024;

/**
 * cocoon's environment: ours without fleetq's own settings and secrets (board
 * password, Redis URL…), with NO_COLOR so its log lines are plain text.
 */
export function cocoonEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('FLEETQ_') && k !== 'REDIS_URL') out[k] = v;
  out.NO_COLOR = '1';
  return out;
}

export class CocoonCli {
  private readonly env: NodeJS.ProcessEnv;
  constructor(private readonly opts: CocoonCliOptions) {
    this.env = cocoonEnv(opts.env);
  }

  get bin(): string {
    return this.opts.bin;
  }

  /** `snapshot inspect S` → the snapshot record; not found is a permanent CocoonError. */
  async inspectSnapshot(ref: string, ctx: CallContext = {}): Promise<CocoonSnapshot> {
    return this.json(snapshotInspectArgs(ref, this.opts.globals), CocoonSnapshot, 'a snapshot record', ctx, INSPECT_TIMEOUT_MS);
  }

  /** `vm inspect VM` → the VM record, or undefined when cocoon says `VM not found`. */
  async inspectVm(ref: string, ctx: CallContext = {}): Promise<CocoonVm | undefined> {
    try {
      return await this.json(vmInspectArgs(ref, this.opts.globals), CocoonVm, 'a VM record', ctx, INSPECT_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof CocoonError && err.code === 'E_COCOON_VM_NOT_FOUND') return undefined;
      throw err;
    }
  }

  /**
   * `snapshot ls --format json` → every snapshot record, oldest first (§7).
   * Records that do not parse are left out and counted in `invalid`.
   */
  async listSnapshots(ctx: CallContext = {}): Promise<{ snapshots: CocoonSnapshot[]; invalid: number }> {
    const args = snapshotListArgs(this.opts.globals);
    ctx.onCall?.([this.opts.bin, ...args]);
    const run = await runCocoon({ bin: this.opts.bin, args, timeoutMs: INSPECT_TIMEOUT_MS, signal: ctx.signal, env: this.env, onLine: ctx.onLine, maxStdout: LIST_MAX_STDOUT });
    if (run.stdoutTruncated) throw new CocoonOutputError(`cocoon snapshot ls printed more than ${LIST_MAX_STDOUT / 1024 / 1024} MiB: too many snapshots to read`);
    const list = parseSnapshotList(run.stdout);
    if (list === undefined) {
      const shown = run.stdout.trim().split('\n').slice(0, 2).join(' / ').slice(0, 160);
      throw new CocoonOutputError(
        `cocoon snapshot ls exited 0 but printed ${shown ? `"${shown}"` : 'nothing'} instead of a snapshot list: is ${this.opts.bin} a cocoon that knows this command?`,
        { settings: ['cocoonBin'] },
      );
    }
    return list;
  }

  async clone(p: ClonePayload, ctx: CallContext = {}): Promise<CocoonVm> {
    return this.json(cloneArgs(p, this.opts.globals), CocoonVm, 'the cloned VM record', ctx, this.opts.timeoutMs);
  }

  async restore(p: RestoreVmPayload, ctx: CallContext = {}): Promise<CocoonVm> {
    return this.json(restoreArgs(p, this.opts.globals), CocoonVm, 'the restored VM record', ctx, this.opts.timeoutMs);
  }

  private async json<S extends z.ZodType>(args: string[], schema: S, what: string, ctx: CallContext, timeoutMs: number): Promise<z.output<S>> {
    ctx.onCall?.([this.opts.bin, ...args]);
    const run = await runCocoon({ bin: this.opts.bin, args, timeoutMs, signal: ctx.signal, env: this.env, onLine: ctx.onLine });
    const parsed = parseCocoonJson(schema, run.stdout);
    if (parsed === undefined) {
      const shown = run.stdout.trim().split('\n').slice(0, 2).join(' / ').slice(0, 160);
      throw new CocoonOutputError(
        `cocoon ${args.slice(0, 2).join(' ')} exited 0 but printed ${shown ? `"${shown}"` : 'nothing'} instead of ${what}: is ${this.opts.bin} a cocoon that knows this command?`,
        { settings: ['cocoonBin'] },
      );
    }
    return parsed;
  }
}
