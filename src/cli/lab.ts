// `lacquer lab origin|run|compare`: the resilience lab (issue 6). origin runs fault-injecting origins as a
// process; run plays scenarios against one or more proxies; compare plays every scenario against every
// available proxy and config and writes the report (docs/lab/REPORT.md, docs/lab/report.html).
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { compare, renderReport } from '../lab/compare.ts';
import { judge } from '../lab/goals.ts';
import { parseBehaviourOption, runOriginProcess } from '../lab/origin-process.ts';
import { LAUNCHERS, parseTargets, type Target } from '../lab/proxies/index.ts';
import { summaryTable } from '../lab/report-markdown.ts';
import { runScenario, type RunResult } from '../lab/runner.ts';
import { findScenario, SCENARIOS } from '../lab/scenarios/index.ts';
import type { Scenario } from '../lab/scenario.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

function scenariosOrExit(names: string[]): Scenario[] {
  if (names.length === 0) return [...SCENARIOS];
  return names.map((n) => {
    const s = findScenario(n);
    if (!s) {
      process.stderr.write(`unknown scenario "${n}"; scenarios: ${SCENARIOS.map((x) => x.name).join(', ')}\n`);
      process.exit(2);
    }
    return s;
  });
}

function targetsOrExit(spec: string): Target[] {
  try {
    return parseTargets(spec);
  } catch (e) {
    process.stderr.write(`--proxy: ${(e as Error).message}\n`);
    process.exit(2);
  }
}

/** Ctrl-C / SIGTERM: exit through process.exit so every ProcessGroup kills its children (origins, proxies). */
function exitOnSignals(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
}

export function registerLab(lab: Command): void {
  lab.description('the resilience lab: fault-injecting origins, scenarios, and a side-by-side comparison with Varnish and nginx');

  lab
    .command('origin')
    .description('run fault-injecting origins (one per --port) until SIGTERM; control: PUT /__lab/behaviour?path=…, GET /__lab/stats, POST /__lab/reset; SIGUSR2 toggles refusing connections')
    .requiredOption('-p, --port <port>', 'port to listen on (repeatable)', collect, [])
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('-b, --behaviour <json>', 'a behaviour for every path, or {"/path": behaviour, "*": default}, e.g. {"kind":"error","probability":0.3}')
    .option('--keepalive <ms>', 'idle keep-alive timeout of the origins (ms)')
    .option('--seed <n>', 'seed for probabilistic behaviours')
    .action(async (o: { port: string[]; host: string; behaviour?: string; keepalive?: string; seed?: string }) => {
      let behaviours;
      try {
        behaviours = o.behaviour ? parseBehaviourOption(o.behaviour) : undefined;
      } catch (e) {
        process.stderr.write(`--behaviour: ${(e as Error).message}\n`);
        process.exit(2);
      }
      await runOriginProcess({
        ports: o.port.map(Number),
        host: o.host,
        behaviours,
        keepAliveTimeoutMs: o.keepalive === undefined ? undefined : Number(o.keepalive),
        seed: o.seed === undefined ? undefined : Number(o.seed),
      });
    });

  lab
    .command('run')
    .description(`play scenarios against proxies and print what the clients saw; scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}, fleet (3 Lacquer instances on Redis; needs redis-server)`)
    .argument('<scenario...>', 'scenario names, or "all"')
    .option('--proxy <list>', 'lacquer, varnish, nginx, all, or target ids like varnish-tuned, nginx-default, lacquer-default (comma-separated)', 'lacquer')
    .option('--short', 'short durations (≤ ~10 s per scenario)')
    .option('--json <file>', 'write the full results (timelines included) as JSON')
    .option('--keep', 'keep each run directory (generated configs, proxy and origin logs, samples)')
    .option('--base-port <n>', 'use ports n, n+1, … when free (stable configs); default: ephemeral ports')
    .action(async (names: string[], o: { proxy: string; short?: boolean; json?: string; keep?: boolean; basePort?: string }) => {
      exitOnSignals();
      if (names.includes('fleet')) {
        // Issue 13: a fleet of Lacquer processes on Redis, its own runner (src/lab/fleet-lab.ts).
        const { runFleetLab, formatFleetLab } = await import('../lab/fleet-lab.ts');
        const r = await runFleetLab({ short: o.short ?? false, log: (l) => process.stderr.write(`${l}\n`) });
        process.stdout.write(`${formatFleetLab(r)}\n`);
        if (o.json) writeFileSync(o.json, JSON.stringify(r, null, 1));
        names = names.filter((n) => n !== 'fleet');
        if (names.length === 0) return;
      }
      const scenarios = scenariosOrExit(names.includes('all') ? [] : names);
      const targets = targetsOrExit(o.proxy);
      const results: RunResult[] = [];
      for (const t of targets) {
        const a = LAUNCHERS[t.kind].available();
        if (!a.ok) process.stderr.write(`skipping ${t.label}: ${a.why}. Install it with:\n  ${a.install}\n`);
      }
      const runnable = targets.filter((t) => LAUNCHERS[t.kind].available().ok);
      for (const s of scenarios) {
        const spec = s.build(o.short ?? false);
        process.stderr.write(`▶ ${spec.name}: ${spec.title} (${spec.endMs / 1000} s)\n`);
        for (const t of runnable) {
          const r = await runScenario(spec, t, { short: o.short, keep: o.keep, basePort: o.basePort ? Number(o.basePort) : undefined, log: (l) => process.stderr.write(`${l}\n`) });
          results.push(r);
          const sm = r.summary;
          process.stderr.write(
            `  ${t.label}: ${sm.requests} requests, ${sm.errors} errors, ${sm.corrupted} corrupted, ${r.origin.total} origin requests, p99 ${sm.latency.p99} ms${r.notes.length ? ` — ${r.notes.join('; ')}` : ''}\n`,
          );
        }
        for (const r of results.filter((x) => x.scenario === spec.name && x.target.kind === 'lacquer')) {
          const v = judge(r, results.filter((x) => x.scenario === spec.name));
          process.stderr.write(`  goal (${r.target.label}): ${v.met === undefined ? 'n/a' : v.met ? 'met' : 'NOT met'} — ${v.text}\n`);
        }
      }
      process.stdout.write(`${summaryTable(results)}\n`);
      if (o.json) writeFileSync(o.json, JSON.stringify(results, null, 1));
    });

  lab
    .command('compare')
    .description('play every scenario (or those named) against Lacquer, and Varnish and nginx (tuned and defaults) when installed; write the report')
    .argument('[scenario...]', 'scenario names (default: all)')
    .option('--short', 'short durations (≤ ~10 s per scenario)')
    .option('--out <dir>', 'where REPORT.md, report.html, results.json and the generated configs go', 'docs/lab')
    .option('--proxy <list>', 'restrict the targets (see `lab run`)', 'all')
    .option('--base-port <n>', 'ports n, n+1, … when free, so the written configs are stable', '17100')
    .option('--render', 'only render REPORT.md and report.html again from <out>/results.json (no run)')
    .action(async (names: string[], o: { short?: boolean; out: string; proxy: string; basePort: string; render?: boolean }) => {
      if (o.render) return renderReport(o.out);
      exitOnSignals();
      await compare({ scenarios: scenariosOrExit(names), targets: targetsOrExit(o.proxy), short: o.short ?? false, outDir: o.out, basePort: Number(o.basePort) });
    });
}
