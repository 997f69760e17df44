// Varnish under test: `varnishd -F -n DIR -a 127.0.0.1:PORT -f FILE.vcl -s malloc,256m`, with a generated
// VCL. Tuned = what the Varnish documentation recommends for resilience (probes, a round-robin director,
// grace with full grace only while the backends are sick, retries in vcl_backend_error and on 5xx,
// abandoning a failed background fetch so the graced copy stays); defaults = the same backends in a
// round-robin director and nothing else (built-in VCL, default_grace 10 s, 60 s first-byte timeout).
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { waitForPort, which, type ProcessGroup } from '../processes.ts';
import type { Availability, GeneratedConfig, LaunchInput, ProxyLauncher, RunningProxy, Variant } from './types.ts';

const INSTALL = 'apt-get update && apt-get install -y varnish   (Debian/Ubuntu; the lab runs varnishd itself, the packaged service may stay stopped)';

const s = (ms: number) => `${ms / 1000}s`;

function backends(input: LaunchInput, tuned: boolean): string {
  return input.backends
    .map((b) => {
      const lines = [`backend ${b.name.replace(/[^A-Za-z0-9_]/g, '_')} {`, `  .host = "${b.host}";`, `  .port = "${b.port}";`];
      if (tuned) {
        lines.push(
          `  .connect_timeout = ${s(input.tuning.connectMs)};`,
          `  .first_byte_timeout = ${s(input.tuning.firstByteMs)};`,
          `  .between_bytes_timeout = ${s(input.tuning.betweenBytesMs)};`,
          '  .probe = health;',
        );
      }
      lines.push('}');
      return lines.join('\n');
    })
    .join('\n\n');
}

function director(input: LaunchInput): string {
  const adds = input.backends.map((b) => `  lab.add_backend(${b.name.replace(/[^A-Za-z0-9_]/g, '_')});`).join('\n');
  return `sub vcl_init {\n  new lab = directors.round_robin();\n${adds}\n}`;
}

export function varnishVcl(input: LaunchInput, variant: Variant): string {
  // bench: the same shipped defaults (builtin VCL: `no-store` becomes a hit-for-miss pass), measured for speed.
  if (variant === 'default' || variant === 'bench') {
    return `vcl 4.1;
# Varnish with its shipped defaults: the backends in a round-robin director (needed to use more than one),
# everything else from the built-in VCL and default parameters (default_grace 10s, first_byte_timeout 60s,
# no probes, no retries).
import directors;

${backends(input, false)}

${director(input)}

sub vcl_recv {
  set req.backend_hint = lab.backend();
}
`;
  }
  return `vcl 4.1;
# Varnish configured for resilience as an experienced operator would (Varnish User's Guide, "Grace mode and
# keep", "Health checks"; vcl_backend_error retries): probes mark a dead backend sick within ~2 s, the
# round-robin director skips sick backends, failed fetches are retried on the next backend, 5xx answers are
# retried and never replace a graced copy, and objects are kept 1 h past their TTL to stand in for errors.
import std;
import directors;

probe health {
  .url = "${input.healthPath}";
  .interval = 1s;
  .timeout = 500ms;
  .window = 3;
  .threshold = 2;
  .initial = 2;
}

${backends(input, true)}

${director(input)}

sub vcl_recv {
  set req.backend_hint = lab.backend();
  # Serve objects at most 10 s past their TTL while the backends are healthy (then fetch), the full
  # beresp.grace when they are not.
  if (std.healthy(req.backend_hint)) {
    set req.grace = 10s;
  }
}

sub vcl_backend_response {
  # Retry origin errors on the next backend (the director is resolved again on retry).
  if (beresp.status >= 500 && bereq.retries < 2) {
    return (retry);
  }
  # A failed background refresh must not replace the graced copy.
  if (beresp.status >= 500 && bereq.is_bgfetch) {
    return (abandon);
  }
  # A foreground fetch relays the error, without the built-in 2-minute hit-for-miss for the URL.
  if (beresp.status >= 500) {
    set beresp.ttl = 1s;
    set beresp.uncacheable = true;
    return (deliver);
  }
  set beresp.grace = 1h;
}

sub vcl_backend_error {
  # Connection refused/reset, first-byte timeout...: try the next backend.
  if (bereq.retries < 2) {
    return (retry);
  }
}
`;
}

export const varnishLauncher: ProxyLauncher = {
  kind: 'varnish',
  variants: ['tuned', 'default'],
  available(): Availability {
    const bin = which('varnishd');
    if (!bin) return { ok: false, why: 'varnishd not found', install: INSTALL };
    const r = spawnSync(bin, ['-V'], { encoding: 'utf8', timeout: 5000 });
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
    if (r.status !== 0 || !text.startsWith('varnishd')) return { ok: false, why: `varnishd -V failed: ${text || r.error?.message}`, install: INSTALL };
    return { ok: true, version: text };
  },
  config(input, variant): GeneratedConfig {
    return { fileName: `varnish-${variant}.vcl`, text: varnishVcl(input, variant) };
  },
  async start(input, variant, group: ProcessGroup): Promise<RunningProxy> {
    const bin = which('varnishd');
    if (!bin) throw new Error(`varnishd not found; install it: ${INSTALL}`);
    const cfg = this.config(input, variant);
    const file = path.join(input.dir, cfg.fileName);
    writeFileSync(file, cfg.text);
    chmodSync(file, 0o644);
    const work = path.join(input.dir, 'varnish-work');
    mkdirSync(work, { recursive: true });
    chmodSync(work, 0o755);
    const logFile = path.join(input.dir, 'varnishd.log');
    // -F: foreground (the lab owns the process); -T none: no management port to collide with others.
    const args = ['-F', '-n', work, '-a', `127.0.0.1:${input.port}`, '-f', file, '-s', `malloc,${input.cacheMemory ?? '256m'}`, '-T', 'none'];
    const child = group.spawn('varnishd', bin, args, { logFile, group: true });
    await waitForPort(input.port, 20_000, child);
    return { url: `http://127.0.0.1:${input.port}`, pid: child.pid, hasExited: () => child.hasExited(), configFile: file, logFiles: [logFile], stop: () => child.stop(5000) };
  },
};
