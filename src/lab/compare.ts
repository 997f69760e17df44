// `lacquer lab compare`: every scenario against every available target, one after the other (the proxies
// share the machine with the origins and the load generator, never with each other), then the report:
// REPORT.md, report.html, results.json and the generated configs under configs/<scenario>/.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LAUNCHERS } from './proxies/index.ts';
import type { Target } from './proxies/types.ts';
import { htmlReport } from './report-html.ts';
import { markdownReport, summaryTable, type ReportMeta } from './report-markdown.ts';
import { runScenario, type RunResult } from './runner.ts';
import type { Scenario } from './scenario.ts';

export type CompareOptions = { scenarios: Scenario[]; targets: Target[]; short: boolean; outDir: string; basePort?: number; log?: (line: string) => void };

export async function compare(opts: CompareOptions): Promise<RunResult[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const skipped: string[] = [];
  const failures: string[] = [];
  const versions = [`Lacquer (node ${process.version})`];
  const runnable: Target[] = [];
  const seen = new Set<string>();
  for (const t of opts.targets) {
    const a = LAUNCHERS[t.kind].available();
    if (a.ok) {
      runnable.push(t);
      if (!seen.has(t.kind) && t.kind !== 'lacquer') versions.push(t.kind === 'nginx' ? `nginx ${a.version}` : a.version);
    } else if (!seen.has(t.kind)) {
      skipped.push(`${t.kind}: ${a.why} (install: ${a.install})`);
      log(`skipping ${t.kind}: ${a.why}. Install it with:\n  ${a.install}`);
    }
    seen.add(t.kind);
  }
  const results: RunResult[] = [];
  const configsDir = path.join(opts.outDir, 'configs');
  for (const s of opts.scenarios) {
    const spec = s.build(opts.short);
    log(`▶ ${spec.name}: ${spec.title} (${spec.endMs / 1000} s per proxy)`);
    for (const t of runnable) {
      try {
        const r = await runScenario(spec, t, { short: opts.short, basePort: opts.basePort, log });
        results.push(r);
        const dir = path.join(configsDir, spec.name);
        mkdirSync(dir, { recursive: true });
        writeFileSync(path.join(dir, r.config.fileName), r.config.text.split(r.dir).join('RUN_DIR'));
        const sm = r.summary;
        log(`  ${t.label}: ${sm.requests} requests, ${sm.errors} errors, ${sm.corrupted} corrupted, ${r.origin.total} origin requests, p99 ${sm.latency.p99} ms${r.notes.length ? ` — ${r.notes.join('; ')}` : ''}`);
      } catch (e) {
        failures.push(`${spec.name} × ${t.label}: ${(e as Error).message}`);
        log(`  ${t.label}: FAILED — ${(e as Error).message}`);
      }
    }
  }
  const meta: ReportMeta = {
    generatedAt: new Date().toISOString(),
    short: opts.short,
    machine: `Machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}; proxy, origins and load generator share it.`,
    versions,
    skipped,
    failures,
  };
  mkdirSync(opts.outDir, { recursive: true });
  writeFileSync(path.join(opts.outDir, 'results.json'), `${JSON.stringify({ meta, results: results.map(({ dir: _dir, ...r }) => r) }, null, 1)}\n`);
  writeReport(opts.outDir, results, meta);
  process.stdout.write(`${summaryTable(results)}\n`);
  log(`report: ${path.join(opts.outDir, 'REPORT.md')}, ${path.join(opts.outDir, 'report.html')}`);
  return results;
}

function writeReport(outDir: string, results: readonly RunResult[], meta: ReportMeta): void {
  writeFileSync(path.join(outDir, 'REPORT.md'), markdownReport(results, meta));
  writeFileSync(path.join(outDir, 'report.html'), htmlReport(results, meta));
}

/** Renders REPORT.md and report.html again from the results.json of an earlier compare (no run). */
export function renderReport(outDir: string): void {
  const { meta, results } = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as { meta: ReportMeta; results: RunResult[] };
  writeReport(outDir, results, meta);
}
