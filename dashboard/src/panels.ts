// The non-chart panels: the "why 5xx now" summary, alerts, the backend table with override buttons, the
// failure list (each expands to its full report), the top-N paths and the cache tile. Built with DOM nodes
// (never innerHTML): report fields come from clients and origins.
import type { BackendRow, Failure, Live } from './types.ts';
import { bytes, clock, el, ms, pct } from './format.ts';

const $ = (id: string) => document.getElementById(id)!;

export function renderWhy(why: Live['why'], openFailure: (id: string) => void): void {
  const box = $('why');
  const share = why.requests ? why.responses_5xx / why.requests : 0;
  const head = el('p', { class: why.responses_5xx ? 'big bad' : 'big good' }, why.responses_5xx ? `${why.responses_5xx} of ${why.requests} responses were 5xx (${pct(share)})` : `No 5xx in the last minute (${why.requests} responses)`);
  const list = el('ul', { class: 'why-list' });
  for (const c of why.classes) {
    const link = c.example_request_id ? el('a', { href: '#', 'data-id': c.example_request_id }, c.example_request_id) : null;
    link?.addEventListener('click', (e) => {
      e.preventDefault();
      openFailure(c.example_request_id!);
    });
    list.append(el('li', {}, el('code', { class: 'cls' }, c.class), ` ×${c.count}`, link ? ' — latest: ' : '', link, c.backend ? ` on ${c.backend}` : ''));
  }
  for (const c of why.hidden_by_stale) list.append(el('li', { class: 'muted' }, el('code', {}, c.class), ` ×${c.count} hidden by stale content`, c.backend ? ` (${c.backend})` : ''));
  const probs = why.readiness.problems.map((p) => el('p', { class: 'bad' }, p));
  box.replaceChildren(head, list, ...probs);
}

export function renderHeader(live: Live): void {
  const ready = $('ready');
  ready.textContent = live.why.readiness.ready ? 'ready' : 'NOT READY';
  ready.className = `pill ${live.why.readiness.ready ? 'good' : 'bad'}`;
  ready.title = live.why.readiness.problems.join('\n') || 'every pool has a healthy backend';
  const firing = live.alerts.firing;
  const a = $('alert-count');
  a.textContent = firing.length ? `${firing.length} alert${firing.length > 1 ? 's' : ''} firing: ${firing.join(', ')}` : 'no alerts firing';
  a.className = `pill ${firing.length ? 'bad' : 'good'}`;
  $('updated').textContent = `updated ${clock(live.at)}`;
}

export function renderAlerts(alerts: Live['alerts']): void {
  const box = $('alerts');
  if (alerts.rules.length === 0) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No alert rules configured (alerts.rules).'));
    return;
  }
  box.replaceChildren(
    ...alerts.rules.map((r) =>
      el(
        'div',
        { class: `alert ${r.state}`, 'data-rule': r.name },
        el('strong', {}, r.name),
        ` ${r.state}`,
        r.since ? el('span', { class: 'muted' }, ` since ${clock(r.since)}`) : null,
        el('div', { class: 'muted small' }, r.summary),
      ),
    ),
    ...(alerts.deliveries.some((d) => d.result === 'failed') ? [el('p', { class: 'bad small' }, `webhook delivery failed: ${alerts.deliveries.find((d) => d.result === 'failed')!.lastError}`)] : []),
  );
}

const OVERRIDES = ['auto', 'healthy', 'sick', 'drain'] as const;

export function renderBackends(pools: Live['backends'], onOverride: (b: BackendRow, v: string) => void): void {
  const body = document.querySelector('#backends tbody')!;
  const rows: HTMLElement[] = [];
  for (const p of pools) {
    rows.push(el('tr', { class: 'pool-row' }, el('td', { colspan: '10' }, `pool ${p.name} — ${p.director}, ${p.healthy}/${p.total} healthy${p.panic ? ' — PANIC: choosing among all backends' : ''}`)));
    for (const b of p.backends) {
      const buttons = el('div', { class: 'buttons' });
      for (const v of OVERRIDES) {
        const btn = el('button', { type: 'button', 'data-override': v, class: b.override === v ? 'on' : '' }, v);
        btn.addEventListener('click', () => onOverride(b, v));
        buttons.append(btn);
      }
      const errs = Object.entries(b.errors_by_class).map(([k, n]) => `${k} ${n}`).join(', ');
      const slow = b.ttfb_p99_ms !== null && b.ttfb_p99_ms > b.first_byte_timeout_ms * 0.5;
      rows.push(
        el(
          'tr',
          { 'data-backend': `${b.pool}/${b.name}` },
          el('td', {}, el('strong', {}, b.name), el('div', { class: 'muted small' }, b.url)),
          // With workers the state is the worst any worker holds (passive health is per worker): say whose.
          el('td', { class: `state ${b.state}` }, b.status, ...(b.workers?.some((w) => w.state !== b.state) ? [el('div', { class: 'muted small' }, `worst of ${b.workers.map((w) => `worker ${w.worker} ${w.state}`).join(', ')}`)] : [])),
          el('td', {}, el('code', {}, b.probe_window || '–')),
          el('td', { class: 'small' }, b.last_probe_error ?? '–'),
          el(
            'td',
            {},
            `${b.inflight} / ${b.concurrency_limit ?? '∞'}`,
            el('div', { class: 'muted small' }, [b.adaptive ? 'learned' : 'fixed', b.max_connections !== null ? `cap ${b.max_connections}` : ''].filter(Boolean).join(', ')),
          ),
          el('td', {}, String(b.queue_length), el('div', { class: 'muted small' }, `wait ${ms(b.queue_wait_ms_mean)} / ${ms(b.queue_wait_ms_max)} max`)),
          el('td', {}, String(b.ejections)),
          el('td', { class: slow ? 'bad' : '' }, `${ms(b.ttfb_p50_ms)} / ${ms(b.ttfb_p99_ms)}`, el('div', { class: 'muted small' }, `limit ${ms(b.first_byte_timeout_ms)}`)),
          el('td', { class: 'small' }, errs || '–'),
          el('td', {}, buttons),
        ),
      );
    }
  }
  body.replaceChildren(...rows);
}

/** Report fields shown as a definition list, in the order an operator reads them. */
function reportBody(f: Failure): HTMLElement {
  const facts: [string, string | undefined][] = [
    ['request id', f.id],
    ['traceparent', f.trace],
    ['class', f.class],
    ['phase', f.phase],
    ['source', f.source],
    ['code', f.code],
    ['details', f.details],
    ['backend', f.backend ? `${f.backend}${f.address ? ` (${f.address})` : ''}${f.reused ? ', reused socket' : ''}` : undefined],
    ['timings', `ttfb ${ms(f.timings.ttfb_ms)}, total ${ms(f.timings.total_ms)}`],
    ['bytes received', f.bytes_received === undefined ? undefined : `${f.bytes_received} (headers ${f.headers_received ? 'received' : 'not received'})`],
    ['health', f.health ? `${f.health.pool}: ${f.health.state}, ${f.health.healthy} healthy, in-flight ${f.health.inflight}/${f.health.limit ?? f.health.max ?? '∞'}` : undefined],
    ['served instead', `${f.served}${f.stale_ms !== undefined ? ` (${ms(f.stale_ms)} stale)` : ''}`],
    ['message', f.message],
  ];
  const dl = el('dl');
  for (const [k, v] of facts) if (v) dl.append(el('dt', {}, k), el('dd', {}, v));
  const attempts = el('table', { class: 'attempts' }, el('thead', {}, el('tr', {}, el('th', {}, 'backend'), el('th', {}, 'outcome'), el('th', {}, 'ms'), el('th', {}, 'retry'))));
  const tb = el('tbody');
  for (const a of f.attempts) tb.append(el('tr', {}, el('td', {}, a.backend), el('td', {}, a.outcome + (a.status ? ` ${a.status}` : '')), el('td', {}, String(a.ms)), el('td', {}, a.retry ?? '')));
  attempts.append(tb);
  return el(
    'div',
    { class: 'report' },
    el('p', { class: 'hint' }, el('strong', {}, 'Hint: '), f.hint),
    dl,
    f.attempts.length ? attempts : el('p', { class: 'muted' }, 'no origin attempt was made'),
    f.context ? el('pre', {}, JSON.stringify(f.context, null, 2)) : null,
  );
}

export function renderFailures(failures: Failure[], open: Set<string>): void {
  const box = $('failures');
  if (failures.length === 0) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No failures recorded.'));
    return;
  }
  box.replaceChildren(
    ...failures.map((f) => {
      const d = el(
        'details',
        { class: 'failure', 'data-id': f.id },
        el(
          'summary',
          {},
          el('span', { class: 'muted' }, clock(f.time)),
          ' ',
          el('code', { class: 'cls' }, f.class),
          ` ${f.backend ?? '–'} `,
          el('span', { class: 'url' }, `${f.method} ${f.host}${f.url}`),
          el('span', { class: `served ${f.served}` }, f.served),
        ),
      );
      if (open.has(f.id)) {
        d.open = true;
        d.append(reportBody(f));
      }
      // Remember the choice at click time: a tick may replace the list before the toggle event fires.
      d.querySelector('summary')!.addEventListener('click', () => (d.open ? open.delete(f.id) : open.add(f.id)));
      d.addEventListener('toggle', () => {
        if (d.open) {
          open.add(f.id);
          if (!d.querySelector('.report')) d.append(reportBody(f));
        } else open.delete(f.id);
      });
      return d;
    }),
  );
}

export function renderPaths(paths: Live['paths']): void {
  const slow = document.querySelector('#slowest tbody')!;
  slow.replaceChildren(...paths.slowest.map((r) => el('tr', {}, el('td', { class: 'url' }, r.path), el('td', {}, String(r.count)), el('td', {}, ms(r.avgMs)), el('td', {}, ms(r.maxMs)))));
  if (!paths.slowest.length) slow.replaceChildren(el('tr', {}, el('td', { colspan: '4', class: 'muted' }, 'no origin fetches yet')));
  const failing = document.querySelector('#failing tbody')!;
  failing.replaceChildren(...paths.failing.map((r) => el('tr', {}, el('td', { class: 'url' }, r.path), el('td', {}, `${r.failures}/${r.count}`), el('td', {}, el('code', {}, r.lastClass ?? '')))));
  if (!paths.failing.length) failing.replaceChildren(el('tr', {}, el('td', { colspan: '3', class: 'muted' }, 'no failing paths')));
}

/** Fleet mode: whether Redis is shared right now, and its errors (each one a request that went on alone). */
function fleetLine(f: NonNullable<Live['stats']['fleet']>): HTMLElement {
  const errors = Object.values(f.errors).reduce((a, b) => a + b, 0);
  const state = f.state === 'up' ? 'Redis up, sharing' : `Redis down, serving alone (${f.detail ?? 'unknown'})`;
  return el('p', f.state === 'up' ? {} : { class: 'warn' }, `fleet: ${state}; ${errors} Redis errors`);
}

export function renderCache(stats: Live['stats']): void {
  const c = stats.cache;
  const bar = el('div', { class: 'bar' }, el('div', { style: `width:${Math.min(100, c.fill * 100).toFixed(1)}%` }));
  $('cache').replaceChildren(
    el('p', { class: 'big' }, `${pct(c.fill)} full`),
    bar,
    el('p', {}, `${bytes(c.bytes)} of ${bytes(c.max_bytes)}, ${c.objects} objects, ${c.evictions} evictions`),
    el('p', {}, `hit ratio ${pct(stats.rates_1m.hit_ratio)} (1 min), ${pct(stats.hit_ratio)} since start`),
    el('p', {}, `stale served ${stats.stale_served.total}, coalesced ${stats.coalesced}`),
    ...(stats.fleet ? [fleetLine(stats.fleet)] : []),
    // With workers: the cache figures above and these are the instance's (every worker's, summed).
    el('p', { class: 'muted' }, `${stats.workers > 1 ? `${stats.workers} workers: ` : ''}CPU ${stats.process.cpu_percent}%, RSS ${bytes(stats.process.rss_bytes)}, event-loop p99 ${ms(stats.process.event_loop_delay_p99_ms)}`),
  );
}
