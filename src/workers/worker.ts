// A worker of `workers: N`: a full proxy whose coordinator is the primary (coord/ipc.ts). What an operator
// changes on one worker through the admin API reaches the others before the API answers: invalidations
// through the invalidator's hook (coord/attach.ts), maintenance, health overrides, reloads and rollbacks
// here, as `control` messages. Active health probes run on worker 0 only; their results reach the others
// the same way, so every worker judges a backend by the same probes. Worker 0 also holds the instance's view
// (the others' figures and timeline seconds, gathered once a second) and alone evaluates the alert rules.
import type { Override } from '../pipeline/maintenance.ts';
import type { Proxy } from '../main.ts';
import type { IpcCoordinator } from '../coord/ipc.ts';
import type { BackendPool } from '../upstream/pool.ts';
import type { FailureReport } from '../observe/access-log.ts';
import type { HandoffFigures, WorkerFigures } from '../observe/observer.ts';
import { FIGURES, WORKER_TAG, type ReadyMessage } from './primary.ts';

/** How stale the admin worker's copy of the other workers' failure reports and figures may be. */
const FAILURES_REFRESH_MS = 1000;
/**
 * Closed seconds each worker resends with its figures: the admin worker merges each second once, so a gather
 * lost to a slow worker (GATHER_TIMEOUT_MS) is made up by the next ones instead of missing from the timeline.
 */
const RESEND_SECONDS = 5;
/**
 * How late the admin worker makes its chart points: another worker closes a second up to 1 s after it and is
 * gathered once a second, so its part of second t has arrived by t + 3 (timeline.ts pointLagSeconds).
 */
const POINT_LAG_SECONDS = 3;

type MaintenanceData = { target: string; override: Override | undefined };
type OverrideData = { pool: string; backend: string; value: Parameters<BackendPool['setOverride']>[1] };
type ProbeData = { pool: string; backend: string; r: Parameters<BackendPool['applyProbe']>[1] };

/** Relays maintenance overrides and reloads between workers; tells the primary this worker serves. */
export function joinInstance(proxy: Proxy, coord: IpcCoordinator, index: number, backends: string[]): void {
  const m = proxy.ctx.maintenance; // carried over reloads: wrapped once
  const setLocal = m.set.bind(m);
  m.set = (target, override) => {
    setLocal(target, override);
    void coord.publish({ kind: 'control', name: 'maintenance', data: { target, override } satisfies MaintenanceData });
  };
  // Health overrides live on the pools, which a reload replaces: wrapped again after each switch.
  const wrapped = new WeakSet<BackendPool>();
  const overrideLocal = new WeakMap<BackendPool, BackendPool['setOverride']>();
  const wrapPools = () => {
    for (const pool of proxy.ctx.pools.values()) {
      if (wrapped.has(pool)) continue;
      wrapped.add(pool);
      const local = pool.setOverride.bind(pool);
      overrideLocal.set(pool, local);
      pool.setOverride = (backend, value) => {
        const snap = local(backend, value);
        if (snap) void coord.publish({ kind: 'control', name: 'override', data: { pool: pool.name, backend, value } satisfies OverrideData });
        return snap;
      };
      // Health probes once per instance: worker 0 probes and shares each result; the others only apply them.
      if (index === 0) pool.onProbe = (backend, r) => void coord.publish({ kind: 'control', name: 'probe', data: { pool: pool.name, backend, r } satisfies ProbeData });
      else pool.stopActiveProbes();
    }
  };
  wrapPools();
  const manager = proxy.config;
  const reloadLocal = manager.reload.bind(manager);
  const rollbackLocal = manager.rollback.bind(manager);
  // Every worker reads the same file: the others reload (or roll back) too, and the answer waits for them (settled()).
  manager.reload = async () => {
    const r = await reloadLocal();
    wrapPools();
    if (r.ok) await coord.publish({ kind: 'control', name: 'reload' });
    return r;
  };
  manager.rollback = async () => {
    const r = await rollbackLocal();
    wrapPools();
    if (r.ok) await coord.publish({ kind: 'control', name: 'rollback' });
    return r;
  };
  coord.subscribe((msg) => {
    if (msg.kind !== 'control') return;
    if (msg.name === 'maintenance') {
      const d = msg.data as MaintenanceData;
      setLocal(d.target, d.override);
    } else if (msg.name === 'probe') {
      const d = msg.data as ProbeData;
      proxy.ctx.pools.get(d.pool)?.applyProbe(d.backend, d.r);
    } else if (msg.name === 'override') {
      const d = msg.data as OverrideData;
      const pool = proxy.ctx.pools.get(d.pool);
      if (pool) (overrideLocal.get(pool) ?? pool.setOverride.bind(pool))(d.backend, d.value);
    } else if (msg.name === 'reload' || msg.name === 'rollback') {
      void (msg.name === 'reload' ? reloadLocal() : rollbackLocal()).then((r) => {
        wrapPools();
        if (!r.ok) proxy.ctx.log.logger.error({ type: 'reload', worker: index, ...r }, `worker ${index}: ${msg.name} refused: ${r.reason}`);
      });
    }
  });
  // /metrics on the admin worker shows the instance: the others answer with their registries.
  const metrics = proxy.plane.observer.metrics;
  coord.collectors.set('metrics', () => metrics.registry.getMetricsAsJSON());
  if (proxy.plane.admin) metrics.otherWorkers = () => coord.gather('metrics');
  // /api/failures (and the dashboard's list) on the admin worker: the others' recent failure reports, fetched
  // every second (the list is read synchronously), merged newest first with its own.
  const log = proxy.ctx.log;
  const localFailures = log.recentFailures.bind(log);
  coord.collectors.set('failures', () => Promise.resolve(localFailures()));
  // The instance's figures the same way: /api/stats totals, cache size and in-flight requests, /api/backends'
  // per-worker pools, and the closed seconds merged into the admin worker's timeline (charts, 1-minute rates,
  // alerts). The primary adds its hand-off store's figures to the answer.
  const observer = proxy.plane.observer;
  observer.worker = index;
  coord.collectors.set(FIGURES, () => Promise.resolve(observer.figures(RESEND_SECONDS)));
  // Worker 0 holds the instance's view (even with the admin plane off: its alert rules read it); the others
  // evaluate no alert rules (each would notify about its own share of the traffic).
  if (index !== 0) proxy.plane.alertsElsewhere();
  else {
    let remote: FailureReport[] = [];
    let others: WorkerFigures[] = [];
    let handoff: HandoffFigures | undefined;
    observer.others = () => others;
    observer.handoff = () => handoff;
    observer.timeline.pointLagSeconds = POINT_LAG_SECONDS;
    const refresh = setInterval(() => {
      void coord.gather('failures').then((lists) => (remote = (lists as FailureReport[][]).flat()));
      void coord.gather(FIGURES).then((list) => {
        const workers: WorkerFigures[] = [];
        for (const x of list as (WorkerFigures | { handoff: HandoffFigures })[]) {
          if ('handoff' in x) handoff = x.handoff;
          else workers.push(x);
        }
        for (const w of workers) observer.timeline.merge(`worker${w.worker}`, w.seconds);
        others = workers.sort((a, b) => a.worker - b.worker);
      });
    }, FAILURES_REFRESH_MS);
    refresh.unref();
    log.recentFailures = () => [...localFailures(), ...remote].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  }
  const ready: ReadyMessage = { tag: WORKER_TAG, t: 'ready', index, address: proxy.listener.address, admin: proxy.plane.admin?.url, backends };
  process.send?.(ready);
}
