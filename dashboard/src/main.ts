// The live dashboard: one event stream from the admin listener (a snapshot with 15 minutes of history,
// then a tick a second), charts appended point by point, panels replaced on each tick.
import './style.css';
import { Chart, colorOf, type Line } from './charts.ts';
import { renderAlerts, renderBackends, renderCache, renderFailures, renderHeader, renderPaths, renderWhy } from './panels.ts';
import { readEvents, Unauthorized } from './stream.ts';
import type { BackendRow, Failure, Live, Point, Snapshot, Tick } from './types.ts';
import { ms } from './format.ts';

const HISTORY = 900;
const CACHE_COLORS: Record<string, string> = { hit: '#5cc98a', stale: '#e8d36a', collapsed: '#4ed3d8', miss: '#4e9af1', pass: '#9aa5b1', synth: '#e86a6a', refused: '#b48ef0' };

const points: Point[] = [];
const openFailures = new Set<string>();
let failures: Failure[] = [];
let timeouts: Record<string, number> = {};
let token: string | undefined = sessionStorage.getItem('lacquer-admin-token') ?? undefined;

// A token may come in the fragment (never sent to the server): `http://127.0.0.1:6082/#token=...`.
const frag = /(?:^#|&)token=([^&]+)/.exec(location.hash);
if (frag) {
  token = decodeURIComponent(frag[1]!);
  sessionStorage.setItem('lacquer-admin-token', token);
  history.replaceState(null, '', location.pathname);
}

const charts = {
  requests: new Chart(document.getElementById('chart-requests')!, { unit: (v) => `${+v.toFixed(1)}/s` }),
  hit: new Chart(document.getElementById('chart-hit')!, { unit: (v) => `${Math.round(v * 100)}%`, min: 0, max: 1 }),
  e5xx: new Chart(document.getElementById('chart-5xx')!, { unit: (v) => `${+v.toFixed(1)}/s` }),
  cpu: new Chart(document.getElementById('chart-cpu')!, { unit: (v) => `${Math.round(v)}%`, height: 140 }),
  mem: new Chart(document.getElementById('chart-mem')!, { unit: (v) => `${Math.round(v)}`, height: 140 }),
  eld: new Chart(document.getElementById('chart-eld')!, { unit: (v) => `${+v.toFixed(1)}`, height: 140 }),
};
const ttfbCharts = new Map<string, Chart>();

function series(pick: (p: Point) => number | null): (number | null)[] {
  return points.map(pick);
}

function drawCharts(): void {
  const x = points.map((p) => p.t);
  const seenCache = Object.keys(CACHE_COLORS).filter((l) => points.some((p) => p.cache[l as keyof Point['cache']] > 0));
  charts.requests.update(
    x,
    (seenCache.length ? seenCache : ['hit', 'miss']).map((l) => ({ label: l, color: CACHE_COLORS[l]!, values: series((p) => p.cache[l as keyof Point['cache']]) })),
  );
  charts.hit.update(x, [{ label: 'hit ratio', color: '#5cc98a', values: series((p) => p.hitRatio) }]);
  const classes = [...new Set(points.flatMap((p) => Object.keys(p.e5xx)))].sort();
  charts.e5xx.update(
    x,
    classes.length ? classes.map((c) => ({ label: c, color: colorOf(c), values: series((p) => p.e5xx[c] ?? 0) })) : [{ label: '5xx', color: '#e86a6a', values: series(() => 0) }],
  );
  charts.cpu.update(x, [{ label: 'CPU %', color: '#4e9af1', values: series((p) => p.cpu) }]);
  charts.mem.update(x, [
    { label: 'RSS', color: '#b48ef0', values: series((p) => p.rss / 1048576) },
    { label: 'heap', color: '#4ed3d8', values: series((p) => p.heap / 1048576) },
    { label: 'cache', color: '#5cc98a', values: series((p) => p.cacheBytes / 1048576) },
  ]);
  charts.eld.update(x, [{ label: 'p99', color: '#f1a94e', values: series((p) => p.eld) }]);
  drawTtfb(x);
}

function drawTtfb(x: number[]): void {
  const box = document.getElementById('ttfb-charts')!;
  const keys = Object.keys(timeouts).sort();
  for (const k of keys) {
    let c = ttfbCharts.get(k);
    if (!c) {
      const holder = document.createElement('div');
      holder.className = 'panel inner';
      const h = document.createElement('h3');
      h.textContent = `${k} (first_byte ${ms(timeouts[k]!)})`;
      const div = document.createElement('div');
      div.className = 'chart';
      div.id = `ttfb-${k.replace(/[^A-Za-z0-9_-]/g, '_')}`;
      holder.append(h, div);
      box.append(holder);
      ttfbCharts.set(k, (c = new Chart(div, { unit: (v) => ms(v), log: true })));
    }
    const lines: Line[] = [
      { label: 'p50', color: colorOf(k), values: series((p) => p.ttfb[k]?.[0] ?? null) },
      { label: 'p99', color: colorOf(k), dash: [6, 4], values: series((p) => p.ttfb[k]?.[1] ?? null) },
      { label: 'first_byte timeout', color: '#e86a6a', dash: [2, 3], width: 1, values: series(() => timeouts[k]!) },
    ];
    c.update(x, lines);
  }
}

function openFailure(id: string): void {
  openFailures.add(id);
  renderFailures(failures, openFailures);
  document.querySelector(`details.failure[data-id="${CSS.escape(id)}"]`)?.scrollIntoView({ block: 'center' });
}

async function override(b: BackendRow, value: string): Promise<void> {
  const msg = document.getElementById('override-msg')!;
  msg.textContent = `setting ${b.pool}/${b.name} to ${value}…`;
  const res = await fetch(`api/backends/${encodeURIComponent(b.pool)}/${encodeURIComponent(b.name)}/health`, {
    method: 'PUT',
    headers: { 'content-type': 'text/plain', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: value,
  });
  const body = (await res.json().catch(() => ({}))) as { message?: string; status?: string };
  msg.textContent = res.ok ? `${b.pool}/${b.name}: ${body.status ?? value}` : `override refused (HTTP ${res.status}): ${body.message ?? ''}`;
  msg.className = res.ok ? 'good' : 'bad';
}

function applyLive(live: Live): void {
  timeouts = Object.fromEntries(live.backends.flatMap((p) => p.backends.map((b) => [`${b.pool}/${b.name}`, b.first_byte_timeout_ms])));
  if (live.failures) failures = live.failures;
  renderHeader(live);
  renderWhy(live.why, openFailure);
  renderAlerts(live.alerts);
  renderBackends(live.backends, (b, v) => void override(b, v));
  if (live.failures) renderFailures(failures, openFailures);
  renderPaths(live.paths);
  renderCache(live.stats);
}

function onEvent(event: string, data: unknown): void {
  if (event === 'snapshot') {
    const s = data as Snapshot;
    document.getElementById('proxy-name')!.textContent = s.proxy.name;
    points.splice(0, points.length, ...s.points.slice(-HISTORY));
    applyLive(s);
  } else if (event === 'tick') {
    const t = data as Tick;
    points.push(t.point);
    if (points.length > HISTORY) points.splice(0, points.length - HISTORY);
    applyLive(t);
  }
  drawCharts();
}

function askToken(message: string): Promise<void> {
  const form = document.getElementById('token-form') as HTMLFormElement;
  form.hidden = false;
  document.getElementById('updated')!.textContent = message;
  return new Promise((resolve) => {
    form.onsubmit = (e) => {
      e.preventDefault();
      token = (document.getElementById('token') as HTMLInputElement).value.trim() || undefined;
      if (token) sessionStorage.setItem('lacquer-admin-token', token);
      form.hidden = true;
      resolve();
    };
  });
}

async function run(): Promise<void> {
  let delay = 500;
  for (;;) {
    const ctl = new AbortController();
    try {
      await readEvents('api/events', token, onEvent, ctl.signal);
      delay = 500;
    } catch (err) {
      if (err instanceof Unauthorized) {
        await askToken(err.message);
        continue;
      }
    }
    document.getElementById('updated')!.textContent = 'disconnected, reconnecting…';
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(10_000, delay * 2);
  }
}

void run();
