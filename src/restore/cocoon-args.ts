/**
 * cocoon argv, from the contract (`../shared/reference/cocoon-cli.md`). Pure.
 * Every value was validated by the job contract; nothing goes through a shell.
 * Global flags go on every call: cocoon's root is chosen only by --root-dir
 * (or COCOON_ROOT_DIR / a --config file), never by FLEETQ_ROOT.
 */
import type { ClonePayload, RestoreVmPayload } from '../jobs/contracts/restore.js';

export interface CocoonGlobals {
  /** = FLEETQ_ROOT: the directory whose cloudimg/ fleetq fills. */
  rootDir: string;
  /** FLEETQ_COCOON_CONFIG → --config */
  config?: string | undefined;
  /** FLEETQ_COCOON_RUN_DIR → --run-dir (cocoon's default does not follow the root) */
  runDir?: string | undefined;
  /** FLEETQ_COCOON_LOG_DIR → --log-dir */
  logDir?: string | undefined;
}

export function globalArgs(g: CocoonGlobals): string[] {
  const args: string[] = [];
  if (g.config) args.push('--config', g.config);
  args.push('--root-dir', g.rootDir);
  if (g.runDir) args.push('--run-dir', g.runDir);
  if (g.logDir) args.push('--log-dir', g.logDir);
  return args;
}

/** `vm clone SNAPSHOT --name N [...] -o json` (§3). `--name` always: cocoon's default name never takes effect. */
export function cloneArgs(p: ClonePayload, g: CocoonGlobals): string[] {
  const args = ['vm', 'clone', p.snapshot, '--name', p.name];
  if (p.cpu !== undefined) args.push('--cpu', String(p.cpu));
  if (p.memory !== undefined) args.push('--memory', p.memory);
  if (p.storage !== undefined) args.push('--storage', p.storage);
  if (p.nics !== undefined) args.push('--nics', String(p.nics));
  if (p.onDemand) args.push('--on-demand');
  args.push('-o', 'json');
  return [...args, ...globalArgs(g)];
}

/** `vm restore VM SNAPSHOT [...] -o json` (§4): no --nics, --name or --pull there. */
export function restoreArgs(p: RestoreVmPayload, g: CocoonGlobals): string[] {
  const args = ['vm', 'restore', p.vm, p.snapshot];
  if (p.cpu !== undefined) args.push('--cpu', String(p.cpu));
  if (p.memory !== undefined) args.push('--memory', p.memory);
  if (p.storage !== undefined) args.push('--storage', p.storage);
  if (p.onDemand) args.push('--on-demand');
  args.push('-o', 'json');
  return [...args, ...globalArgs(g)];
}

/** `vm inspect VM` (§5): no flags besides the global ones; the output is always JSON. */
export function vmInspectArgs(vm: string, g: CocoonGlobals): string[] {
  return ['vm', 'inspect', vm, ...globalArgs(g)];
}

/** `snapshot inspect SNAPSHOT` (§7): no flags; always JSON. */
export function snapshotInspectArgs(snapshot: string, g: CocoonGlobals): string[] {
  return ['snapshot', 'inspect', snapshot, ...globalArgs(g)];
}

/** `snapshot ls --format json` (§7): every snapshot, oldest first; `No snapshots found.` when there is none. */
export function snapshotListArgs(g: CocoonGlobals): string[] {
  return ['snapshot', 'ls', '--format', 'json', ...globalArgs(g)];
}
