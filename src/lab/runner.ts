// One scenario against one proxy target: start the origins (processes), the proxy (a process, generated
// config), then the load generator (a process) with t=0 two seconds ahead; inject the faults at their
// times; collect what the clients saw and what the origins received; stop everything by PID.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OriginFleet, type FleetSnapshot } from './fleet.ts';
import { perSecond, summarize, type Summary } from './metrics.ts';
import type { LoadPlan, Sample } from './plan.ts';
import { freePorts, logTail, ProcessGroup } from './processes.ts';
import { LAUNCHERS } from './proxies/index.ts';
import type { LaunchInput, RunningProxy, Target } from './proxies/types.ts';
import type { FaultAction, GoalKind, ScenarioSpec } from './scenario.ts';

const LOADGEN = fileURLToPath(new URL('./loadgen.ts', import.meta.url));
/** Lead time between starting the load generator and t=0 (Node start-up, module loading). */
const LEAD_MS = 2000;
const SAMPLE_EVERY_MS = 250;
export const HEALTH_PATH = '/__lab/health';

export type OriginResult = {
  total: number;
  byOrigin: number[];
  /** Origin requests that arrived inside the fault window. */
  duringFault: number;
  /** For the scenario's watched paths: total and inside the fault window. */
  watched: Record<string, { total: number; duringFault: number }>;
  perSecond: number[];
};

export type RunResult = {
  scenario: string;
  title: string;
  goal: GoalKind;
  target: Target;
  short: boolean;
  startedAt: string;
  window: { faultFromMs: number; faultToMs: number; endMs: number };
  summary: Summary;
  origin: OriginResult;
  /** The run directory (removed after the run unless kept); generated configs name paths inside it. */
  dir: string;
  /** The generated proxy config (file name and text), as run. */
  config: { fileName: string; text: string };
  /** Things that went wrong with the run itself (a proxy crash, a late load generator...). */
  notes: string[];
};

export type RunOptions = {
  /** The spec was built with short durations (recorded in the result). */
  short?: boolean;
  /** Ports base (proxy), base+1… (origins) when free, for stable configs; ephemeral otherwise. */
  basePort?: number;
  /** Keep the run directory (configs, logs, samples) and say where it is. */
  keep?: boolean;
  log?: (line: string) => void;
};

const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

export async function runScenario(spec: ScenarioSpec, target: Target, opts: RunOptions = {}): Promise<RunResult> {
  const log = opts.log ?? (() => undefined);
  const launcher = LAUNCHERS[target.kind];
  const avail = launcher.available();
  if (!avail.ok) throw new Error(`${target.label} is not available (${avail.why}); install: ${avail.install}`);

  const dir = mkdtempSync(path.join(os.tmpdir(), `lacquer-lab-${spec.name}-${target.id}-`));
  chmodSync(dir, 0o755); // varnishd and nginx workers run as other users
  const group = new ProcessGroup();
  // Also on Ctrl-C (the CLI exits through process.exit): the run directory can hold a gigabyte of logs.
  const removeDir = () => {
    if (opts.keep) return;
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // a dying daemon may still write into it; the OS cleans tmp
    }
  };
  process.once('exit', removeDir);
  const notes: string[] = [];
  let proxy: RunningProxy | undefined;
  let fleet: OriginFleet | undefined;
  const startedAt = new Date().toISOString();
  try {
    const ports = await freePorts(spec.origins.count + 1, opts.basePort);
    const proxyPort = ports[0]!;
    fleet = new OriginFleet(group, dir, ports.slice(1), { behaviours: spec.origins.behaviours, keepAliveTimeoutMs: spec.origins.keepAliveTimeoutMs });
    await fleet.start();
    const input: LaunchInput = {
      dir,
      port: proxyPort,
      backends: fleet.ports.map((p, i) => ({ name: `app${i + 1}`, host: '127.0.0.1', port: p })),
      tuning: spec.tuning,
      healthPath: HEALTH_PATH,
    };
    proxy = await launcher.start(input, target.variant, group);
    log(`  ${target.label}: pid ${proxy.pid} on ${proxy.url}, origins ${fleet.ports.join(', ')}`);
    // Let probes see the backends healthy before the clock starts, then count from zero.
    await new Promise((r) => setTimeout(r, target.kind === 'varnish' ? 1500 : 300));
    await fleet.reset();

    const samplesFile = path.join(dir, 'samples.jsonl');
    const startAt = Date.now() + LEAD_MS;
    const plan: LoadPlan = { target: proxy.url, startAt, phases: spec.load, requestTimeoutMs: spec.requestTimeoutMs, maxInFlight: 2000, out: samplesFile, seed: 7 };
    const planFile = path.join(dir, 'plan.json');
    writeFileSync(planFile, JSON.stringify(plan, null, 2));
    const loadgen = group.spawn('loadgen', process.execPath, [LOADGEN, planFile], { logFile: path.join(dir, 'loadgen.log'), ipc: true });

    // Origin request counts, sampled through the run, and exactly at the fault window's edges.
    const points: { t: number; total: number }[] = [];
    const sampler = setInterval(() => points.push({ t: Date.now() - startAt, total: fleet!.snapshot().total }), SAMPLE_EVERY_MS);
    let atFrom: FleetSnapshot | undefined;
    let atTo: FleetSnapshot | undefined;
    type Step = { atMs: number; name: string; run: () => Promise<void> };
    const steps: Step[] = [
      { atMs: spec.faultFromMs, name: 'fault-start count', run: async () => { await fleet!.refresh(); atFrom = fleet!.snapshot(); } },
      { atMs: spec.faultToMs, name: 'fault-end count', run: async () => { await fleet!.refresh(); atTo = fleet!.snapshot(); } },
      ...spec.actions.map((a) => ({ atMs: a.atMs, name: a.op, run: () => apply(fleet!, a) })),
    ].sort((a, b) => a.atMs - b.atMs); // stable: the window edges are counted before the actions at the same time
    const deadline = startAt + spec.endMs + spec.requestTimeoutMs + 10_000;
    const script = (async () => {
      for (const step of steps) {
        await sleepUntil(startAt + step.atMs);
        if (loadgen.hasExited()) break;
        const late = Date.now() - startAt - step.atMs;
        if (late > 250) notes.push(`a fault step planned at ${step.atMs} ms ran ${late} ms late`);
        const began = Date.now();
        await step.run().catch((e: Error) => notes.push(`fault step at ${step.atMs} ms failed: ${e.message}`));
        if (Date.now() - began > 250) notes.push(`the ${step.name} step at ${step.atMs} ms took ${Date.now() - began} ms`);
      }
    })();
    const timeout = setTimeout(() => {
      notes.push('the load generator did not finish in time and was killed');
      void loadgen.kill();
    }, Math.max(0, deadline - Date.now()));
    const code = await loadgen.exited;
    clearTimeout(timeout);
    await script;
    clearInterval(sampler);
    if (code !== 0) notes.push(`the load generator exited with ${code}`);
    if (proxy.hasExited()) notes.push(`${target.label} exited during the run: ${logTail(proxy.logFiles[0]!)}`);
    await fleet.refresh().catch(() => undefined);
    const end = fleet.snapshot();
    points.push({ t: Date.now() - startAt, total: end.total });

    const samples = readSamples(samplesFile);
    const firstStart = samples.reduce((m, s) => Math.min(m, s.t), samples.length ? Infinity : 0);
    if (firstStart > 300) notes.push(`the load generator started ${firstStart} ms late`);
    const window = { faultFromMs: spec.faultFromMs, faultToMs: spec.faultToMs, endMs: spec.endMs };
    const summary = summarize(samples, window);
    const from = atFrom ?? end;
    const to = atTo ?? end;
    const watched: OriginResult['watched'] = {};
    for (const p of spec.watchPaths ?? []) watched[p] = { total: end.paths[p] ?? 0, duringFault: (to.paths[p] ?? 0) - (from.paths[p] ?? 0) };
    const seconds = summary.timeline.length;
    const originPerSecond = perSecond(points, seconds);
    summary.timeline.forEach((s, i) => (s.origin = originPerSecond[i]));
    if (opts.keep) log(`  run directory kept: ${dir}`);
    return {
      scenario: spec.name,
      title: spec.title,
      goal: spec.goal,
      target,
      short: opts.short ?? false,
      startedAt,
      window,
      summary,
      origin: { total: end.total, byOrigin: end.byOrigin, duringFault: to.total - from.total, watched, perSecond: originPerSecond },
      dir,
      config: { fileName: path.basename(proxy.configFile), text: readFileSync(proxy.configFile, 'utf8') },
      notes,
    };
  } finally {
    await proxy?.stop().catch(() => undefined);
    await fleet?.stop().catch(() => undefined);
    await group.stopAll(2000);
    group.dispose();
    process.off('exit', removeDir);
    removeDir();
  }
}

async function apply(fleet: OriginFleet, a: FaultAction): Promise<void> {
  await Promise.all(
    a.origins.map((i) => {
      switch (a.op) {
        case 'refuse':
          return fleet.refuse(i);
        case 'resume':
          return fleet.resume(i);
        case 'kill':
          return fleet.kill(i);
        case 'restart':
          return fleet.restart(i);
        case 'set':
          return fleet.set(i, a.path, a.behaviour);
      }
    }),
  );
}

function readSamples(file: string): Sample[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as Sample);
    } catch {
      // a line cut by a killed load generator
    }
  }
  return out;
}
