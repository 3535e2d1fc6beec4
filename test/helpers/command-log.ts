/**
 * Every command a Redis server runs, from MONITOR, and which keys each
 * touched, grouped the way Redis Cluster judges them: a single command, a
 * MULTI…EXEC transaction of one client, a Lua script with every command it
 * ran (MONITOR shows those with source "lua", right after the EVAL/EVALSHA).
 * Keys come from the server itself: COMMAND INFO's key positions, and
 * COMMAND GETKEYS for commands whose keys move (EVAL, XREAD, …).
 * On a Cluster, run one per node.
 */
import { Redis } from 'ioredis';

export interface LoggedCommand {
  args: string[];
  /** "127.0.0.1:port" of the client, or "lua". */
  source: string;
}

/** A unit Redis Cluster requires to stay in one slot, with the keys it touched. */
export interface CommandUnit {
  kind: 'command' | 'multi' | 'script';
  /** What ran, for messages: the command (a script: its EVALSHA and the commands it ran). */
  text: string;
  keys: string[];
  /** Pub/sub channels (PUBLISH, SUBSCRIBE…): not keys. */
  channels: string[];
}

const CHANNEL_COMMANDS = new Set(['publish', 'subscribe', 'unsubscribe', 'psubscribe', 'punsubscribe', 'spublish', 'ssubscribe', 'sunsubscribe']);
const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

export class CommandLog {
  readonly commands: LoggedCommand[] = [];
  private monitor: Awaited<ReturnType<Redis['monitor']>> | undefined;

  private constructor(private readonly url: string) {}

  static async start(url: string): Promise<CommandLog> {
    const log = new CommandLog(url);
    log.monitor = await new Redis(url).monitor();
    log.monitor.on('monitor', (_time: string, args: string[], source: string) => log.commands.push({ args, source }));
    return log;
  }

  stop(): void {
    this.monitor?.disconnect();
    this.monitor = undefined;
  }

  /** The logged commands as units (single commands, transactions, scripts), keys resolved by the server. */
  async units(): Promise<CommandUnit[]> {
    const admin = new Redis(this.url);
    try {
      const keysOf = await keyResolver(admin);
      const units: CommandUnit[] = [];
      const multis = new Map<string, CommandUnit>();
      let script: { unit: CommandUnit; source: string } | undefined;
      for (const c of this.commands) {
        const name = c.args[0]!.toLowerCase();
        if (c.source === 'lua') {
          if (!script) throw new Error(`a Lua command without its script: ${c.args.join(' ')}`);
          const keys = await keysOf(c.args);
          script.unit.keys.push(...keys);
          script.unit.text += ` | ${c.args.join(' ').slice(0, 120)}`;
          multis.get(script.source)?.keys.push(...keys);
          continue;
        }
        if (name === 'multi') {
          multis.set(c.source, { kind: 'multi', text: 'MULTI', keys: [], channels: [] });
          continue;
        }
        if (name === 'exec' || name === 'discard') {
          const m = multis.get(c.source);
          if (m) units.push(m);
          multis.delete(c.source);
          continue;
        }
        const channels = CHANNEL_COMMANDS.has(name) ? (name === 'publish' || name === 'spublish' ? [c.args[1]!] : c.args.slice(1)) : [];
        const keys = channels.length ? [] : await keysOf(c.args);
        const unit: CommandUnit = { kind: SCRIPT_COMMANDS.has(name) ? 'script' : 'command', text: c.args.map((a) => (a.length > 80 ? `${a.slice(0, 40)}…` : a)).join(' ').slice(0, 300), keys, channels };
        // Lua lines follow their script at once: anything else in between ends it.
        script = SCRIPT_COMMANDS.has(name) ? { unit, source: c.source } : undefined;
        const m = multis.get(c.source);
        if (m) {
          m.keys.push(...keys);
          m.channels.push(...channels);
          m.text += ` | ${unit.text.slice(0, 120)}`;
        }
        units.push(unit);
      }
      return units;
    } finally {
      admin.disconnect();
    }
  }
}

/** args → the keys they name, as the server sees it (cached per command name; GETKEYS for movable keys). */
async function keyResolver(admin: Redis): Promise<(args: string[]) => Promise<string[]>> {
  const info = new Map<string, { first: number; last: number; step: number; movable: boolean; subcommands: boolean } | null>();
  return async (args) => {
    const name = args[0]!.toLowerCase();
    if (!info.has(name)) {
      const [row] = (await admin.call('COMMAND', 'INFO', name)) as Array<[string, number, string[], number, number, number, unknown, unknown, unknown, unknown[]] | null>;
      info.set(name, row ? { first: row[3], last: row[4], step: row[5], movable: row[2].includes('movablekeys'), subcommands: Array.isArray(row[9]) && row[9].length > 0 } : null);
    }
    const spec = info.get(name);
    if (!spec) return [];
    if (spec.movable || (spec.subcommands && spec.first === 0)) {
      try {
        return (await admin.call('COMMAND', 'GETKEYS', ...args)) as string[];
      } catch {
        return []; // "the command has no key arguments" (CLIENT SETNAME, SCRIPT LOAD, …)
      }
    }
    if (spec.first === 0) return [];
    const last = spec.last < 0 ? args.length + spec.last : spec.last;
    const keys: string[] = [];
    for (let i = spec.first; i <= last && i < args.length; i += spec.step) keys.push(args[i]!);
    return keys;
  };
}
