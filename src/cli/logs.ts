// `lacquer logs FILE…` (stdin when none or `-`): stream access logs line by line — Lacquer JSON,
// varnishncsa default, nginx combined, detected per line; `.gz` files are decompressed on the fly —
// and print 5xx over time, bursts, the top failure classes, backends and paths, and the hint per class.
// Memory is bounded by the aggregator (src/logs/aggregate.ts), not by the size of the log.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Aggregator } from '../logs/aggregate.ts';
import { parseLine } from '../logs/detect.ts';
import { formatAnalysis } from '../logs/format.ts';

export type LogsCliOptions = { json?: boolean; burstThreshold?: string; top?: string };

function open(file: string): Readable {
  if (file === '-') return process.stdin;
  const s = createReadStream(file);
  return file.endsWith('.gz') ? s.pipe(createGunzip()) : s;
}

export async function analyse(input: Readable, agg: Aggregator): Promise<void> {
  const rl = createInterface({ input, crlfDelay: Infinity });
  for await (const line of rl) agg.add(parseLine(line));
}

export async function logsCommand(files: string[], o: LogsCliOptions): Promise<number> {
  const burstThreshold = Number(o.burstThreshold ?? 5);
  const top = Number(o.top ?? 10);
  if (!(burstThreshold > 0) || !Number.isInteger(top) || top < 1) {
    process.stderr.write('lacquer logs: --burst-threshold must be > 0 and --top a positive integer\n');
    return 2;
  }
  const agg = new Aggregator();
  if ((!files.length || files.includes('-')) && process.stdin.isTTY) process.stderr.write('lacquer logs: reading log lines from the terminal (Ctrl-D ends); give FILE… to read files\n');
  for (const f of files.length ? files : ['-']) {
    try {
      await analyse(open(f), agg);
    } catch (err) {
      process.stderr.write(`lacquer logs: ${f}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 2;
    }
  }
  const a = agg.result({ top, burstThreshold });
  process.stdout.write(o.json ? `${JSON.stringify(a, null, 2)}\n` : formatAnalysis(a));
  return 0;
}
