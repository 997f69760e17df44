// The ceiling: a bare node:http server answering the same 1 KiB (or, on /100k, 100 KiB) body from
// memory, with the same kind of headers a cache hit carries. Prints `{"port":N}` once listening; exits on SIGTERM/SIGINT
// or when its parent goes away (stdin closes).
import { createServer } from 'node:http';

const body = Buffer.alloc(1024, 'lacquer-bench\n');
// `/100k`: the ceiling for 100 KiB hits; every other path answers the 1 KiB body.
const big = Buffer.alloc(102_400, 'lacquer-bench\n');
const server = createServer({ keepAliveTimeout: 5000 }, (req, res) => {
  const b = req.url === '/100k' ? big : body;
  res.writeHead(200, ['content-type', 'text/plain; charset=utf-8', 'cache-control', 'max-age=3600', 'content-length', String(b.length)]);
  res.end(b);
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
