// What a lab scenario is: origins with behaviours, a steady load (plan.ts), faults injected at known
// times, and the goal Lacquer must reach in it (issue 6). Concrete scenarios live in src/lab/scenarios/.
import type { Behaviour } from './origin.ts';
import type { LoadPhase } from './plan.ts';

/** Facts an operator knows about the application and writes into every proxy's resilience-tuned config. */
export type ProxyTuning = {
  connectMs: number;
  /** Longest acceptable wait for response headers. */
  firstByteMs: number;
  /** Longest acceptable pause inside a response body. */
  betweenBytesMs: number;
  /** Concurrent requests each origin handles well (known from its capacity planning), if any. */
  originCapacity?: number;
};

export const DEFAULT_TUNING: ProxyTuning = { connectMs: 1000, firstByteMs: 3000, betweenBytesMs: 3000 };

/** A fault or a recovery step, applied to the origins with these indexes at `atMs`. */
export type FaultAction =
  | { atMs: number; op: 'refuse' | 'resume' | 'kill' | 'restart'; origins: number[] }
  | { atMs: number; op: 'set'; origins: number[]; path: string; behaviour: Behaviour };

/** How Lacquer's result in this scenario is judged (issue 6 "Goals the lab must show"). */
export type GoalKind = 'zero-errors' | 'fewer-errors-than-peers' | 'one-origin-request';

export type ScenarioSpec = {
  name: string;
  /** One line: what happens. */
  title: string;
  goal: GoalKind;
  origins: { count: number; keepAliveTimeoutMs?: number; behaviours: Record<string, Behaviour> };
  tuning: ProxyTuning;
  /** The fault window, ms from t=0 (origin requests are also counted inside it). */
  faultFromMs: number;
  faultToMs: number;
  /** When the load ends. */
  endMs: number;
  load: LoadPhase[];
  actions: FaultAction[];
  requestTimeoutMs: number;
  /** Paths whose origin requests are reported on their own (e.g. the hot object of a thundering herd). */
  watchPaths?: string[];
};

export type Scenario = {
  name: string;
  title: string;
  /** `short`: ≤ ~10 s, for CI and quick looks; otherwise ≤ ~60 s. */
  build(short: boolean): ScenarioSpec;
};

/** Paths `/prefix/0` … `/prefix/n-1`. */
export function paths(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}/${i}`);
}

/** Every origin index of a scenario with `n` origins. */
export function all(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The common load shape: a constant rate before, during (`faultName`) and after the fault window. */
export function steadyRate(rps: number, list: string[], fromMs: number, toMs: number, endMs: number, faultName: string): LoadPhase[] {
  return [
    { kind: 'rate', name: 'warm-up', fromMs: 0, toMs: fromMs, rps, paths: list },
    { kind: 'rate', name: faultName, fromMs, toMs, rps, paths: list },
    { kind: 'rate', name: 'recovery', fromMs: toMs, toMs: endMs, rps, paths: list },
  ];
}
