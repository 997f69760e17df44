// Runs the warm-restart snapshot for a running proxy: load at start, write every `interval` and at stop.
import type { Logger } from 'pino';
import type { Store } from './store.ts';
import { loadSnapshot, writeSnapshot } from './persist.ts';

export class Snapshots {
  readonly #store: Store;
  readonly #path: string;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;

  constructor(store: Store, path: string, log: Logger) {
    this.#store = store;
    this.#path = path;
    this.#log = log;
  }

  async load(): Promise<void> {
    const r = await loadSnapshot(this.#store, this.#path);
    if (r.kind === 'corrupt') this.#log.error({ snapshot: this.#path, reason: r.reason }, `cache snapshot ${this.#path} is corrupt and was skipped: ${r.reason}`);
    else if (r.kind === 'loaded') this.#log.info({ snapshot: this.#path, ...r }, `cache snapshot loaded: ${r.objects} objects (${r.skippedExpired} past keep skipped) in ${r.ms}ms`);
    else this.#log.info({ snapshot: this.#path }, 'no cache snapshot yet: starting cold');
  }

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.#timer = setInterval(() => void this.write(), intervalMs);
    this.#timer.unref();
  }

  /** Writes a snapshot unless one is being written. */
  write(): Promise<void> {
    this.#writing ??= writeSnapshot(this.#store, this.#path)
      .then(
        (r) => this.#log.info({ snapshot: this.#path, ...r }, `cache snapshot written: ${r.objects} objects, ${r.bytes} bytes in ${r.ms}ms`),
        (err: Error) => this.#log.error({ snapshot: this.#path, err: err.message }, `cache snapshot write failed: ${err.message}`),
      )
      .finally(() => (this.#writing = undefined));
    return this.#writing;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#writing;
    await this.write();
  }
}
