// The test run's own temporary directory (issue 11 item 18: runs left lacquer-persist-*, lacquer-reload-* and
// demo logs in /tmp). Every test, and every process a test starts, gets TMPDIR pointing here; at the end the
// directory is removed, and the run fails if a test left a `lacquer-*` entry behind, naming it, so a cleanup
// that does not happen (a `process.on('exit')` in a worker that is never exited) is caught here.
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'lacquer-test-run-'));
  // mkdtemp makes it 0700: varnishd and nginx workers run as other users and could not reach the lab's files
  // below it ("Cannot read -f file …/v-tuned.vcl (Permission denied)"), though the lab's own directory is 0755.
  chmodSync(dir, 0o755);
  const before = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  return () => {
    const left = readdirSync(dir).filter((n) => n.startsWith('lacquer-'));
    rmSync(dir, { recursive: true, force: true });
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    if (left.length) {
      // vitest reports a teardown error but still exits 0: set the code ourselves.
      process.stderr.write(`\ntests left these in the temporary directory (clean up in afterAll/finally): ${left.join(', ')}\n`);
      process.exitCode = 1;
    }
  };
}
