// The ceiling: a bare node:http server answering the same 1 KiB body from memory, with the same
// kind of headers a cache hit carries. Prints `{"port":N}` once listening; exits on SIGTERM/SIGINT
// or when its parent goes away (stdin closes).
import { createServer } from 'node:http';

const body = Buffer.alloc(1024, 'lacquer-bench\n');
const server = createServer({ keepAliveTimeout: 5000 }, (_req, res) => {
  res.writeHead(200, ['content-type', 'text/plain; charset=utf-8', 'cache-control', 'max-age=3600', 'content-length', '1024']);
  res.end(body);
});
server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`);
});
const stop = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop).on('error', stop).resume();
