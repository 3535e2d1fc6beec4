/**
 * A clone's name is taken: is that VM this job's own earlier attempt
 * (at-least-once delivery: a worker killed after cocoon returned), a clone
 * still in flight, a leftover, or somebody else's VM? Pure.
 *
 * cocoon records nothing about which snapshot a VM was cloned from (§5), so
 * the VM counts as this job's finished clone only when all of these hold:
 * its config.name is the name; its config.image_digest equals the snapshot's
 * image_digest (or both are absent and config.image equals the snapshot's
 * image); it was created after this job first started; it is running.
 */
import type { CocoonSnapshot, CocoonVm } from './cocoon-records.js';

export interface CloneIdentity {
  name: string;
  snapshot: Pick<CocoonSnapshot, 'image' | 'image_digest'>;
  /** When this job first started (worker clock, the same host as cocoon's). */
  jobStartedAt: number;
  now: number;
  /** FLEETQ_COCOON_TIMEOUT: a `creating` record younger than this may be a clone still running. */
  cocoonTimeoutMs: number;
}

export type CloneJudgement =
  | { verdict: 'already-done' }
  | { verdict: 'in-progress'; message: string }
  | { verdict: 'leftover' | 'conflict' | 'not-running'; message: string };

export function judgeExistingClone(vm: CocoonVm, want: CloneIdentity): CloneJudgement {
  const name = want.name;
  const created = vm.created_at ? Date.parse(vm.created_at) : Number.NaN;
  const age = Number.isNaN(created) ? Number.POSITIVE_INFINITY : want.now - created;
  const rm = `remove it with "cocoon vm rm --force ${name}" (same --root-dir) and retry`;

  if (vm.state === 'creating') {
    if (age < want.cocoonTimeoutMs) {
      return { verdict: 'in-progress', message: `VM ${name} (${vm.id}) is still being created (${Math.round(age / 1000)}s old): maybe an earlier attempt's clone is still running; retrying later` };
    }
    return { verdict: 'leftover', message: `VM ${name} (${vm.id}) is a leftover "creating" record from ${vm.created_at ?? 'an unknown time'} (a clone killed mid-way); ${rm}` };
  }
  if (vm.state === 'error') {
    return { verdict: 'leftover', message: `VM ${name} (${vm.id}) exists in state "error" (a failed clone or restore left it); ${rm}` };
  }

  const digestMatches =
    want.snapshot.image_digest || vm.config.image_digest
      ? vm.config.image_digest === want.snapshot.image_digest
      : vm.config.image !== undefined && vm.config.image === want.snapshot.image;
  const ours = vm.config.name === name && digestMatches && created > want.jobStartedAt;
  if (!ours) {
    const why = vm.config.name !== name ? `its name is ${JSON.stringify(vm.config.name)}` : !digestMatches ? `it boots ${vm.config.image_digest ?? vm.config.image ?? 'an unknown image'}, not the snapshot's ${want.snapshot.image_digest ?? want.snapshot.image ?? 'image'}` : `it was created at ${vm.created_at ?? '?'}, before this job first started`;
    return { verdict: 'conflict', message: `a VM named ${name} (${vm.id}) already exists and is not this job's clone (${why}): pick another name, or ${rm}` };
  }
  if (vm.state !== 'running') {
    return { verdict: 'not-running', message: `VM ${name} (${vm.id}) was cloned by an earlier attempt of this job but is "${vm.state}", not running: start it ("cocoon vm start ${name}") or ${rm}` };
  }
  return { verdict: 'already-done' };
}
