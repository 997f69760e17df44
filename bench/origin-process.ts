// The benchmark's origin, in its own process: src/lab/origin.ts with the three bench paths, plus `*`
// answering distinct cacheable 100 KiB objects for the fill phase. Prints `{"port":N}` once listening,
// exits on SIGTERM/SIGINT or when its parent goes away (stdin closes).
import { startOrigin } from '../src/lab/origin.ts';

const origin = await startOrigin({
  port: Number(process.env.BENCH_ORIGIN_PORT ?? 0),
  behaviours: {
    '/1k': { kind: 'normal', bodySize: 1024, cacheControl: 'max-age=3600' },
    '/100k': { kind: 'normal', bodySize: 102_400, cacheControl: 'max-age=3600' },
    '/pass': { kind: 'normal', bodySize: 1024, cacheControl: 'no-store' },
    // bench --tls: a large pass, compressed per response (as nginx's gzip does every hit).
    '/pass100k': { kind: 'normal', bodySize: 102_400, cacheControl: 'no-store' },
    '*': { kind: 'normal', bodySize: 102_400, cacheControl: 'max-age=3600' },
  },
});

// The lab origin logs every request for the tests; under benchmark load that log would grow without
// bound and its GC cost would be charged to the origin. Empty it often.
const trim = setInterval(() => origin.reset(), 500);

const stop = () => {
  clearInterval(trim);
  void origin.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop).on('error', stop).resume();
process.stdout.write(`${JSON.stringify({ port: origin.port })}\n`);
