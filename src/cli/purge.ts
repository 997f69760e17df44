// `lacquer purge …`: invalidation through the admin API of a running Lacquer (token rules of the admin plane).
import { request } from 'undici';
import { loadConfigFile } from '../config/load.ts';

export type PurgeOptions = {
  prefix?: string;
  regex?: string;
  tag?: string[];
  all?: boolean;
  soft?: boolean;
  admin?: string;
  token?: string;
  config?: string;
};

/** Where the admin API is, and its token: flags, then the config file, then the defaults. */
export function adminTarget(o: { admin?: string; token?: string; config?: string }): { base: string; token: string | undefined } {
  let base = o.admin ?? process.env.LACQUER_ADMIN;
  let token = o.token ?? process.env.LACQUER_ADMIN_TOKEN;
  if (o.config) {
    const cfg = loadConfigFile(o.config);
    base ??= `http://${cfg.admin.listen}`;
    token ??= cfg.admin.token;
  }
  return { base: (base ?? 'http://127.0.0.1:6082').replace(/\/$/, ''), token };
}

export async function purgeCommand(urls: string[], o: PurgeOptions): Promise<number> {
  const bodies: Record<string, unknown>[] = [];
  for (const url of urls) bodies.push({ url, soft: !!o.soft });
  if (o.prefix) bodies.push({ prefix: o.prefix, soft: !!o.soft });
  if (o.regex) bodies.push({ regex: o.regex, soft: !!o.soft });
  if (o.tag?.length) bodies.push({ tags: o.tag, soft: !!o.soft });
  if (o.all) bodies.push({ all: true, soft: !!o.soft });
  if (bodies.length === 0) {
    process.stderr.write('nothing to purge: give URLs, --prefix, --regex, --tag or --all\n');
    return 2;
  }
  const { base, token } = adminTarget(o);
  let failed = 0;
  for (const body of bodies) {
    try {
      const res = await request(`${base}/api/purge`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
      const reply = (await res.body.json()) as { purged?: number; kind?: string; mode?: string; message?: string };
      const what = JSON.stringify({ ...body, soft: undefined });
      if (res.statusCode === 200) process.stdout.write(`${what}: ${reply.purged} object${reply.purged === 1 ? '' : 's'} ${reply.mode === 'soft' ? 'marked stale' : 'purged'}\n`);
      else {
        failed++;
        process.stderr.write(`${what}: ${res.statusCode} ${reply.message ?? ''}\n`);
      }
    } catch (err) {
      process.stderr.write(`cannot reach the admin API at ${base}: ${(err as Error).message}\n`);
      return 2;
    }
  }
  return failed ? 1 : 0;
}
