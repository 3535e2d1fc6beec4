/**
 * Which cocoon failures are worth retrying. Pure; the table is documented in
 * the README ("Retry table") and tested row by row.
 */
export interface CocoonFailureRule {
  code: `E_COCOON_${string}`;
  match: RegExp;
  permanent: boolean;
  hint: string;
}

export const COCOON_FAILURE_TABLE: readonly CocoonFailureRule[] = [
  { code: 'E_COCOON_SNAPSHOT_NOT_FOUND', match: /snapshot\b.*\bnot found|no such snapshot/i, permanent: true, hint: 'the snapshot does not exist on this host' },
  { code: 'E_COCOON_SNAPSHOT_NOT_OWNED', match: /does not belong to|not owned by/i, permanent: true, hint: 'restore needs one of the VM\'s own snapshots' },
  { code: 'E_COCOON_VM_NOT_FOUND', match: /\bvm\b.*\bnot found|no such vm/i, permanent: true, hint: 'the VM does not exist on this host' },
  { code: 'E_COCOON_VM_EXISTS', match: /already exists/i, permanent: true, hint: 'pick another --name' },
  { code: 'E_COCOON_NIC_MISMATCH', match: /\bnics?\b.*(mismatch|must match)/i, permanent: true, hint: 'NIC count must match the snapshot' },
  { code: 'E_COCOON_BELOW_SNAPSHOT', match: /(below|lower than|less than|smaller than)\b.*\bsnapshot/i, permanent: true, hint: 'resources may be raised above the snapshot\'s, never lowered' },
  { code: 'E_COCOON_BAD_ARGS', match: /unknown (flag|command|shorthand)|invalid argument/i, permanent: true, hint: 'cocoon rejected the arguments (version mismatch?)' },
  { code: 'E_COCOON_BACKING_FILE', match: /Backing file I\/O error|Could not open backing file/i, permanent: false, hint: 'the base image is missing: the retry re-runs the ensure step first' },
] as const;

export interface CocoonVerdict {
  code: string;
  permanent: boolean;
  hint: string;
}

export function classifyCocoonFailure(stderr: string): CocoonVerdict {
  for (const rule of COCOON_FAILURE_TABLE) {
    if (rule.match.test(stderr)) return { code: rule.code, permanent: rule.permanent, hint: rule.hint };
  }
  return { code: 'E_COCOON_FAILED', permanent: false, hint: 'unrecognised cocoon failure: retried' };
}
