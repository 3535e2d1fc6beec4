/**
 * A Dockerfile read the way the builder reads it, for what the tests check:
 * line continuations joined, comments dropped, instructions split into
 * stages, exec-form (JSON) arguments parsed, COPY's flags and sources
 * separated from its destination. Not a full BuildKit parser: no heredocs,
 * no ARG substitution (the tests fail loudly if those appear).
 */
import { posix } from 'node:path';

export interface Instruction {
  keyword: string;
  /** The raw argument text. */
  args: string;
  /** For ENTRYPOINT/CMD/RUN/SHELL/VOLUME: the argv when written in exec (JSON) form; undefined for the shell form. */
  exec?: string[];
  line: number;
}

export interface Copy {
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}

export interface Stage {
  base: string;
  name?: string;
  instructions: Instruction[];
  /** WORKDIR in effect at the end of the stage ('/' if none). */
  workdir: string;
  copies: Array<Copy & { destAbs: string }>;
  /** The last USER of the stage, if any. */
  user?: string;
  entrypoint?: Instruction;
  cmd?: Instruction;
}

function execForm(args: string): string[] | undefined {
  if (!args.trimStart().startsWith('[')) return undefined;
  const v: unknown = JSON.parse(args);
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`not a JSON array of strings: ${args}`);
  return v;
}

function parseCopy(ins: Instruction): Copy {
  let rest = ins.args.trim();
  let from: string | undefined;
  for (let m; (m = /^--([\w-]+)(?:=(\S+))?\s+/.exec(rest)); rest = rest.slice(m[0].length)) {
    if (m[1] === 'from') from = m[2];
  }
  const parts = execForm(rest) ?? rest.split(/\s+/);
  if (parts.length < 2) throw new Error(`line ${ins.line}: COPY needs a source and a destination: ${ins.args}`);
  return { ...(from !== undefined ? { from } : {}), sources: parts.slice(0, -1), dest: parts.at(-1)!, line: ins.line };
}

export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i]!;
    if (/^\s*(#|$)/.test(line)) continue;
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      line = line.replace(/\\\s*$/, ' ');
      i++;
      if (!/^\s*#/.test(lines[i]!)) line += lines[i]!;
    }
    const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(line);
    if (!m) throw new Error(`line ${start}: not an instruction: ${line}`);
    if (/<<\w/.test(m[2]!)) throw new Error(`line ${start}: heredocs are not understood by this parser`);
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    const ins: Instruction = { keyword, args, line: start };
    if (['ENTRYPOINT', 'CMD', 'RUN', 'SHELL', 'VOLUME'].includes(keyword)) {
      const exec = execForm(args);
      if (exec) ins.exec = exec;
    }
    instructions.push(ins);
  }
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: FROM ${ins.args}`);
      stages.push({ base: m[1]!, ...(m[2] ? { name: m[2] } : {}), instructions: [], workdir: '/', copies: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) {
      if (ins.keyword === 'ARG') continue;
      throw new Error(`line ${ins.line}: ${ins.keyword} before FROM`);
    }
    stage.instructions.push(ins);
    if (ins.keyword === 'WORKDIR') stage.workdir = posix.resolve(stage.workdir, ins.args);
    if (ins.keyword === 'USER') stage.user = ins.args;
    if (ins.keyword === 'ENTRYPOINT') stage.entrypoint = ins;
    if (ins.keyword === 'CMD') stage.cmd = ins;
    if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const c = parseCopy(ins);
      stage.copies.push({ ...c, destAbs: posix.resolve(stage.workdir, c.dest) });
    }
  }
  return stages;
}

/**
 * Where a path inside a stage came from: a COPY of it (or of a directory
 * above it) from the build context or from another stage. `undefined` when
 * no COPY put it there (it must then be made by a RUN).
 */
export function copiedFrom(stage: Stage, absPath: string): { copy: Stage['copies'][number]; source: string } | undefined {
  for (const copy of [...stage.copies].reverse()) {
    for (const src of copy.sources) {
      const base = posix.basename(src);
      // `COPY a b c ./` puts each source under the destination directory; `COPY src ./src` names the target.
      const target = copy.sources.length > 1 || copy.dest.endsWith('/') ? posix.join(copy.destAbs, base) : copy.destAbs;
      if (absPath === target || absPath.startsWith(`${target}/`)) return { copy, source: posix.join(src, posix.relative(target, absPath)) };
    }
  }
  return undefined;
}
