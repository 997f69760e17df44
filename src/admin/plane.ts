// Wiring of the observing side for the composition root (main.ts): the observer fed by the listener, the
// alert engine and its webhooks, and the admin listener. Started after the client listener, stopped after
// it has drained (so /readyz and the dashboard stay up while in-flight requests finish).
import type { ConfigManager } from '../ops/reload.ts';
import type { Config } from '../config/schema.ts';
import type { ProxyContext } from '../pipeline/context.ts';
import type { Exchange } from '../server/exchange.ts';
import { AlertEngine } from '../observe/alerts.ts';
import { Observer } from '../observe/observer.ts';
import { snapshots } from '../observe/pools.ts';
import { WebhookSender } from '../observe/webhooks.ts';
import { startAdmin, type AdminServer } from './server.ts';

export type Plane = {
  observer: Observer;
  alerts: AlertEngine;
  webhooks: WebhookSender;
  admin: AdminServer | undefined;
  /** The listener's per-request hook. */
  onRequest(ex: Exchange): void;
  /** Starts the tick, the alert loop and the admin listener. */
  start(inflight: () => number, adminListen?: string): Promise<void>;
  stop(): Promise<void>;
};

export function createPlane(config: Config, ctx: () => ProxyContext, ops?: { config: ConfigManager }): Plane {
  let inflight: () => number = () => 0;
  const observer = new Observer(ctx, () => inflight());
  const logger = ctx().log.logger;
  const a = config.alerts;
  const webhooks = new WebhookSender(a.webhooks, { timeoutMs: a.delivery_timeout, retries: a.delivery_retries, backoffMs: a.delivery_backoff }, logger, (r) =>
    observer.metrics.recordNotification(r),
  );
  const alerts = new AlertEngine(a, config.proxy.name, { timeline: observer.timeline, pools: () => snapshots(ctx()) }, webhooks, logger);
  observer.alertStates = () => alerts.states();
  const plane: Plane = {
    observer,
    alerts,
    webhooks,
    admin: undefined,
    onRequest: (ex) => observer.request(ex),
    async start(fn, adminListen) {
      inflight = fn;
      observer.start();
      alerts.start();
      if (!config.admin.enabled) return;
      const listen = adminListen ?? config.admin.listen;
      plane.admin = await startAdmin({ ctx, observer, alerts, webhooks, inflight: fn, ops }, listen, config.admin.token);
      logger.info({ admin: plane.admin.address }, `admin plane and dashboard on ${plane.admin.url}/`);
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
