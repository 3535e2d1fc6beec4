import type { ChildProcess } from 'node:child_process';

/**
 * Resolves with [code, signal] when the child exits. Unlike events.once(child,
 * 'exit') it never rejects on a spawn 'error' (callers handle that separately),
 * so it cannot become an unhandled rejection.
 */
export function childExit(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve([child.exitCode, child.signalCode]);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
}
