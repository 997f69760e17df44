// `lacquer check --config FILE`: validate only. Exit 0 and `ok`, or exit 1 with every problem.
import { ConfigError, formatProblem, loadConfigFile } from '../config/load.ts';
import { deprecationNotes } from '../config/schema.ts';
import { certificateWarnings } from '../server/tls.ts';

export function checkCommand(file: string): number {
  try {
    const config = loadConfigFile(file);
    for (const note of deprecationNotes(config)) process.stderr.write(`note: ${note}
`);
    // Certificate files were checked by the schema (exist, parse, key matches); expiry is only a warning.
    for (const w of certificateWarnings(config.listen)) process.stderr.write(`warning: ${w}
`);
    process.stdout.write('ok\n');
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    printProblems(file, err);
    return 1;
  }
}

export function printProblems(file: string, err: ConfigError): void {
  process.stderr.write(`${file}: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}\n`);
  for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
}
