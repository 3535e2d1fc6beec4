/** Payload → cocoon argv. Pure. Every value was validated by the contract; nothing goes through a shell. */
import type { RestorePayload } from '../jobs/contracts/restore.js';

export function cocoonArgs(p: RestorePayload & { name?: string | undefined }): string[] {
  const args = p.kind === 'clone' ? ['vm', 'clone', p.snapshot] : ['vm', 'restore', p.vm!, p.snapshot];
  if (p.kind === 'clone' && p.name) args.push('--name', p.name);
  if (p.cpu !== undefined) args.push('--cpu', String(p.cpu));
  if (p.memory !== undefined) args.push('--memory', p.memory);
  if (p.storage !== undefined) args.push('--storage', p.storage);
  if (p.kind === 'clone' && p.nics !== undefined) args.push('--nics', String(p.nics));
  if (p.onDemand) args.push('--on-demand');
  args.push('-o', 'json');
  return args;
}

export function inspectArgs(vm: string): string[] {
  return ['vm', 'inspect', vm, '-o', 'json'];
}
