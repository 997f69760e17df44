// Reads a V8 .cpuprofile (node --cpu-prof) and prints the functions with the most self time, and the
// most inclusive time, so a profile can be read without a browser: node bench/top-self.ts FILE [N]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
type Profile = { nodes: Node[]; samples: number[]; timeDeltas: number[] };

export function summarise(file: string, top = 25): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map<number, Node>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const key = (n: Node) => {
    const f = n.callFrame;
    const url = f.url.startsWith('file://') ? relative(process.cwd(), new URL(f.url).pathname) : f.url;
    return `${f.functionName || '(anonymous)'} ${url ? `${url}:${f.lineNumber + 1}` : ''}`.trim();
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    const n = byId.get(p.samples[i]);
    if (!n) continue;
    all += dt;
    const k = key(n);
    if (k === '(idle)') idle += dt;
    self.set(k, (self.get(k) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const kk = key(byId.get(id)!);
      if (seen.has(kk)) continue;
      seen.add(kk);
      total.set(kk, (total.get(kk) ?? 0) + dt);
    }
  }
  const busy = all - idle;
  const rows = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([k]) => k !== '(idle)' && k !== '(root)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => `${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`)
      .join('\n');
  return [
    `${file}: ${(all / 1e6).toFixed(1)} s sampled, ${(idle / 1e6).toFixed(1)} s idle; percentages are of busy time`,
    '', 'self time:', rows(self), '', 'inclusive time:', rows(total),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, n] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node bench/top-self.ts FILE.cpuprofile [N]');
    process.exit(2);
  }
  console.log(summarise(file, n ? Number(n) : 25));
}
