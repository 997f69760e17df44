// `lacquer lab origin`: fault-injecting origins (src/lab/origin.ts) as a process of their own, one per
// port, so a scenario can kill one like a crashed app server. Behaviours change at run time over each
// origin's control endpoint (PUT /__lab/behaviour?path=…, GET /__lab/stats, POST /__lab/reset). When
// started by the lab runner an IPC channel carries the commands that cannot go over HTTP (refuse/resume:
// a refusing origin has no listener) and a stats tick every TICK_MS; SIGUSR2 toggles refuse for a person.
import { parseBehaviour, startOrigin, type Behaviour, type Origin, type OriginStats } from './origin.ts';

export const TICK_MS = 250;

export type OriginProcessOptions = {
  ports: number[];
  host?: string;
  /** Behaviours by path ('*' = default), applied to every port. */
  behaviours?: Record<string, Behaviour>;
  keepAliveTimeoutMs?: number;
  seed?: number;
};

/** Commands from the runner; every one is answered with an `ack` carrying the same id and fresh stats. */
export type OriginCommand =
  | { id: number; op: 'refuse' }
  | { id: number; op: 'resume' }
  | { id: number; op: 'reset' }
  | { id: number; op: 'stats' }
  | { id: number; op: 'set'; path: string; behaviour: Behaviour };

export type OriginMessage =
  | { op: 'ready'; origins: { port: number; url: string }[] }
  | { op: 'tick'; stats: OriginStats[] }
  | { op: 'ack'; id: number; stats: OriginStats[]; error?: string };

/**
 * The `--behaviour` option: either one behaviour (for every path) or an object of path → behaviour.
 * Throws with the first problem found.
 */
export function parseBehaviourOption(json: string): Record<string, Behaviour> {
  const v = JSON.parse(json) as unknown;
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && 'kind' in v) return { '*': parseBehaviour(v) };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('--behaviour: a behaviour object, or an object of path → behaviour');
  const out: Record<string, Behaviour> = {};
  for (const [p, b] of Object.entries(v)) out[p] = parseBehaviour(b);
  return out;
}

export async function runOriginProcess(opts: OriginProcessOptions): Promise<Origin[]> {
  const origins: Origin[] = [];
  for (const port of opts.ports) {
    origins.push(
      await startOrigin({ host: opts.host, port, behaviours: opts.behaviours, keepAliveTimeoutMs: opts.keepAliveTimeoutMs, seed: opts.seed === undefined ? undefined : opts.seed + port }),
    );
  }
  const stats = () => origins.map((o) => o.stats());
  let refusing = false;
  const send = (m: OriginMessage) => process.send?.(m);

  // A refusing origin has no listener: this timer keeps the process alive until it is told to stop.
  const alive = setInterval(() => undefined, 60_000);
  const stop = async (code: number) => {
    clearInterval(alive);
    await Promise.all(origins.map((o) => o.close()));
    process.exit(code);
  };
  process.once('SIGTERM', () => void stop(0));
  process.once('SIGINT', () => void stop(0));
  process.on('SIGUSR2', () => {
    refusing = !refusing;
    void Promise.all(origins.map((o) => (refusing ? o.refuse() : o.resume()))).then(() =>
      process.stderr.write(`lab origin: ${refusing ? 'refusing connections' : 'listening again'}\n`),
    );
  });

  if (process.send) {
    // The runner's channel closing means the runner is gone: do not outlive it.
    process.on('disconnect', () => void stop(0));
    process.on('message', (m: OriginCommand) => void handle(m));
    const tick = setInterval(() => send({ op: 'tick', stats: stats() }), TICK_MS);
    tick.unref();
  }

  async function handle(m: OriginCommand): Promise<void> {
    let error: string | undefined;
    try {
      switch (m.op) {
        case 'refuse':
          refusing = true;
          await Promise.all(origins.map((o) => o.refuse()));
          break;
        case 'resume':
          refusing = false;
          await Promise.all(origins.map((o) => o.resume()));
          break;
        case 'reset':
          for (const o of origins) o.reset();
          break;
        case 'set':
          for (const o of origins) o.set(m.path, m.behaviour);
          break;
        case 'stats':
          break;
      }
    } catch (e) {
      error = (e as Error).message;
    }
    send({ op: 'ack', id: m.id, stats: stats(), error });
  }

  const list = origins.map((o) => ({ port: o.port, url: o.url }));
  send({ op: 'ready', origins: list });
  process.stdout.write(`${JSON.stringify({ ready: true, origins: list })}\n`);
  return origins;
}
