// The deployment files (issue 13): every Kubernetes manifest validated against the Kubernetes OpenAPI
// schemas bundled in `kubernetes-models` (offline, ajv); the Lacquer configurations they carry validated by
// Lacquer's own schema; the Dockerfile and compose file parsed and checked for what they promise; the
// systemd unit verified by `systemd-analyze verify` where it exists.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { validateConfig } from '../src/config/load.ts';
import { ROOT } from './spawn-node.ts';

const K8S = path.join(ROOT, 'deploy/kubernetes');

type Manifest = { apiVersion: string; kind: string; metadata?: { name?: string }; [k: string]: unknown };

/** apiVersion + kind → the kubernetes-models module that holds its schema. */
async function modelFor(m: Manifest): Promise<new (o: unknown) => { validate(): void }> {
  const [group, version] = m.apiVersion.includes('/') ? m.apiVersion.split('/') : ['', m.apiVersion];
  const dir = group === '' ? version : `${group}/${version}`;
  const mod = (await import(`kubernetes-models/${dir}/${m.kind}`)) as Record<string, new (o: unknown) => { validate(): void }>;
  const cls = mod[m.kind];
  if (!cls) throw new Error(`no schema for ${m.apiVersion} ${m.kind}`);
  return cls;
}

function manifests(): { file: string; doc: Manifest }[] {
  const out: { file: string; doc: Manifest }[] = [];
  for (const file of readdirSync(K8S).filter((f) => f.endsWith('.yaml'))) {
    for (const d of parseAllDocuments(readFileSync(path.join(K8S, file), 'utf8'))) {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
      const doc = d.toJS() as Manifest | null;
      if (doc) out.push({ file, doc });
    }
  }
  return out;
}

/** A Lacquer config text with ${VAR} filled in, validated by the real schema. */
function validLacquerConfig(text: string): ReturnType<typeof validateConfig> {
  const filled = text.replace(/\$\{([A-Z_]+)(:-([^}]*))?\}/g, (_m, _name: string, _d, def: string | undefined) => def ?? 'placeholder-secret');
  return validateConfig(parseYaml(filled));
}

describe('deploy/kubernetes', () => {
  const all = manifests();

  it('every manifest validates against the Kubernetes schemas', async () => {
    const kinds = all.filter((m) => m.doc.kind !== 'Kustomization').map((m) => m.doc.kind);
    expect(kinds).toEqual(expect.arrayContaining(['ConfigMap', 'Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'Secret']));
    for (const { file, doc } of all) {
      if (doc.kind === 'Kustomization') continue; // a kustomize file, not an API object
      const Model = await modelFor(doc);
      expect(() => new Model(doc).validate(), `${file} ${doc.kind}/${doc.metadata?.name}`).not.toThrow();
    }
  });

  it('the validator rejects a broken manifest (so the check above can fail)', async () => {
    const dep = structuredClone(all.find((m) => m.doc.kind === 'Deployment')!.doc) as { spec: { template: { spec: { containers: { ports: { containerPort: unknown }[] }[] } } } } & Manifest;
    dep.spec.template.spec.containers[0]!.ports[0]!.containerPort = 'http';
    const Model = await modelFor(dep);
    expect(() => new Model(dep).validate()).toThrow(/containerPort/);
  });

  it('the Deployment probes /readyz and /healthz, drains before stop, and mounts the ConfigMap whose config Lacquer accepts', () => {
    const dep = all.find((m) => m.doc.kind === 'Deployment')!.doc as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    const pod = dep.spec.template.spec;
    const c = pod.containers[0];
    expect(c.readinessProbe.exec.command.join(' ')).toContain('/readyz');
    expect(c.livenessProbe.exec.command.join(' ')).toContain('/healthz');
    expect(c.lifecycle.preStop).toBeDefined();
    expect(c.resources.requests.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    const cm = all.find((m) => m.doc.kind === 'ConfigMap')!.doc as unknown as { metadata: { name: string }; data: Record<string, string> };
    expect(pod.volumes.find((v: { configMap?: { name: string } }) => v.configMap)?.configMap.name).toBe(cm.metadata.name);
    const cfg = validLacquerConfig(cm.data['lacquer.yaml']!);
    expect(cfg.fleet?.redis).toMatch(/^redis:\/\/.*lacquer-redis:6379/);
    // The grace period outlasts the drain plus the preStop pause.
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(cfg.proxy.drain_timeout + 5000);
    // The HPA and PDB select this Deployment.
    expect((all.find((m) => m.doc.kind === 'HorizontalPodAutoscaler')!.doc as any).spec.scaleTargetRef.name).toBe(dep.metadata.name); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect((all.find((m) => m.doc.kind === 'PodDisruptionBudget')!.doc as any).spec.selector.matchLabels).toEqual(dep.spec.selector.matchLabels); // eslint-disable-line @typescript-eslint/no-explicit-any
  });
});

/** Dockerfile instructions (continuation lines joined, comments dropped). */
function dockerInstructions(text: string): { op: string; args: string }[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });
}

describe('Dockerfile and compose', () => {
  it('Dockerfile: multi-stage on Node 24 slim, non-root, HEALTHCHECK on /healthz, `serve -c /etc/lacquer/lacquer.yaml`', () => {
    const ins = dockerInstructions(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
    const known = new Set(['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'STOPSIGNAL', 'HEALTHCHECK', 'ENTRYPOINT', 'CMD', 'ARG', 'LABEL']);
    expect(ins.filter((i) => !known.has(i.op))).toEqual([]);
    const froms = ins.filter((i) => i.op === 'FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f.args).toMatch(/^node:24-slim\b/);
    const user = ins.filter((i) => i.op === 'USER').at(-1);
    expect(user?.args).not.toMatch(/^(root|0)$/);
    expect(ins.find((i) => i.op === 'HEALTHCHECK')?.args).toContain('/healthz');
    const cmd = [...JSON.parse(ins.find((i) => i.op === 'ENTRYPOINT')!.args), ...JSON.parse(ins.find((i) => i.op === 'CMD')!.args)].join(' ');
    expect(cmd).toMatch(/bin\/lacquer\.js serve -c \/etc\/lacquer\/lacquer\.yaml$/);
    // Every COPY source exists in the repository (a typo would break the build).
    for (const c of ins.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
      const parts = c.args.split(/\s+/);
      for (const src of parts.slice(0, -1)) expect(() => readFileSync(path.join(ROOT, src)), src).not.toThrow(/ENOENT/);
    }
    // The image's default config is one Lacquer accepts.
    expect(validLacquerConfig(readFileSync(path.join(ROOT, 'deploy/lacquer.yaml'), 'utf8')).listen[0]!.address).toBe('0.0.0.0:6081');
  });

  it('compose: two Lacquer instances sharing Redis, the demo origin, a config Lacquer accepts', () => {
    const c = parseYaml(readFileSync(path.join(ROOT, 'deploy/compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, { command?: string[]; volumes?: string[]; image?: string }> };
    const lacquers = Object.entries(c.services).filter(([n]) => n.startsWith('lacquer'));
    expect(lacquers.length).toBe(2);
    expect(c.services['redis']?.image).toMatch(/^redis:/);
    expect(c.services['origin']?.command?.join(' ')).toContain('lab origin');
    const mount = lacquers[0]![1].volumes![0]!.split(':')[0]!;
    const cfg = validLacquerConfig(readFileSync(path.join(ROOT, 'deploy', mount), 'utf8'));
    expect(cfg.fleet?.redis).toBe('redis://redis:6379/0');
  });
});

describe('deploy/systemd', () => {
  const unit = readFileSync(path.join(ROOT, 'deploy/systemd/lacquer.service'), 'utf8');

  it('reloads with SIGHUP, restarts on failure, is hardened', () => {
    const kv = new Map<string, string[]>();
    for (const l of unit.split('\n')) {
      const m = /^([A-Za-z]+)=(.*)$/.exec(l.trim());
      if (m) kv.set(m[1]!, [...(kv.get(m[1]!) ?? []), m[2]!]);
    }
    expect(kv.get('ExecReload')?.[0]).toMatch(/kill -HUP \$MAINPID/);
    expect(kv.get('Restart')?.[0]).toBe('on-failure');
    expect(kv.get('ExecStart')?.[0]).toMatch(/lacquer\.js serve -c \/etc\/lacquer\/lacquer\.yaml$/);
    for (const k of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'CapabilityBoundingSet', 'SystemCallFilter']) expect(kv.has(k), k).toBe(true);
  });

  it('passes `systemd-analyze verify` (when systemd-analyze is installed)', () => {
    let tool: string;
    try {
      tool = execFileSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).trim();
    } catch {
      return; // not on this machine: the structural checks above still ran
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'lacquer-unit-'));
    try {
      // verify checks that ExecStart's binary exists: point it at this Node.
      writeFileSync(path.join(dir, 'lacquer.service'), unit.replace('ExecStart=/usr/bin/node', `ExecStart=${process.execPath}`));
      const verify = (file: string) => {
        const r = spawnSync(tool, ['verify', path.join(dir, file)], { encoding: 'utf8' });
        return `${r.status} ${r.stdout}${r.stderr}`.trim();
      };
      // No warning at all, exit 0.
      expect(verify('lacquer.service')).toBe('0');
      // And it does object to a broken unit.
      writeFileSync(path.join(dir, 'broken.service'), readFileSync(path.join(dir, 'lacquer.service'), 'utf8').replace('Restart=on-failure', 'Restart=sometimes'));
      expect(verify('broken.service')).toMatch(/restart specifier/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
