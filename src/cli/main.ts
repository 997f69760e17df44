#!/usr/bin/env node
// `lacquer` command line: one file per verb under src/cli/.
import { Command } from 'commander';
import { checkCommand } from './check.ts';
import { serveCommand } from './serve.ts';
import { demoCommand } from './demo.ts';

const program = new Command()
  .name('lacquer')
  .description('A caching reverse proxy that serves stale instead of failing, and explains every failure it cannot hide.')
  .showHelpAfterError();

program
  .command('serve')
  .description('run the proxy')
  .requiredOption('-c, --config <file>', 'YAML configuration file')
  .action(async (o: { config: string }) => {
    await serveCommand(o.config);
  });

program
  .command('check')
  .description('validate a configuration file: prints ok, or every problem as `path: received value — what is valid`')
  .requiredOption('-c, --config <file>', 'YAML configuration file')
  .action((o: { config: string }) => process.exit(checkCommand(o.config)));

program
  .command('demo')
  .description('run Lacquer on the bundled example in front of bundled demo origins, and show a hit, a stale serve and an explained 503')
  .option('-c, --config <file>', 'YAML configuration file', 'examples/lacquer.yaml')
  .option('--no-walkthrough', 'only start the origins and the proxy')
  .action((o: { config: string; walkthrough: boolean }) => demoCommand(o.config, o.walkthrough));

await program.parseAsync(process.argv);
