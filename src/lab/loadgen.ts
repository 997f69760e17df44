// The lab's load generator: a separate process (so its CPU and event loop are not the proxy's) that
// plays a LoadPlan against one proxy and writes one JSON line per request (plan.ts Sample): start time,
// status, Proxy-Status class, latency, and whether the body matched the origin's `x-lab-checksum`.
//
//   node src/lab/loadgen.ts PLAN.json        (the runner writes the plan; `out` says where lines go)
//
// Every loop is bounded: phases end at their `toMs`, each request by `requestTimeoutMs`, and the whole
// process by the plan's end plus one request timeout, after which open sockets are destroyed.
import { createWriteStream, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { CHECKSUM_HEADER, verifyChecksum } from './checksum.ts';
import { planEndMs, proxyStatusClass, type LoadPhase, type LoadPlan, type Sample, type Verdict } from './plan.ts';
import { seededRandom } from './origin-behaviours.ts';

type Runner = { plan: LoadPlan; agent: Agent; write(s: Sample): void; inFlight: number; skipped: number };

const sleepUntil = (t: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown };
  if (typeof e?.code === 'string') return e.code;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'client_timeout';
  return typeof e?.name === 'string' ? e.name : 'error';
}

/** One request: never throws; the outcome is always one Sample. */
async function one(r: Runner, phase: string, path: string): Promise<void> {
  const { plan } = r;
  const started = Date.now();
  const t0 = performance.now();
  r.inFlight++;
  let sample: Sample;
  try {
    const res = await request(plan.target + path, {
      dispatcher: r.agent,
      signal: AbortSignal.timeout(plan.requestTimeoutMs),
      headers: { 'user-agent': 'lacquer-lab-loadgen' },
    });
    const c = proxyStatusClass(res.headers['proxy-status']);
    try {
      const body = Buffer.from(await res.body.arrayBuffer());
      const sum = res.headers[CHECKSUM_HEADER];
      let v: Verdict = 'none';
      if (sum !== undefined && res.statusCode >= 200 && res.statusCode < 300) v = verifyChecksum(sum, body) ? 'ok' : 'bad';
      sample = { t: started - plan.startAt, ph: phase, p: path, s: res.statusCode, c, ms: performance.now() - t0, v };
    } catch (err) {
      // The head arrived but the body did not complete: the client saw a truncated response.
      sample = { t: started - plan.startAt, ph: phase, p: path, s: 0, c, ms: performance.now() - t0, v: 'none', e: `body:${errorCode(err)}` };
    }
  } catch (err) {
    sample = { t: started - plan.startAt, ph: phase, p: path, s: 0, c: '', ms: performance.now() - t0, v: 'none', e: errorCode(err) };
  }
  r.inFlight--;
  sample.ms = Math.round(sample.ms * 10) / 10;
  r.write(sample);
}

async function runPhase(r: Runner, ph: LoadPhase, index: number): Promise<void> {
  const { plan } = r;
  const abs = (ms: number) => plan.startAt + ms;
  const pick = (worker: number, n: number) => ph.paths[(worker * 7 + n) % ph.paths.length]!;
  switch (ph.kind) {
    case 'burst': {
      await sleepUntil(abs(ph.atMs));
      await Promise.all(Array.from({ length: ph.count }, (_, i) => one(r, ph.name, pick(0, i))));
      return;
    }
    case 'closed': {
      await sleepUntil(abs(ph.fromMs));
      const end = abs(ph.toMs);
      await Promise.all(
        Array.from({ length: ph.concurrency }, async (_, w) => {
          for (let n = 0; Date.now() < end; n++) await one(r, ph.name, pick(w, n));
        }),
      );
      return;
    }
    case 'paced': {
      await sleepUntil(abs(ph.fromMs));
      const end = abs(ph.toMs);
      const random = seededRandom((plan.seed ?? 1) + index);
      await Promise.all(
        Array.from({ length: ph.workers }, async (_, w) => {
          // Spread the workers' first requests over one interval so they do not move in lockstep.
          await sleepUntil(Date.now() + (w * ph.intervalMs.min) / ph.workers);
          for (let n = 0; Date.now() < end; n++) {
            const next = Date.now() + ph.intervalMs.min + random() * (ph.intervalMs.max - ph.intervalMs.min);
            await one(r, ph.name, pick(w, n));
            if (next >= end) break;
            await sleepUntil(next);
          }
        }),
      );
      return;
    }
    case 'rate': {
      const gap = 1000 / ph.rps;
      const pending: Promise<void>[] = [];
      for (let n = 0; ; n++) {
        const at = abs(ph.fromMs + n * gap);
        if (at >= abs(ph.toMs)) break;
        await sleepUntil(at);
        if (r.inFlight >= plan.maxInFlight) {
          r.skipped++;
          continue;
        }
        pending.push(one(r, ph.name, pick(0, n)));
      }
      await Promise.all(pending);
      return;
    }
  }
}

/** Plays the plan; resolves with counts once every request has ended or the hard deadline passed. */
export async function runLoad(plan: LoadPlan, out: Writable): Promise<{ requests: number; skipped: number }> {
  const agent = new Agent({
    connections: null,
    keepAliveTimeout: 2000,
    keepAliveMaxTimeout: 2000,
    headersTimeout: plan.requestTimeoutMs,
    bodyTimeout: plan.requestTimeoutMs,
    connect: { timeout: Math.min(5000, plan.requestTimeoutMs) },
  });
  let requests = 0;
  const r: Runner = {
    plan,
    agent,
    inFlight: 0,
    skipped: 0,
    write(s) {
      requests++;
      out.write(`${JSON.stringify(s)}\n`);
    },
  };
  const deadline = plan.startAt + planEndMs(plan) + plan.requestTimeoutMs + 2000;
  let timer: NodeJS.Timeout | undefined;
  const hardStop = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
  });
  await Promise.race([Promise.all(plan.phases.map((ph, i) => runPhase(r, ph, i))), hardStop]);
  clearTimeout(timer);
  await agent.destroy().catch(() => undefined);
  return { requests, skipped: r.skipped };
}

async function main(planFile: string | undefined): Promise<void> {
  if (!planFile) {
    process.stderr.write('usage: node src/lab/loadgen.ts PLAN.json\n');
    process.exit(2);
  }
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as LoadPlan;
  const out: Writable = plan.out === '-' ? process.stdout : createWriteStream(plan.out);
  // The runner's IPC channel closing means the runner is gone: stop instead of loading a proxy nobody watches.
  process.on('disconnect', () => process.exit(3));
  const result = await runLoad(plan, out);
  await new Promise<void>((resolve) => (out === process.stdout ? resolve() : out.end(resolve)));
  process.stderr.write(`${JSON.stringify({ done: true, ...result })}\n`);
  process.exit(0);
}

if (import.meta.main) await main(process.argv[2]);
