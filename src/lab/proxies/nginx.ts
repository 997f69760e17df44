// nginx proxy_cache under test: `nginx -c FILE -p DIR` in the foreground (daemon off), pid, logs, temp
// and cache files in DIR. Tuned = proxy_cache_use_stale / _lock / _background_update, proxy_next_upstream
// with max_fails, upstream keep-alive and the scenario's timeouts; defaults = a cache zone and the upstream,
// every other directive at its default (no stale, no lock, proxy_next_upstream error timeout, 60 s timeouts,
// HTTP/1.0 without keep-alive to the upstream).
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { waitForPort, which, type ProcessGroup } from '../processes.ts';
import type { Availability, GeneratedConfig, LaunchInput, ProxyLauncher, RunningProxy, Variant } from './types.ts';

const INSTALL = 'apt-get update && apt-get install -y nginx   (Debian/Ubuntu; the lab runs nginx itself with its own config, the packaged service may stay stopped)';

const s = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

export function nginxConf(input: LaunchInput, variant: Variant): string {
  const d = input.dir;
  const tuned = variant === 'tuned';
  const servers = input.backends
    .map((b) => `    server ${b.host}:${b.port}${tuned ? ' max_fails=3 fail_timeout=5s' : ''};`)
    .join('\n');
  // Process-level settings are the same for both variants: they are about the lab machine, not resilience.
  // 4096 connections: a thundering herd of 500 clients plus as many upstream connections must fit.
  const common = `daemon off;
worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/nginx-error.log warn;
events { worker_connections 4096; }
`;
  const temp = `  client_body_temp_path ${d}/nginx-tmp/body;
  proxy_temp_path ${d}/nginx-tmp/proxy;
  fastcgi_temp_path ${d}/nginx-tmp/fastcgi;
  uwsgi_temp_path ${d}/nginx-tmp/uwsgi;
  scgi_temp_path ${d}/nginx-tmp/scgi;
  access_log ${d}/nginx-access.log combined buffer=64k flush=1s;`;
  if (!tuned) {
    return `# nginx with its shipped defaults: a cache zone, the upstream, proxy_cache on; everything else at its
# default (no proxy_cache_use_stale, no proxy_cache_lock, proxy_next_upstream error timeout, 60s timeouts,
# HTTP/1.0 without keep-alive to the upstream).
${common}
http {
${temp}
  proxy_cache_path ${d}/nginx-cache keys_zone=lab:10m;

  upstream lab {
${servers}
  }

  server {
    listen 127.0.0.1:${input.port};
    location / {
      proxy_pass http://lab;
      proxy_cache lab;
    }
  }
}
`;
  }
  return `# nginx configured for resilience as an experienced operator would: stale copies stand in for errors,
# timeouts and refreshes (proxy_cache_use_stale + background update), one request fills a missing object
# (proxy_cache_lock), failed or 502/503/504 answers are retried on the next server (proxy_next_upstream),
# a failing server is taken out for 5s after 3 failures (max_fails/fail_timeout), keep-alive upstream.
${common}
http {
${temp}
  proxy_cache_path ${d}/nginx-cache levels=1:2 keys_zone=lab:10m max_size=256m inactive=1h use_temp_path=off;

  upstream lab {
${servers}
    keepalive 32;
  }

  server {
    listen 127.0.0.1:${input.port};
    location / {
      proxy_pass http://lab;
      proxy_http_version 1.1;
      proxy_set_header Connection "";

      proxy_connect_timeout ${s(input.tuning.connectMs)};
      # nginx has one read timeout for the header and between body reads: the first-byte limit is the one
      # that matters to clients (the lab's bodies are sent at once).
      proxy_read_timeout ${s(input.tuning.firstByteMs)};
      proxy_send_timeout ${s(input.tuning.betweenBytesMs)};

      proxy_cache lab;
      proxy_cache_revalidate on;
      proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
      proxy_cache_background_update on;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 5s;

      proxy_next_upstream error timeout http_502 http_503 http_504;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 10s;
    }
  }
}
`;
}

export const nginxLauncher: ProxyLauncher = {
  kind: 'nginx',
  variants: ['tuned', 'default'],
  available(): Availability {
    const bin = which('nginx');
    if (!bin) return { ok: false, why: 'nginx not found', install: INSTALL };
    const r = spawnSync(bin, ['-v'], { encoding: 'utf8', timeout: 5000 });
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
    if (r.status !== 0) return { ok: false, why: `nginx -v failed: ${text || r.error?.message}`, install: INSTALL };
    return { ok: true, version: text.replace(/^nginx version:\s*/, '') };
  },
  config(input, variant): GeneratedConfig {
    return { fileName: `nginx-${variant}.conf`, text: nginxConf(input, variant) };
  },
  async start(input, variant, group: ProcessGroup): Promise<RunningProxy> {
    const bin = which('nginx');
    if (!bin) throw new Error(`nginx not found; install it: ${INSTALL}`);
    const cfg = this.config(input, variant);
    const file = path.join(input.dir, cfg.fileName);
    writeFileSync(file, cfg.text);
    chmodSync(file, 0o644);
    const logFile = path.join(input.dir, 'nginx.log');
    mkdirSync(path.join(input.dir, 'nginx-tmp'), { recursive: true });
    // -e: the error log before the config is read (otherwise nginx tries /var/log/nginx/error.log).
    const child = group.spawn('nginx', bin, ['-c', file, '-p', input.dir, '-e', path.join(input.dir, 'nginx-error.log')], { logFile, group: true });
    await waitForPort(input.port, 15_000, child);
    return {
      url: `http://127.0.0.1:${input.port}`,
      pid: child.pid,
      hasExited: () => child.hasExited(),
      configFile: file,
      logFiles: [logFile, path.join(input.dir, 'nginx-error.log'), path.join(input.dir, 'nginx-access.log')],
      stop: () => child.stop(5000),
    };
  },
};
