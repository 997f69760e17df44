// What each feature of a cache hit costs: the server's CPU per request (user + system, this process),
// with one feature at a time switched off by replacing it on the running instance — nothing in the product
// is changed or configured differently. The load generator (wrk, else autocannon) runs in its own process.
// Rounds are interleaved so background load hits every variant alike; figures are medians.
//
//   node bench/hit-costs.ts [--seconds 3] [--rounds 3] [--path /1k]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { validateConfig } from '../src/config/load.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { pickGenerator } from './load.ts';
import { firstJsonLine, start, stopAll, killAllNow } from './procs.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' }, path: { type: 'string', default: '/1k' } } });
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const ROOT = resolve(import.meta.dirname, '..');
process.on('exit', killAllNow);

const dir = mkdtempSync(join(tmpdir(), 'lacquer-hitcost-'));
const origin = start('origin', process.execPath, [join(ROOT, 'bench/origin-process.ts')], { cwd: ROOT });
const originPort = (await firstJsonLine<{ port: number }>(origin)).port;
const config = validateConfig({ listen: '127.0.0.1:0', backends: [{ name: 'o', url: `http://127.0.0.1:${originPort}` }], log: { access: join(dir, 'access.log') }, admin: { listen: '127.0.0.1:0' } });
const proxy: Proxy = await startProxy(config);
const url = `${proxy.url}${args.path}`;
await fetch(url).then((r) => r.arrayBuffer());

type Variant = { name: string; apply(p: Proxy): () => void };
/** Replaces a method on one object for the duration of a variant; returns the undo. */
function off<T extends object>(o: T, k: keyof T & string): () => void {
  const had = Object.prototype.hasOwnProperty.call(o, k);
  const before = o[k];
  (o as Record<string, unknown>)[k] = () => undefined;
  return () => {
    if (had) (o as Record<string, unknown>)[k] = before;
    else delete (o as Record<string, unknown>)[k];
  };
}
const VARIANTS: Variant[] = [
  { name: 'everything on (shipped defaults)', apply: () => () => undefined },
  { name: 'without the access log line', apply: (p) => off(p.ctx.log, 'request') },
  { name: 'without metrics (prom-client)', apply: (p) => off(p.plane.observer.metrics, 'request') },
  { name: 'without timeline + top paths', apply: (p) => {
    const a = off(p.plane.observer.timeline, 'request');
    const b = off(p.plane.observer.paths, 'request');
    return () => (a(), b());
  } },
  { name: 'without the whole observer (metrics, timeline, totals)', apply: (p) => off(p.plane.observer, 'request') },
  { name: 'without access log and observer', apply: (p) => {
    const a = off(p.ctx.log, 'request');
    const b = off(p.plane.observer, 'request');
    return () => (a(), b());
  } },
];

const gen = pickGenerator(undefined);
const results = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
const rps = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
for (let r = 0; r < rounds; r++) {
  for (const v of VARIANTS) {
    const undo = v.apply(proxy);
    const cpu0 = process.cpuUsage();
    const res = await gen.run({ url, seconds, connections: 64, threads: 2 });
    const cpu = process.cpuUsage(cpu0);
    undo();
    results.get(v.name)!.push((cpu.user + cpu.system) / res.requests);
    rps.get(v.name)!.push(res.rps);
    process.stderr.write(`  round ${r + 1} ${v.name}: ${((cpu.user + cpu.system) / res.requests).toFixed(2)} µs/req, ${Math.round(res.rps)} req/s\n`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.get(VARIANTS[0]!.name)!);
console.log(`| variant (${args.path}, ${rounds}×${seconds} s, medians) | server CPU µs/req | saving µs/req | req/s |`);
console.log('|---|---:|---:|---:|');
for (const v of VARIANTS) {
  const m = median(results.get(v.name)!);
  console.log(`| ${v.name} | ${m.toFixed(2)} | ${(base - m).toFixed(2)} | ${Math.round(median(rps.get(v.name)!))} |`);
}
await proxy.stop();
await stopAll();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
