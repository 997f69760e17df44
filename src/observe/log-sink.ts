// Where log lines go. A log destination must never stall serving or shutdown (issue 11 item 16): a
// supervisor that restarts and leaves our stdout pipe unread made `lacquer serve` hang for good on SIGTERM,
// its main thread blocked writing the last lines to a full pipe, or its exit waiting for a libuv worker stuck
// in such a write. So:
// - pipes, sockets and terminals are written through process.stdout/stderr, which libuv drives without
//   blocking (O_NONBLOCK on Linux): nothing is ever written to them synchronously, and what is still
//   queued at exit is given up;
// - files are written on an fd opened at start, so a start-up failure never meets a destination that is
//   "not ready yet", and flushed synchronously at exit (disks finish). Batches (access-log.ts: 32 KiB or
//   10 ms) are written synchronously from the event loop while the disk keeps up, as nginx writes its
//   access log: a write through libuv's thread pool wakes a pool thread per batch, and on a 2-core machine
//   those wake-ups put a 1 KiB hit's p99 at 6.7–6.9 ms against 1.8–2.7 ms written directly (the same
//   req/s; BENCHMARKS.md "Issue 12: the access log's tail"). A write that takes longer than SLOW_WRITE_MS
//   (a slow or remote disk) moves the file to sonic-boom (pino's destination, thread pool) for good, so a
//   slow disk costs serving one such write, not one per batch;
// - every destination holds at most MAX_PENDING_BYTES unwritten: past it lines are dropped and counted
//   (`lacquer_log_lines_dropped_total`) rather than buffered without bound or waited for.
import { fstatSync, openSync, writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import pino from 'pino';

/** Unwritten bytes a destination may hold; past it new lines are dropped (and counted). */
export const MAX_PENDING_BYTES = 4 * 1024 * 1024;
/** A direct (synchronous) file write slower than this (ms) hands the file to the thread pool from then on. */
export const SLOW_WRITE_MS = 20;

export type LogSink = {
  /** A batch of access lines comes as bytes (encoded as each line was made), other lines as text. */
  write(chunk: string | Buffer): void;
  /** Stops writing (a file's descriptor is closed); later lines are dropped. stdout/stderr stay open. */
  close(): void;
  /** Lines dropped because the destination was too slow or broken. */
  dropped(): number;
  /**
   * Writes what is pending where that cannot block, then `last`: synchronously to a file (`last` is in the
   * file when this returns, unless an earlier write is still in flight); a pipe keeps its queue.
   */
  flush(last?: Buffer): void;
  /** Resolves when nothing is pending, or after `ms`, whichever comes first. Never rejects. */
  drain(ms: number): Promise<void>;
  /** A file: whether batches are still written synchronously (false once a write was slow). */
  writesDirect?(): boolean;
};

const linesIn = (chunk: string | Buffer): number => {
  const s = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
  let n = 0;
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++;
  return n || 1;
};

/**
 * The process's stdout and stderr sinks, one each per process: they wrap process-wide streams, so every proxy in
 * the process (tests start many) shares them rather than stacking listeners on process.stdout.
 */
const stdio = new Map<'stdout' | 'stderr', LogSink>();

/**
 * `stdout`, `stderr` or a file path (appended to; its directory must exist: `check` says so). `slowWriteMs`
 * (tests) replaces SLOW_WRITE_MS for a file.
 */
export function openSink(dest: string, slowWriteMs = SLOW_WRITE_MS): LogSink {
  if (dest === 'stdout' || dest === 'stderr') {
    let sink = stdio.get(dest);
    if (!sink) stdio.set(dest, (sink = stdioSink(dest)));
    return sink;
  }
  return fileSink(openSync(dest, 'a'), slowWriteMs);
}

function stdioSink(dest: 'stdout' | 'stderr'): LogSink {
  const fd = dest === 'stdout' ? 1 : 2;
  let isFile = false;
  try {
    isFile = fstatSync(fd).isFile();
  } catch {
    // A closed descriptor: there is nowhere to write; every line counts as dropped.
    return nowhereSink();
  }
  // stdout redirected to a file behaves like a file; a pipe, socket or terminal goes through Node's stream.
  const sink = isFile ? fileSink(fd) : streamSink(dest === 'stdout' ? process.stdout : process.stderr);
  return { ...sink, close: () => sink.flush() };
}

function nowhereSink(): LogSink {
  let dropped = 0;
  return {
    write: (chunk) => void (dropped += linesIn(chunk)),
    close: () => undefined,
    dropped: () => dropped,
    flush: (last) => void (last && (dropped += linesIn(last))),
    drain: () => Promise.resolve(),
  };
}

function fileSink(fd: number, slowWriteMs = SLOW_WRITE_MS): LogSink {
  let dropped = 0;
  // maxLength: sonic-boom drops (and emits 'drop') rather than buffer past it when the disk is slower than us.
  // Buffer mode: access lines arrive already encoded, in batches (access-log.ts); in utf8 mode sonic-boom
  // measured and re-encoded every batch as a string on the main thread (issue 12, `writeString` in the profile).
  const d = pino.destination({ fd, sync: false, maxLength: MAX_PENDING_BYTES, contentMode: 'buffer' });
  // Bytes handed to sonic-boom and bytes it wrote (or dropped): equal when no write is pending or in flight
  // (always, while batches are written directly).
  let handed = 0;
  let done = 0;
  d.on('write', (n: number) => (done += n));
  d.on('drop', (data: string | Buffer) => {
    dropped += linesIn(data);
    done += Buffer.byteLength(data);
  });
  // pino's destination swallows EPIPE itself; anything else (ENOSPC, EIO) must not crash the proxy.
  d.on('error', () => undefined);
  let closed = false;
  /** Writes `b` here and now; a full disk or a closed fd loses it (counted), never the proxy. */
  const writeNow = (b: Buffer) => {
    try {
      for (let at = 0; at < b.length; ) at += writeSync(fd, b, at);
    } catch {
      dropped += linesIn(b);
    }
  };
  // Written here, synchronously, until one write is slow (see the top of this file).
  let direct = true;
  const put = (b: Buffer) => {
    if (direct) {
      const t0 = performance.now();
      writeNow(b);
      if (performance.now() - t0 > slowWriteMs) direct = false;
      return;
    }
    handed += b.length;
    // (sonic-boom's types name strings only; in buffer mode it takes Buffers.)
    d.write(b as unknown as string);
  };
  const flush = (last?: Buffer) => {
    if (!last) return; // nothing is held here: a batch is written, or handed to sonic-boom, as it comes
    if (closed) dropped += linesIn(last);
    // Nothing in flight: written here, so it is in the file when flush() returns.
    else if (handed === done) writeNow(last);
    // A write is in flight in the thread pool: `last` queues behind it, in order, and drain() or close()
    // waits for them. (sonic-boom's flushSync() would write what it holds at once, before the write in
    // flight lands: lines out of order, test/access-log.test.ts.)
    else put(last);
  };
  return {
    write(chunk) {
      if (closed) dropped += linesIn(chunk);
      else put(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    },
    close() {
      closed = true;
      // A write still in flight finishes before the descriptor is closed (destroy() would close it under it).
      if (handed === done) d.destroy();
      else d.end();
    },
    dropped: () => dropped,
    flush,
    writesDirect: () => direct,
    drain(ms) {
      if (closed || handed === done) return Promise.resolve();
      // The write in flight, for at most `ms`: a disk that does not answer must not hold the exit.
      return new Promise((resolve) => {
        const finish = () => {
          clearTimeout(t);
          d.off('write', check);
          d.off('error', finish);
          resolve();
        };
        const check = () => {
          if (handed === done) finish();
        };
        const t = setTimeout(finish, ms);
        d.on('write', check);
        d.on('error', finish);
      });
    },
  };
}

/** A Node stream (process.stdout/stderr, or a test's capture stream): queued writes, bounded. */
export function streamSink(s: Writable, opts: { bound?: boolean } = {}): LogSink {
  let dropped = 0;
  let broken = false;
  const bound = opts.bound ?? true;
  // EPIPE (the reader went away) or any other write error: stop writing, count what would have gone.
  s.on('error', () => (broken = true));
  const write = (chunk: string | Buffer) => {
    if (broken || s.destroyed || (bound && s.writableLength + chunk.length > MAX_PENDING_BYTES)) {
      dropped += linesIn(chunk);
      return;
    }
    s.write(chunk);
  };
  return {
    close: () => undefined,
    write,
    dropped: () => dropped,
    flush: (last) => void (last && write(last)),
    drain(ms) {
      if (broken || s.destroyed || s.writableLength === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const t = setTimeout(done, ms);
        function done() {
          clearTimeout(t);
          s.off('drain', done);
          s.off('error', done);
          resolve();
        }
        s.once('drain', done);
        s.once('error', done);
      });
    },
  };
}
