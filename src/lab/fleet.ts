// The origins of one scenario run: one `lacquer lab origin` process per backend (so one can be killed
// like a crashed app server and started again), commanded over IPC, with request counts that survive a
// kill (the last tick of a dead process is kept: at most TICK_MS of its requests go uncounted).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Behaviour, OriginStats } from './origin.ts';
import type { OriginCommand, OriginMessage } from './origin-process.ts';
import type { Child, ProcessGroup } from './processes.ts';

const MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url));
const COMMAND_TIMEOUT_MS = 5000;

type Slot = { child: Child | undefined; current: OriginStats; retired: OriginStats; incarnation: number };

const zero = (): OriginStats => ({ total: 0, connections: 0, inFlight: 0, paths: {} });

function add(a: OriginStats, b: OriginStats): OriginStats {
  const paths = { ...a.paths };
  for (const [p, n] of Object.entries(b.paths)) paths[p] = (paths[p] ?? 0) + n;
  return { total: a.total + b.total, connections: a.connections + b.connections, inFlight: a.inFlight + b.inFlight, paths };
}

export type FleetSnapshot = { total: number; byOrigin: number[]; paths: Record<string, number> };

export class OriginFleet {
  readonly ports: readonly number[];
  readonly #group: ProcessGroup;
  readonly #dir: string;
  readonly #behaviours: Record<string, Behaviour>;
  readonly #keepAlive: number | undefined;
  readonly #slots: Slot[];
  readonly #pending = new Map<number, (m: Extract<OriginMessage, { op: 'ack' }>) => void>();
  #seq = 0;

  constructor(group: ProcessGroup, dir: string, ports: number[], opts: { behaviours: Record<string, Behaviour>; keepAliveTimeoutMs?: number }) {
    this.#group = group;
    this.#dir = dir;
    this.ports = ports;
    this.#behaviours = opts.behaviours;
    this.#keepAlive = opts.keepAliveTimeoutMs;
    this.#slots = ports.map(() => ({ child: undefined, current: zero(), retired: zero(), incarnation: 0 }));
  }

  async start(): Promise<void> {
    await Promise.all(this.ports.map((_, i) => this.#spawn(i)));
  }

  async #spawn(i: number): Promise<void> {
    const slot = this.#slots[i]!;
    slot.incarnation++;
    const args = [MAIN, 'lab', 'origin', '--port', String(this.ports[i]), '--behaviour', JSON.stringify(this.#behaviours), '--seed', String(1000 * (i + 1) + slot.incarnation)];
    if (this.#keepAlive !== undefined) args.push('--keepalive', String(this.#keepAlive));
    const child = this.#group.spawn(`origin app${i + 1}`, process.execPath, args, { logFile: path.join(this.#dir, `origin-app${i + 1}.log`), ipc: true });
    slot.child = child;
    slot.current = zero();
    const ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`origin app${i + 1} not ready after 15 s`)), 15_000);
      child.proc.on('message', (m: OriginMessage) => {
        if (m.op === 'ready') {
          clearTimeout(t);
          resolve();
        } else if (m.op === 'tick' && slot.child === child) slot.current = m.stats[0] ?? slot.current;
        else if (m.op === 'ack') {
          if (slot.child === child) slot.current = m.stats[0] ?? slot.current;
          this.#pending.get(m.id)?.(m);
          this.#pending.delete(m.id);
        }
      });
      void child.exited.then((code) => {
        clearTimeout(t);
        reject(new Error(`origin app${i + 1} exited (${code}) before it was ready`));
      });
    });
    await ready;
  }

  #command(i: number, cmd: Omit<OriginCommand, 'id'>): Promise<void> {
    const child = this.#slots[i]?.child;
    if (!child || child.hasExited()) return Promise.resolve();
    const id = ++this.#seq;
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`origin app${i + 1}: no answer to ${cmd.op} within ${COMMAND_TIMEOUT_MS} ms`));
      }, COMMAND_TIMEOUT_MS);
      this.#pending.set(id, (m) => {
        clearTimeout(t);
        if (m.error) reject(new Error(`origin app${i + 1}: ${cmd.op}: ${m.error}`));
        else resolve();
      });
      child.proc.send({ ...cmd, id } as OriginCommand);
    });
  }

  refuse(i: number): Promise<void> {
    return this.#command(i, { op: 'refuse' });
  }

  resume(i: number): Promise<void> {
    return this.#command(i, { op: 'resume' });
  }

  set(i: number, p: string, behaviour: Behaviour): Promise<void> {
    return this.#command(i, { op: 'set', path: p, behaviour } as Omit<OriginCommand, 'id'>);
  }

  /** Fresh counts from every live origin. */
  async refresh(): Promise<void> {
    await Promise.all(this.ports.map((_, i) => this.#command(i, { op: 'stats' })));
  }

  /** Zero every counter (after the proxy's start-up, before the load). */
  async reset(): Promise<void> {
    await Promise.all(this.ports.map((_, i) => this.#command(i, { op: 'reset' })));
    for (const s of this.#slots) s.retired = zero();
  }

  /** SIGKILL, as a crash: in-flight requests die with their connections. */
  async kill(i: number): Promise<void> {
    const slot = this.#slots[i]!;
    const child = slot.child;
    if (!child) return;
    await child.kill();
    slot.retired = add(slot.retired, slot.current);
    slot.current = zero();
  }

  async restart(i: number): Promise<void> {
    const slot = this.#slots[i]!;
    if (slot.child && !slot.child.hasExited()) return;
    await this.#spawn(i);
  }

  snapshot(): FleetSnapshot {
    const per = this.#slots.map((s) => add(s.retired, s.current));
    const paths = per.reduce((a, b) => add(a, b), zero()).paths;
    return { total: per.reduce((n, s) => n + s.total, 0), byOrigin: per.map((s) => s.total), paths };
  }

  async stop(): Promise<void> {
    await Promise.all(this.#slots.map((s) => s.child?.stop(2000)));
  }
}
