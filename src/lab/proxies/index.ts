// The proxies the lab knows, and the targets (proxy + config variant) it compares.
import { lacquerLauncher } from './lacquer.ts';
import { nginxLauncher } from './nginx.ts';
import { targetOf, type ProxyKind, type ProxyLauncher, type Target } from './types.ts';
import { varnishLauncher } from './varnish.ts';

export const LAUNCHERS: Record<ProxyKind, ProxyLauncher> = { lacquer: lacquerLauncher, varnish: varnishLauncher, nginx: nginxLauncher };

/** What `--proxy all` runs: Lacquer as configured for the scenario, Varnish and nginx tuned and with defaults. */
export const ALL_TARGETS: readonly Target[] = [
  targetOf('lacquer', 'tuned'),
  targetOf('varnish', 'tuned'),
  targetOf('varnish', 'default'),
  targetOf('nginx', 'tuned'),
  targetOf('nginx', 'default'),
];

/** `lacquer|varnish|nginx|all`, or a target id such as `varnish-tuned` or `lacquer-default`; comma-separated. */
export function parseTargets(spec: string): Target[] {
  const out: Target[] = [];
  for (const part of spec.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (part === 'all') out.push(...ALL_TARGETS);
    else if (part === 'lacquer') out.push(targetOf('lacquer', 'tuned'));
    else if (part === 'varnish' || part === 'nginx') out.push(targetOf(part, 'tuned'), targetOf(part, 'default'));
    else {
      const m = /^(lacquer|varnish|nginx)-(tuned|default)$/.exec(part);
      if (!m) throw new Error(`unknown proxy "${part}": use lacquer, varnish, nginx, all, or e.g. varnish-tuned, nginx-default, lacquer-default`);
      out.push(targetOf(m[1] as ProxyKind, m[2] as 'tuned' | 'default'));
    }
  }
  return out.filter((t, i) => out.findIndex((x) => x.id === t.id) === i);
}

export { targetOf };
export type { Target };
