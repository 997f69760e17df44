// `lacquer doctor --config FILE` / `lacquer doctor URL`: test every backend (or one origin URL) directly —
// DNS, TCP, TLS, HTTP — compare with the configuration and say what will break. Exit 0 all good,
// 1 warnings, 2 failures; `--json` prints the whole report for machines.
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { formatReport } from '../doctor/format.ts';
import { runDoctor, type DoctorReport } from '../doctor/run.ts';
import { SEVERITY_RANK } from '../doctor/findings.ts';
import { targetFromUrl, targetsFromConfig, type Target } from '../doctor/targets.ts';
import { printProblems } from './check.ts';
import { examineListeners, formatListeners } from '../doctor/listeners.ts';
import { checkFleet, formatFleet } from '../doctor/fleet.ts';

export type DoctorCliOptions = { config?: string; json?: boolean; repeat?: string; ca?: string; expectedStatus?: string };

export async function doctorCommand(url: string | undefined, o: DoctorCliOptions): Promise<number> {
  if (!url && !o.config) {
    process.stderr.write('lacquer doctor: give --config FILE (test every backend) or an origin URL\n');
    return 2;
  }
  let cfg: Config | undefined;
  if (o.config) {
    try {
      cfg = loadConfigFile(o.config);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      printProblems(o.config, err);
      return 2;
    }
  }
  let targets: Target[];
  try {
    const expected = o.expectedStatus === undefined ? undefined : Number(o.expectedStatus);
    if (expected !== undefined && !(Number.isInteger(expected) && expected >= 100 && expected <= 599)) throw new Error(`--expected-status ${o.expectedStatus}: expected an HTTP status 100-599`);
    targets = url ? [targetFromUrl(url, cfg, expected)] : targetsFromConfig(cfg!);
  } catch (err) {
    process.stderr.write(`lacquer doctor: ${(err as Error).message}\n`);
    return 2;
  }
  const repeat = o.repeat === undefined ? 3 : Number(o.repeat);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 100) {
    process.stderr.write(`lacquer doctor: --repeat ${o.repeat}: expected 1-100\n`);
    return 2;
  }
  const report: DoctorReport = await runDoctor(targets, { repeat, ca: o.ca ? readFileSync(o.ca) : undefined });
  // With a config, the listeners' own certificates are examined too (read from their files).
  const listeners = cfg && !url ? examineListeners(cfg.listen) : [];
  // Fleet mode: the shared Redis is checked too (connect, auth, latency, memory policy).
  const fleet = !url && cfg?.fleet ? await checkFleet(cfg.fleet) : undefined;
  process.stdout.write(o.json ? `${JSON.stringify({ ...report, listeners, ...(fleet ? { fleet } : {}) }, null, 2)}\n` : formatListeners(listeners) + formatReport(report) + (fleet ? formatFleet(fleet) : ''));
  return Math.max(report.exitCode, ...listeners.map((l) => SEVERITY_RANK[l.severity]), fleet ? SEVERITY_RANK[fleet.severity] : 0);
}
