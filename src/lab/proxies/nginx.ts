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

/** Debian runs the workers as www-data; as root the bench does the same, so its directories must be reachable. */
function workerUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined; // `user` only applies when the master runs as root
  return spawnSync('id', ['-u', 'www-data']).status === 0 ? 'www-data' : undefined;
}

/**
 * The `bench` variant (npm run bench): Debian's shipped nginx.conf (worker_processes auto, worker_connections
 * 768, sendfile, an unbuffered `combined` access log to a file, gzip on) without its `tcp_nopush on` (below),
 * plus the smallest cache an operator would add: one keys_zone, `proxy_cache` on, everything else at its
 * default. So the origin's Cache-Control decides (max-age is stored, no-store is a pass), and the upstream
 * is spoken to in HTTP/1.0 without keep-alive — nginx's default; `upstreamKeepalive` adds `keepalive 32`.
 * `add_header X-Cache-Status $upstream_cache_status` lets the bench check that a hit is a hit.
 */
function benchConf(input: LaunchInput, user: string | undefined): string {
  const d = input.dir;
  const b = input.backends[0]!;
  const ka = input.upstreamKeepalive ?? false;
  return [
    '# Generated for npm run bench: Debian 12\'s nginx.conf with its paths moved into the run directory,',
    '# plus one proxy cache at its defaults. The origin\'s Cache-Control decides what is stored.',
    'daemon off;',
    ...(user ? [`user ${user};`] : []),
    'worker_processes auto;',
    `pid ${d}/nginx.pid;`,
    `error_log ${d}/nginx-error.log;`,
    'events {',
    '  worker_connections 768;',
    '}',
    'http {',
    '  sendfile on;',
    // Debian ships `tcp_nopush on`. Over loopback (MSS ~64 KiB) with sendfile, it made every 100 KiB hit
    // wait for a 40 ms delayed ACK: 1.8k req/s, p50 44 ms, 25 req/s on a single connection; 19.5k req/s
    // without it. A 1,500-byte MTU would not show this, so the bench leaves it at nginx's default (off).
    "  # tcp_nopush on;   (Debian's default; off here: over loopback it stalls 100 KiB hits for 40 ms)",
    '  types_hash_max_size 2048;',
    '  default_type application/octet-stream;',
    `  access_log ${d}/nginx-access.log;   # combined, unbuffered: as shipped`,
    '  gzip on;',
    `  client_body_temp_path ${d}/nginx-tmp/body;`,
    `  proxy_temp_path ${d}/nginx-tmp/proxy;`,
    `  fastcgi_temp_path ${d}/nginx-tmp/fastcgi;`,
    `  uwsgi_temp_path ${d}/nginx-tmp/uwsgi;`,
    `  scgi_temp_path ${d}/nginx-tmp/scgi;`,
    `  proxy_cache_path ${d}/nginx-cache levels=1:2 keys_zone=bench:10m max_size=${input.cacheMemory ?? '256m'};`,
    ...(ka ? ['  upstream origin {', `    server ${b.host}:${b.port};`, '    keepalive 32;', '  }'] : []),
    '  server {',
    `    listen 127.0.0.1:${input.port};`,
    '    location / {',
    `      proxy_pass http://${ka ? 'origin' : `${b.host}:${b.port}`};`,
    ...(ka ? ['      proxy_http_version 1.1;', '      proxy_set_header Connection "";'] : []),
    '      proxy_cache bench;',
    '      add_header X-Cache-Status $upstream_cache_status always;',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

export function nginxConf(input: LaunchInput, variant: Variant): string {
  if (variant === 'bench') return benchConf(input, workerUser());
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
    // bench runs the workers as www-data when root (Debian's default): they must reach the cache directory.
    if (variant === 'bench' && workerUser()) chmodSync(input.dir, 0o711);
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
