/** qemu-img conversion to qcow2 v3, exactly as cocoon commits raw or old qcow2 bodies. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ConversionError } from './store-errors.js';

const execFileP = promisify(execFile);

export async function convertToQcow2(qemuImg: string, src: string, dst: string, signal?: AbortSignal): Promise<void> {
  try {
    await execFileP(qemuImg, ['convert', '-O', 'qcow2', '-o', 'compat=1.1', src, dst], {
      signal,
      maxBuffer: 1024 * 1024,
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new ConversionError(`${qemuImg} not found: install qemu-utils (apt-get install qemu-utils) or set FLEETQ_QEMU_IMG`, { cause: err });
    }
    if (signal?.aborted) throw signal.reason ?? err;
    throw new ConversionError(`qemu-img convert failed: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' / ')}`, { cause: err });
  }
}
