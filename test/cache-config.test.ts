// The two stale settings (issue 10): `cache.stale_if_error` and `cache.stale_while_revalidate`, and
// `grace` as a deprecated alias that `lacquer check` explains — globally and per route.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.ts';
import { deprecationNotes } from '../src/config/schema.ts';
import { lacquer } from './spawn-node.ts';

const dir = mkdtempSync(join(tmpdir(), 'lacquer-cache-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const backends = [{ name: 'a', url: 'http://127.0.0.1:9' }];

describe('stale settings', () => {
  it('defaults: stale_if_error 1d, stale_while_revalidate 0 (RFC 9111 §4.2.4), cookie_requests pass', () => {
    const c = validateConfig({ backends }).cache;
    expect([c.stale_if_error, c.stale_while_revalidate, c.grace, c.cookie_requests]).toEqual([86_400_000, 0, undefined, 'pass']);
    expect(deprecationNotes(validateConfig({ backends }))).toEqual([]);
  });

  it('grace is an alias of stale_if_error only, and stale_if_error wins when both are set', () => {
    const c = validateConfig({ backends, cache: { grace: '1h' } }).cache;
    expect([c.stale_if_error, c.stale_while_revalidate]).toEqual([3_600_000, 0]);
    expect(validateConfig({ backends, cache: { grace: '1h', stale_if_error: '10m' } }).cache.stale_if_error).toBe(600_000);
  });

  it('an invalid value is reported with its path and what is valid', () => {
    expect(() => validateConfig({ backends, cache: { stale_if_error: 'soon', stale_while_revalidate: 'later' } })).toThrow(
      /cache\.stale_if_error: "soon" — a duration like 250ms[^\n]*\ncache\.stale_while_revalidate: "later" — a duration/,
    );
  });

  it('deprecationNotes explains grace, globally and per route', () => {
    const cfg = validateConfig({ backends, cache: { grace: '1h' }, routes: [{ path_prefix: '/a', pool: 'default', grace: '5m' }, { path_prefix: '/b', pool: 'default', grace: '5m', stale_if_error: '1m' }] });
    const notes = deprecationNotes(cfg);
    expect(notes).toHaveLength(3);
    expect(notes[0]).toMatch(/^cache\.grace: 1h — deprecated, read as `cache\.stale_if_error: 1h`.*set `cache\.stale_while_revalidate`/);
    expect(notes[1]).toMatch(/^routes\[0\]\.grace: 5m — deprecated, read as `routes\[0\]\.stale_if_error: 5m`/);
    expect(notes[2]).toMatch(/^routes\[1\]\.grace: 5m — deprecated, ignored: `routes\[1\]\.stale_if_error` is set/);
  });

  it('`lacquer check` prints ok and the note on stderr, exit 0', async () => {
    const file = join(dir, 'grace.yaml');
    writeFileSync(file, 'listen: 127.0.0.1:0\ncache:\n  grace: 2h\nbackends:\n  - name: a\n    url: http://127.0.0.1:9\n');
    const r = await lacquer(['check', '-c', file]).exited;
    expect([r.code, r.stdout]).toEqual([0, 'ok\n']);
    expect(r.stderr).toMatch(/^note: cache\.grace: 2h — deprecated/);
  });
});
