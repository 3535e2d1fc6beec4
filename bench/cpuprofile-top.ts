/**
 * Where a `.cpuprofile` (node --cpu-prof, e.g. from BENCH_CPU_PROF) spent its
 * time: self time by package/file and by function, and optionally the
 * inclusive time of the functions whose name or file matches a pattern.
 *
 *   node dist/bench/cpuprofile-top.js FILE.cpuprofile [TOP=40] [INCLUSIVE_REGEX]
 *   e.g. node dist/bench/cpuprofile-top.js /tmp/prof/cache-hit.*.cpuprofile 40 'dist/src|zod|prom-client'
 *
 * Divide by the number of jobs the process ran for µs per job (a quick
 * cache-hit run: warm-up + 3 × 5k, then warm-up + 3 × 1k = 24,000 jobs per side).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

process.stdout.on('error', () => process.exit(0)); // piped into head
const [file, topArg, pattern] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpuprofile-top.js FILE.cpuprofile [TOP] [INCLUSIVE_REGEX]\n');
  process.exit(2);
}
const top = Number(topArg ?? 40);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const time = new Map<number, number>();
for (const [i, id] of p.samples.entries()) time.set(id, (time.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
const total = [...time.values()].reduce((a, b) => a + b, 0);

const short = (url: string) => url.replace(/.*node_modules\//, 'nm/').replace(/.*\/dist\//, 'dist/');
const fnKey = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber}`;
const fileKey = (n: ProfileNode) => {
  const u = n.callFrame.url;
  if (!u) return n.callFrame.functionName;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (pkg) return `nm/${pkg[1]}`;
  return u.startsWith('node:') ? `node:${u.slice(5).split('/')[0]}` : short(u);
};

const self = new Map<string, number>();
const files = new Map<string, number>();
const incl = new Map<string, number>();
const re = pattern ? new RegExp(pattern) : undefined;
for (const [id, t] of time) {
  const n = byId.get(id)!;
  self.set(fnKey(n), (self.get(fnKey(n)) ?? 0) + t);
  files.set(fileKey(n), (files.get(fileKey(n)) ?? 0) + t);
  if (!re) continue;
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = fnKey(byId.get(cur)!);
    if (seen.has(k) || !re.test(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + t);
  }
}

const print = (m: Map<string, number>, title: string) => {
  process.stdout.write(`== ${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${(v / 1000).toFixed(1).padStart(9)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}\n`);
  }
};
process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms sampled\n`);
print(files, 'self time by package / file');
print(self, 'self time by function');
if (re) print(incl, `inclusive time, functions matching /${pattern}/`);
