// Wiring of the observing side for the composition root (main.ts): the observer fed by the listener, the
// alert engine and its webhooks, and the admin listener. Started after the client listener, stopped after
// it has drained (so /readyz and the dashboard stay up while in-flight requests finish). A reload replaces
// the alert rules and webhooks and the admin token (issue 11 item 15: `alerts` changes were silently ignored);
// the admin listener's address and switch are bound at start.
import cluster from 'node:cluster';
import type { ConfigManager } from '../ops/reload.ts';
import type { Config } from '../config/schema.ts';
import type { ProxyContext } from '../pipeline/context.ts';
import type { Exchange } from '../server/exchange.ts';
import { AlertEngine } from '../observe/alerts.ts';
import { Observer } from '../observe/observer.ts';
import { WebhookSender } from '../observe/webhooks.ts';
import { startAdmin, type AdminServer } from './server.ts';

export type Plane = {
  observer: Observer;
  /** The current alert engine and webhook sender (replaced by `reconfigure`). */
  readonly alerts: AlertEngine;
  readonly webhooks: WebhookSender;
  admin: AdminServer | undefined;
  /** The listener's per-request hook. */
  onRequest(ex: Exchange): void;
  /** Starts the tick, the alert loop and the admin listener. */
  start(inflight: () => number, adminListen?: string): Promise<void>;
  /** Applies a reloaded configuration's `alerts` and `admin.token`. */
  reconfigure(next: Config): void;
  /**
   * workers (issue 12): alert rules are evaluated by worker 0 only, on the instance's timeline; the others
   * evaluate none, or every worker would notify the receivers of its own share of the traffic.
   */
  alertsElsewhere(): void;
  stop(): Promise<void>;
};

export function createPlane(config: Config, ctx: () => ProxyContext, ops?: { config: ConfigManager }): Plane {
  let inflight: () => number = () => 0;
  let current = config;
  let started = false;
  let alertsHere = true;
  const observer = new Observer(ctx, () => inflight());
  const logger = ctx().log.logger;
  const senderFor = (a: Config['alerts']) =>
    new WebhookSender(a.webhooks, { timeoutMs: a.delivery_timeout, retries: a.delivery_retries, backoffMs: a.delivery_backoff }, logger, (r) => observer.metrics.recordNotification(r));
  let webhooks = senderFor(config.alerts);
  const engineFor = (a: Config['alerts'], c: Config, sender: WebhookSender) =>
    new AlertEngine(a, c.proxy.name, { timeline: observer.timeline, pools: () => observer.instancePools() }, sender, logger);
  let alerts = engineFor(config.alerts, config, webhooks);
  observer.alertStates = () => alerts.states();
  const plane: Plane = {
    observer,
    get alerts() {
      return alerts;
    },
    get webhooks() {
      return webhooks;
    },
    admin: undefined,
    onRequest: (ex) => observer.request(ex),
    async start(fn, adminListen) {
      inflight = fn;
      started = true;
      observer.start();
      if (alertsHere) alerts.start();
      if (!config.admin.enabled) return;
      const listen = adminListen ?? config.admin.listen;
      plane.admin = await startAdmin({ ctx, observer, alerts: () => alerts, webhooks: () => webhooks, inflight: fn, ops }, listen, () => current.admin.token);
      // A worker of `workers: N` (admin on worker 0): the primary's one start line names the admin plane.
      logger[cluster.isWorker ? 'debug' : 'info']({ admin: plane.admin.address }, `admin plane and dashboard on ${plane.admin.url}/`);
    },
    reconfigure(next) {
      const before = current;
      current = next;
      if (JSON.stringify(before.alerts) === JSON.stringify(next.alerts) && before.proxy.name === next.proxy.name) return;
      // Deliveries still waiting for a retry go to the receivers they were meant for, unless those changed.
      const sameReceivers = JSON.stringify([before.alerts.webhooks, before.alerts.delivery_timeout, before.alerts.delivery_retries, before.alerts.delivery_backoff])
        === JSON.stringify([next.alerts.webhooks, next.alerts.delivery_timeout, next.alerts.delivery_retries, next.alerts.delivery_backoff]);
      const oldSender = webhooks;
      if (!sameReceivers) webhooks = senderFor(next.alerts);
      const engine = engineFor(next.alerts, next, webhooks);
      engine.adoptState(alerts);
      alerts.stop();
      alerts = engine;
      if (started && alertsHere) alerts.start();
      if (!sameReceivers) void oldSender.close();
    },
    alertsElsewhere() {
      alertsHere = false;
      alerts.stop();
    },
    async stop() {
      alerts.stop();
      await plane.admin?.close();
      await webhooks.close();
      observer.stop();
    },
  };
  return plane;
}
