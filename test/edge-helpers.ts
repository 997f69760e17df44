// Test PKI for the edge tests: a root CA, an intermediate, and leaf certificates made with the openssl CLI
// in a temp dir that `close()` removes. Leaf files hold the leaf and the intermediate (a real chain), so
// a client that trusts only the root verifies them only if the chain is sent.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Pair = { cert: string; key: string };

export type Pki = {
  dir: string;
  /** Path of the root CA certificate (PEM). */
  ca: string;
  caPem: Buffer;
  /** A leaf for `names` (DNS names), valid `days` days, signed by the intermediate; `as` names its files. */
  issue(as: string, names: string[], days?: number): Pair;
  close(): void;
};

const openssl = (dir: string, args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'lacquer-edge-pki-'));
  openssl(dir, ['req', '-x509', ...EC, '-keyout', 'root.key', '-out', 'root.pem', '-days', '30', '-subj', '/CN=Lacquer Test Root CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  writeFileSync(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
  openssl(dir, ['req', ...EC, '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/CN=Lacquer Test Intermediate']);
  openssl(dir, ['x509', '-req', '-in', 'int.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'int.pem', '-days', '30', '-extfile', 'ca.ext']);
  const ca = join(dir, 'root.pem');
  return {
    dir,
    ca,
    caPem: readFileSync(ca),
    issue(as, names, days = 20) {
      writeFileSync(join(dir, `${as}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
      openssl(dir, ['req', ...EC, '-keyout', `${as}.key`, '-out', `${as}.csr`, '-subj', `/CN=${names[0]}`]);
      openssl(dir, ['x509', '-req', '-in', `${as}.csr`, '-CA', 'int.pem', '-CAkey', 'int.key', '-CAcreateserial', '-out', `${as}.leaf.pem`, '-days', String(days), '-extfile', `${as}.ext`]);
      writeFileSync(join(dir, `${as}.pem`), Buffer.concat([readFileSync(join(dir, `${as}.leaf.pem`)), readFileSync(join(dir, 'int.pem'))]));
      return { cert: join(dir, `${as}.pem`), key: join(dir, `${as}.key`) };
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { validateConfig } from '../src/config/load.ts';
import { startProxy, type Proxy } from '../src/main.ts';
import { LogCapture } from './helpers.ts';

export type Edge = {
  proxy: Proxy;
  log: LogCapture;
  /** Requests the origin received, by path. */
  count(path?: string): number;
  /** Request heads the origin received. */
  seen: IncomingMessage[];
  close(): Promise<void>;
};

/** A Lacquer in front of one scripted origin (a plain handler), with `config` merged over the basics. */
export async function startEdge(handler: (req: IncomingMessage, res: ServerResponse) => void, config: Record<string, unknown> = {}, o: { file?: string } = {}): Promise<Edge> {
  const seen: IncomingMessage[] = [];
  const origin = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const log = new LogCapture();
  const raw = { listen: '127.0.0.1:0', backends: [{ name: 'app', url }], admin: { listen: '127.0.0.1:0' }, ...config };
  // With `file`, the config is also written there (YAML is a superset of JSON), so reload() re-reads it.
  if (o.file) writeFileSync(o.file, JSON.stringify(raw));
  const proxy = await startProxy(validateConfig(raw), { logDestination: log, configFile: o.file });
  return {
    proxy,
    log,
    seen,
    count: (path) => seen.filter((r) => path === undefined || r.url === path).length,
    async close() {
      await proxy.stop();
      origin.closeAllConnections();
      await new Promise<void>((r) => origin.close(() => r()));
    },
  };
}

/** A PKI for a whole test file: made before its first test, removed after its last. */
export function filePki(): () => Pki {
  let pki: Pki | undefined;
  beforeAll(() => {
    pki = makePki();
  });
  afterAll(() => pki?.close());
  return () => pki!;
}
