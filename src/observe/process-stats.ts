// The proxy's own CPU, memory and event-loop delay, sampled once a second for the dashboard, /api/stats and
// the `event_loop_delay` alert signal. A blocked event loop delays every request: it is the first thing to
// rule out when latency rises for hits as well as misses.
import { monitorEventLoopDelay } from 'node:perf_hooks';

export type ProcessSample = {
  /** CPU time used since the previous sample, as a percentage of one core. */
  cpuPercent: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Event-loop delay p99 since the previous sample, ms. */
  eldP99Ms: number;
  /** Worst event-loop delay since the previous sample, ms. */
  eldMaxMs: number;
};

export class ProcessSampler {
  readonly #eld: ReturnType<typeof monitorEventLoopDelay> = monitorEventLoopDelay({ resolution: 10 });
  #cpu = process.cpuUsage();
  #at = performance.now();
  #last: ProcessSample = { cpuPercent: 0, rssBytes: process.memoryUsage.rss(), heapUsedBytes: 0, eldP99Ms: 0, eldMaxMs: 0 };

  start(): void {
    this.#eld.enable();
  }

  stop(): void {
    this.#eld.disable();
  }

  sample(): ProcessSample {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const elapsedUs = Math.max(1, (now - this.#at) * 1000);
    const usedUs = cpu.user - this.#cpu.user + (cpu.system - this.#cpu.system);
    this.#cpu = cpu;
    this.#at = now;
    const mem = process.memoryUsage();
    const has = this.#eld.count > 0;
    this.#last = {
      cpuPercent: Math.round((usedUs / elapsedUs) * 1000) / 10,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      eldP99Ms: has ? Math.round(this.#eld.percentile(99) / 1e4) / 100 : 0,
      eldMaxMs: has ? Math.round(this.#eld.max / 1e4) / 100 : 0,
    };
    this.#eld.reset();
    return this.#last;
  }

  /** The latest sample, without taking a new one. */
  last(): ProcessSample {
    return this.#last;
  }
}
