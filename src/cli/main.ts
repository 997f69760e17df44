#!/usr/bin/env node
// `lacquer` command line: one file per verb under src/cli/.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { reexecWithHeapFlags } from '../ops/node-flags.ts';
import type { PurgeOptions } from './purge.ts';
import type { DoctorCliOptions } from './doctor.ts';
import type { LogsCliOptions } from './logs.ts';

// `serve` runs for good: it gets its V8 heap flags before anything is loaded (ops/node-flags.ts). A worker
// of `workers: N` already has them from the primary.
if (process.argv[2] === 'serve' && !process.env.NODE_UNIQUE_ID) reexecWithHeapFlags();

const program = new Command()
  .name('lacquer')
  .description('A caching reverse proxy that serves stale instead of failing, and explains every failure it cannot hide.')
  .version(packageVersion(), '-V, --version', 'print the version')
  .showHelpAfterError();

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

program
  .command('serve')
  .description('run the proxy')
  .requiredOption('-c, --config <file>', 'YAML configuration file')
  .option('--workers <n>', 'worker processes (a number, or `auto` for one per core); overrides `workers` in the file')
  .action(async (o: { config: string; workers?: string }) => {
    // Every verb loads its modules on use, so e.g. `lacquer logs` does not carry the proxy in its heap.
    const { serveCommand } = await import('./serve.ts');
    await serveCommand(o.config, { workers: o.workers });
  });

program
  .command('check')
  .description('validate a configuration file: prints ok, or every problem as `path: received value — what is valid`')
  .requiredOption('-c, --config <file>', 'YAML configuration file')
  .action(async (o: { config: string }) => {
    const { checkCommand } = await import('./check.ts');
    process.exit(checkCommand(o.config));
  });

program
  .command('demo')
  .description('run Lacquer on the bundled example in front of bundled demo origins, and show a hit, a stale serve and an explained 503')
  .option('-c, --config <file>', 'YAML configuration file', 'examples/lacquer.yaml')
  .option('--no-walkthrough', 'only start the origins and the proxy')
  .action(async (o: { config: string; walkthrough: boolean }) => {
    const { demoCommand } = await import('./demo.ts');
    await demoCommand(o.config, o.walkthrough);
  });

program
  .command('purge')
  .description('invalidate cached objects through the admin API of a running Lacquer; prints how many objects each purge hit')
  .argument('[urls...]', 'URLs to purge, every Vary variant (http://host/path or host/path)')
  .option('--prefix <prefix>', 'ban everything under a prefix: /path/ (any host) or host/path/')
  .option('--regex <re>', 'ban everything whose host + path + query matches a regular expression')
  .option('--tag <tag...>', 'purge objects tagged by Surrogate-Key / Cache-Tag')
  .option('--all', 'purge everything')
  .option('--soft', 'mark stale instead of removing: the next request revalidates, stale still covers a failing origin')
  .option('-c, --config <file>', 'read the admin address and token from this config')
  .option('--admin <url>', 'admin API base URL (default http://127.0.0.1:6082, or $LACQUER_ADMIN)')
  .option('--token <token>', 'admin token (or $LACQUER_ADMIN_TOKEN)')
  .action(async (urls: string[], o: PurgeOptions) => {
    const { purgeCommand } = await import('./purge.ts');
    process.exitCode = await purgeCommand(urls, o);
  });

program
  .command('doctor')
  .description('test every backend of a config (or one origin URL) directly — DNS, TCP, TLS, HTTP — and say what will break; exit 0 ok, 1 warnings, 2 failures')
  .argument('[url]', 'one origin URL to test (its path is the probe path), instead of every backend')
  .option('-c, --config <file>', 'YAML configuration file: test every backend against its settings')
  .option('--json', 'print the report as JSON')
  .option('--repeat <n>', 'HTTP requests per backend, for spread', '3')
  .option('--expected-status <status>', 'status the URL should answer (with a URL; default 200)')
  .option('--ca <file>', 'extra trusted CA certificates (PEM), as NODE_EXTRA_CA_CERTS would give Lacquer')
  .action(async (url: string | undefined, o: DoctorCliOptions) => {
    // Loaded on use: the other verbs do not pay for it.
    const { doctorCommand } = await import('./doctor.ts');
    process.exitCode = await doctorCommand(url, o);
  });

program
  .command('logs')
  .description('analyse access logs (Lacquer JSON, varnishncsa default, nginx combined): 5xx per minute, top failure classes, backends and paths, bursts, hints')
  .argument('[files...]', 'log files; none or `-` reads stdin')
  .option('--json', 'print the analysis as JSON')
  .option('--burst-threshold <n>', '5xx per minute at or above which a minute belongs to a burst', '5')
  .option('--top <n>', 'entries in each top list', '10')
  .action(async (files: string[], o: LogsCliOptions) => {
    const { logsCommand } = await import('./logs.ts');
    process.exitCode = await logsCommand(files, o);
  });

// The long-running verb does not load the lab (32 modules) only to register `lab`: idle RSS (issue 12).
if (process.argv[2] !== 'serve') (await import('./lab.ts')).registerLab(program.command('lab'));

await program.parseAsync(process.argv);
