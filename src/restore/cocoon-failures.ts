/**
 * Which cocoon failures are worth retrying. Pure. Every error text in the
 * contract (`../shared/reference/cocoon-cli.md` §1–§5) has a row; the table is
 * documented in the README ("Retry table") and tested row by row against the
 * contract's own texts. First match wins, so specific rows come first.
 */
export interface CocoonFailureRule {
  code: `E_COCOON_${string}`;
  match: RegExp;
  permanent: boolean;
  hint: string;
  /** Worker settings (config keys) that may be the cause; the worker shows their variables. */
  settings?: readonly string[];
}

export const COCOON_FAILURE_TABLE: readonly CocoonFailureRule[] = [
  // The base image is gone: the hypervisor cannot open the backing file. The retry ensures the base first.
  { code: 'E_COCOON_BACKING_FILE', match: /Backing file I\/O error|Could not open backing file/i, permanent: false, hint: 'the base image is missing: the retry ensures it first' },
  // §1 process conventions: arguments and configuration.
  { code: 'E_COCOON_BAD_ARGS', match: /unknown (shorthand )?flag|flag needs an argument|invalid argument ".*" for "|bad flag syntax|unknown command ".*" for "cocoon"|accepts \d+ arg\(s\), received \d+|requires at least \d+ arg\(s\)/i, permanent: true, hint: 'cocoon rejected the arguments (fleetq and cocoon versions out of step?)' },
  { code: 'E_COCOON_CONFIG', match: /^Error: (read config: |config: )|Unknown Level String/m, permanent: true, hint: "cocoon cannot load its configuration: check the worker's cocoon --config file and the directories", settings: ['cocoonConfig'] },
  // §3/§4 validation, in cocoon's order.
  { code: 'E_COCOON_SNAPSHOT_NOT_FOUND', match: /snapshot not found/i, permanent: true, hint: 'the snapshot does not exist on this host' },
  { code: 'E_COCOON_VM_NOT_FOUND', match: /VM not found/, permanent: true, hint: 'the VM does not exist on this host' },
  { code: 'E_COCOON_AMBIGUOUS_REF', match: /ambiguous ref/i, permanent: true, hint: 'the name matches several VMs or snapshots: use the full name or ID' },
  { code: 'E_COCOON_INVALID_SIZE', match: /invalid --(memory|storage) ".*": invalid (suffix|size)/, permanent: true, hint: 'a size cocoon cannot parse' },
  { code: 'E_COCOON_BELOW_SNAPSHOT', match: /below snapshot minimum/, permanent: true, hint: "resources may be raised above the snapshot's, never lowered" },
  { code: 'E_COCOON_INVALID_NAME', match: /vm name cannot be empty|vm name ".*" is invalid/, permanent: true, hint: 'the VM name breaks cocoon\'s rule ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$' },
  { code: 'E_COCOON_BELOW_MINIMUM', match: /--(cpu|memory|storage) must be at least|--(disk-)?queue-size must be non-negative/, permanent: true, hint: "below cocoon's minimum (1 vCPU, 512M memory, 10G storage)" },
  { code: 'E_COCOON_TOO_MANY_CPUS', match: /vCPUs exceeds host cores/, permanent: true, hint: 'more vCPUs than this host has cores' },
  { code: 'E_COCOON_VM_EXISTS', match: /vm name ".*" already exists/, permanent: true, hint: 'another VM already has this name: pick another name or remove it (cocoon vm rm)' },
  { code: 'E_COCOON_SNAPSHOT_NOT_OWNED', match: /does not belong to VM/, permanent: true, hint: "restore needs one of the VM's own snapshots" },
  { code: 'E_COCOON_NIC_MISMATCH', match: /nic count mismatch/i, permanent: true, hint: 'the NIC count must match the snapshot' },
  { code: 'E_COCOON_VM_NOT_RUNNING', match: /must be running to restore/, permanent: true, hint: 'the VM is not running: start it (cocoon vm start) and retry' },
  { code: 'E_COCOON_NETWORK', match: /^Error: (init|configure) network: /m, permanent: true, hint: 'CNI network set-up failed: check the CNI conflist and plugins (--cni-conf-dir)' },
  // Hypervisor launch and runtime: transient.
  { code: 'E_COCOON_HYPERVISOR', match: /launch CH: |vm\.restore: |vm\.resume: |hot-swap NICs: |snapshot preflight: |resize COW: /, permanent: false, hint: 'the hypervisor failed to start the VM: retried' },
] as const;

export interface CocoonVerdict {
  code: `E_COCOON_${string}`;
  permanent: boolean;
  hint: string;
  settings?: readonly string[] | undefined;
}

/** Classify cocoon's stderr (its `Error: …` lines). Unknown failures are transient. */
export function classifyCocoonFailure(stderr: string): CocoonVerdict {
  for (const rule of COCOON_FAILURE_TABLE) {
    if (rule.match.test(stderr)) return { code: rule.code, permanent: rule.permanent, hint: rule.hint, settings: rule.settings };
  }
  return { code: 'E_COCOON_FAILED', permanent: false, hint: 'unrecognised cocoon failure: retried' };
}
