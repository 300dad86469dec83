// The dashboard's pages: each path draws its page from /dashboard/api/* and redraws it every
// 5 s while "refresh" is on. Data only ever reaches the page as text (textContent), never HTML.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const main = document.getElementById('main');
const REFRESH_MS = 5000;
const ALERTS_SHOWN = 5;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    // Handlers are listeners: an inline on* attribute would be script the CSP refuses.
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function age(secs) {
  if (secs === undefined || secs === null) return '–';
  secs = Math.max(0, Math.round(secs));
  if (secs < 60) return secs + 's';
  if (secs < 3600) return Math.floor(secs / 60) + 'm ' + (secs % 60) + 's';
  if (secs < 86400) return Math.floor(secs / 3600) + 'h ' + Math.floor((secs % 3600) / 60) + 'm';
  return Math.floor(secs / 86400) + 'd ' + Math.floor((secs % 86400) / 3600) + 'h';
}

function ms(v) {
  if (v === undefined || v === null) return '–';
  return v >= 1000 ? (v / 1000) + ' s' : v + ' ms';
}

async function api(path) {
  const r = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  if (r.status === 401) { location.href = '/dashboard/login'; throw new Error('signed out'); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok && !body.status) throw Object.assign(new Error(body.detail || ('HTTP ' + r.status)), { status: r.status });
  return body;
}

async function act(path, payload) {
  const headers = { 'X-CSRF-Token': CSRF, Accept: 'application/json' };
  if (payload !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method: 'POST', credentials: 'same-origin', headers,
    body: payload === undefined ? undefined : JSON.stringify(payload) });
  if (r.status === 401) { location.href = '/dashboard/login'; throw new Error('signed out'); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || ('HTTP ' + r.status));
  return body;
}

function table(headers, rows, attrs) {
  return el('div', { class: 'scroll' }, el('table', attrs || {},
    el('thead', {}, el('tr', {}, headers.map(h => typeof h === 'string'
      ? el('th', { scope: 'col' }, h) : el('th', Object.assign({ scope: 'col' }, h.attrs), h.text)))),
    el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: headers.length, class: 'muted' }, 'None.')))));
}

const STATES = ['queued', 'scheduled', 'started', 'deferred', 'finished', 'failed', 'canceled'];
const listLink = (queue, state, params) => `/dashboard/queues/${encodeURIComponent(queue)}/${state}` +
  (params && Object.keys(params).length ? '?' + new URLSearchParams(params) : '');
const jobLink = id => el('a', { href: '/dashboard/jobs/' + encodeURIComponent(id) }, id);
// A count that opens its list.
const countLink = (queue, state, v) => el('td', { class: 'num', 'data-count': state },
  v === undefined || v === null ? '–' : el('a', { href: listLink(queue, state), 'aria-label': `${v} ${state} on ${queue}` }, String(v)));
const since = t => (t ? age((Date.now() - Date.parse(t)) / 1000) + ' ago' : '–');
const num = (v, attrs) => el('td', Object.assign({ class: 'num' }, attrs || {}), v === undefined || v === null ? '–' : String(v));

// A line chart of several series over the minutes; series differ by dash as well as colour.
function chart(title, minutes, series, format) {
  const W = 600, H = 160, L = 44, B = 18, T = 8;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const values = series.flatMap(s => s.values.filter(v => v !== null && v !== undefined));
  const max = Math.max(1, ...values);
  const x = i => L + (W - L - 4) * (minutes.length > 1 ? i / (minutes.length - 1) : 0);
  const y = v => T + (H - T - B) * (1 - v / max);
  const line = (x1, y1, x2, y2, cls) => {
    const l = document.createElementNS(NS, 'line');
    Object.entries({ x1, y1, x2, y2, class: cls }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const text = (tx, ty, s, anchor) => {
    const t = document.createElementNS(NS, 'text');
    t.setAttribute('x', tx); t.setAttribute('y', ty); t.setAttribute('text-anchor', anchor || 'start');
    t.textContent = s; svg.append(t);
  };
  line(L, y(0), W - 4, y(0), 'axis');
  line(L, y(max), W - 4, y(max), 'axis');
  text(L - 4, y(max) + 4, format(max), 'end');
  text(L - 4, y(0) + 4, format(0), 'end');
  if (minutes.length) {
    const hhmm = s => new Date(s * 1000).toTimeString().slice(0, 5);
    text(L, H - 4, hhmm(minutes[0]));
    text(W - 4, H - 4, hhmm(minutes[minutes.length - 1]), 'end');
  }
  series.forEach((s, k) => {
    const pts = [];
    s.values.forEach((v, i) => { if (v !== null && v !== undefined) pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
    const p = document.createElementNS(NS, 'polyline');
    p.setAttribute('points', pts.join(' '));
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke-width', '2');
    p.setAttribute('class', 's' + k);
    svg.append(p);
    // A lone minute draws no line: mark the minutes that have a value.
    s.values.forEach((v, i) => {
      if (v === null || v === undefined || (v === 0 && s.values.length > 1)) return;
      const c = document.createElementNS(NS, 'circle');
      Object.entries({ cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: 'dot s' + k }).forEach(([a, b]) => c.setAttribute(a, b));
      svg.append(c);
    });
  });
  const latest = series.map(s => {
    const last = [...s.values].reverse().find(v => v !== null && v !== undefined);
    return `${s.name}: ${last === undefined ? '–' : format(last)}`;
  }).join(', ');
  svg.setAttribute('aria-label', `${title}, last hour; latest ${latest}`);
  const legend = el('div', { class: 'legend' }, series.map((s, k) => {
    const key = document.createElementNS(NS, 'svg');
    key.setAttribute('viewBox', '0 0 28 10');
    key.setAttribute('class', 'chart');
    key.setAttribute('aria-hidden', 'true');
    const l = document.createElementNS(NS, 'line');
    Object.entries({ x1: 0, y1: 5, x2: 28, y2: 5, class: 's' + k, 'stroke-width': 2 }).forEach(([a, v]) => l.setAttribute(a, v));
    key.append(l);
    return el('span', {}, key, `${s.name} (${['solid', 'dashed', 'dotted'][k]})`);
  }));
  return el('figure', {}, el('figcaption', {}, title), svg, legend, el('p', { class: 'muted' }, 'Latest minute: ' + latest));
}

const pages = {
  async overview() {
    const d = await api('/dashboard/api/overview');
    const status = d.status || 'unhealthy';
    const out = [el('h1', {}, 'Overview'),
      el('p', {}, 'Status: ', el('span', { class: 'status ' + status, id: 'health-status' }, status.toUpperCase()))];
    if (d.error) out.push(el('p', { class: 'error' }, 'Redis: ' + d.error));
    const reasons = d.reasons || [];
    const list = () => el('ul', { id: 'health-reasons' }, reasons.map(r => el('li', {}, r)));
    // Many alerts (one per queue when 200 back up) fold into a count, so the queues stay in view.
    if (reasons.length > ALERTS_SHOWN) out.push(el('details', { id: 'alerts' }, el('summary', {}, `${reasons.length} alerts`), list()));
    else if (reasons.length) out.push(list());
    else if (!d.error) out.push(el('p', { class: 'muted' }, 'No alert is raised.'));
    const all = Object.entries(d.queues || {});
    const needle = queueFilter.toLowerCase();
    const queues = needle ? all.filter(([name]) => name.toLowerCase().includes(needle)) : all;
    out.push(el('h2', {}, 'Queues'));
    if (all.length > 10 || d.queues_not_listed) {
      out.push(el('div', { class: 'actions' },
        el('label', { for: 'queue-filter' }, 'Filter queues'),
        el('input', { id: 'queue-filter', value: queueFilter, size: 16, oninput: e => filterQueues(e.target.value, all.length) }),
        el('span', { class: 'muted', id: 'queue-count' }, needle ? `${queues.length} of ${all.length} shown` : '')));
    }
    if (d.queues_not_listed) {
      // Listed: every configured queue and the first 100 others by name; the rest open by name.
      out.push(el('p', { class: 'notice', id: 'unlisted', role: 'note' },
        `${d.queues_not_listed} more queues are not listed here (the overview lists every configured queue and the first 100 others by name). `,
        el('form', { class: 'inline', id: 'open-queue', onsubmit: e => {
          e.preventDefault();
          const name = e.target.elements.queue.value.trim();
          if (name) location.href = listLink(name, 'queued');
        } }, el('label', { for: 'open-queue-name' }, 'Open a queue by name'), ' ',
        el('input', { id: 'open-queue-name', name: 'queue', size: 16, required: true }), ' ',
        el('button', { type: 'submit' }, 'Open'))));
    }
    out.push(table(
      ['Queue', { text: 'Queued', attrs: { class: 'num' } }, { text: 'Started', attrs: { class: 'num' } },
        { text: 'Scheduled', attrs: { class: 'num' } }, { text: 'Failed', attrs: { class: 'num' } },
        { text: 'Finished', attrs: { class: 'num' } }, { text: 'Oldest wait', attrs: { class: 'num' } },
        { text: 'Workers', attrs: { class: 'num hide-narrow' } }],
      queues.map(([name, q]) => el('tr', { 'data-queue': name }, el('th', { scope: 'row', class: 'name', title: name, tabindex: 0 }, name, q.paused ? el('span', { class: 'badge', 'data-paused': name }, 'paused') : null),
        ['queued', 'started', 'scheduled', 'failed', 'finished'].map(k => countLink(name, k, q[k])),
        num(age(q.oldest_queued_secs)),
        num(q.workers, { class: 'num hide-narrow' }))),
      { id: 'queues' }));
    const series = d.series || [];
    const minutes = series.map(m => m.at);
    out.push(el('h2', {}, 'Last hour'), el('div', { class: 'charts' },
      chart('Jobs per minute', minutes, [
        { name: 'finished', values: series.map(m => m.finished) },
        { name: 'failed', values: series.map(m => m.failed) },
        { name: 'retried', values: series.map(m => m.retried) }], v => String(Math.round(v))),
      chart('Enqueue → start wait', minutes, [
        { name: 'median', values: series.map(m => m.wait_p50_ms) },
        { name: '95th percentile', values: series.map(m => m.wait_p95_ms) }], ms)));
    out.push(el('p', { class: 'muted' }, 'Counted by prosaas workers when they record outcomes; a wait percentile is the upper bound of its bucket (at most).'));
    return out;
  },

  async workers() {
    const d = await api('/dashboard/api/workers');
    return [el('h1', {}, 'Workers'), table(
      ['Worker', 'Host', 'Queues', 'State', 'Running now', { text: 'Last heartbeat', attrs: { class: 'num' } }],
      d.workers.map(w => el('tr', { 'data-worker': w.name },
        el('th', { scope: 'row' }, w.name, el('div', { class: 'muted' }, w.version || '')),
        el('td', {}, (w.hostname || '–') + (w.pid ? ' (pid ' + w.pid + ')' : '')),
        el('td', {}, w.queues.join(', ')),
        el('td', {}, w.state || '–'),
        el('td', {}, w.jobs.length ? el('ul', {}, w.jobs.map(j => el('li', {},
          el('a', { href: '/dashboard/jobs/' + encodeURIComponent(j.id) }, j.id),
          ' ', el('span', { class: 'muted' }, (j.description || '') + ' · running ' + age(j.age_secs))))) : 'idle',
        w.running > w.jobs.length ? el('div', { class: 'muted' }, `and ${w.running - w.jobs.length} more`) : null),
        num(age(w.heartbeat_age_secs) + ' ago'))),
      { id: 'workers' })];
  },

  async failed() {
    const params = new URLSearchParams(location.search);
    const q = new URLSearchParams();
    if (params.get('queue')) q.set('queue', params.get('queue'));
    if (params.get('cursor')) q.set('cursor', params.get('cursor'));
    const d = await api('/dashboard/api/failed?' + q);
    const link = (queue, cursor) => '/dashboard/failed?' + new URLSearchParams(
      Object.assign({ queue }, cursor ? { cursor: String(cursor) } : {}));
    // A few queues are links; many are one menu, those with failures first.
    const picker = d.queues.length <= 10
      ? el('nav', { class: 'actions', 'aria-label': 'Queues' }, 'Queue: ', d.queues.map(x =>
        el('a', { href: link(x.name), 'aria-current': x.name === d.queue ? 'page' : null }, `${x.name} (${x.failed})`)))
      : el('div', { class: 'actions' }, el('label', { for: 'queue-pick' }, 'Queue'),
        el('select', { id: 'queue-pick', onchange: e => { location.href = link(e.target.value); } },
          [...d.queues].sort((a, b) => (b.failed > 0) - (a.failed > 0) || a.name.localeCompare(b.name)).map(x =>
            el('option', { value: x.name, selected: x.name === d.queue }, `${x.name} (${x.failed})`))));
    const out = [el('h1', {}, 'Failed jobs'), picker];
    const first = d.total ? d.cursor + 1 : 0;
    out.push(el('div', { class: 'actions' },
      el('span', {}, `${first}–${d.cursor + d.jobs.length} of ${d.total} failed on ${d.queue}`),
      el('button', { type: 'button', id: 'requeue-all', disabled: !d.total, onclick: async () => {
        if (!confirm(`Requeue all ${d.total} failed jobs of ${d.queue}?`)) return;
        const r = await act('/dashboard/api/failed/requeue-all?queue=' + encodeURIComponent(d.queue));
        notice(`Requeued ${r.requeued} jobs.`);
      } }, 'Requeue all'),
      deleteAllFailed(d.queue, d.total, 'Delete all')));
    out.push(table(['Job', 'Type', 'Error', { text: 'Attempts', attrs: { class: 'num' } }, { text: 'Failed', attrs: { class: 'num' } }, 'Actions'],
      d.jobs.map(j => el('tr', { 'data-job': j.id },
        el('td', {}, el('a', { href: '/dashboard/jobs/' + encodeURIComponent(j.id) }, j.id), j.tenant ? el('div', { class: 'muted' }, 'tenant ' + j.tenant) : null),
        el('td', {}, j.job_type),
        el('td', {}, j.error),
        num(j.attempts),
        num(age(j.age_secs) + ' ago'),
        el('td', {}, el('div', { class: 'actions' },
          el('button', { type: 'button', 'data-action': 'requeue', onclick: () => jobAction(j.id, 'requeue') }, 'Requeue'),
          el('button', { type: 'button', class: 'danger', 'data-action': 'delete', onclick: () => jobAction(j.id, 'delete') }, 'Delete'))))),
      { id: 'failed' }));
    out.push(el('div', { class: 'actions' },
      d.cursor > 0 ? el('a', { href: link(d.queue, Math.max(0, d.cursor - d.page_size)) }, '← Newer page') : null,
      d.next_cursor ? el('a', { href: link(d.queue, d.next_cursor) }, 'Next page →') : null));
    return out;
  },

  async job(id) {
    const j = await api('/dashboard/api/jobs/' + encodeURIComponent(id));
    const pretty = v => JSON.stringify(v, null, 2);
    const out = [el('h1', {}, 'Job ' + j.id), el('dl', { id: 'job' },
      el('dt', {}, 'Status'), el('dd', { id: 'job-status' }, j.status),
      el('dt', {}, 'Queue'), el('dd', {}, j.origin),
      el('dt', {}, 'Type'), el('dd', {}, j.job_type),
      el('dt', {}, 'Tenant'), el('dd', {}, j.tenant || '–'),
      el('dt', {}, 'De-dupe lock'), el('dd', {}, j.dedupe_lock || '–'),
      el('dt', {}, 'Attempts'), el('dd', {}, String(j.attempts)),
      el('dt', {}, 'Worker'), el('dd', {}, j.worker_name || '–'),
      j.deferred_reason ? [el('dt', {}, 'Deferred'), el('dd', {}, j.deferred_reason)] : null,
      j.unresolved_callbacks ? [el('dt', {}, 'Skipped callbacks'), el('dd', { title: 'no handler answers these RQ callback names' }, j.unresolved_callbacks)] : null)];
    const waiting = ['queued', 'scheduled', 'deferred'].includes(j.status);
    out.push(el('div', { class: 'actions' },
      j.status === 'failed' ? el('button', { type: 'button', id: 'requeue', onclick: () => jobAction(j.id, 'requeue') }, 'Requeue') : null,
      waiting ? el('button', { type: 'button', id: 'cancel', onclick: () => jobAction(j.id, 'cancel') }, 'Cancel') : null,
      j.status === 'started' ? el('button', { type: 'button', class: 'danger', id: 'stop', onclick: () => jobAction(j.id, 'stop') }, 'Stop') : null,
      j.status !== 'started' ? el('button', { type: 'button', class: 'danger', id: 'delete', onclick: () => jobAction(j.id, 'delete') }, 'Delete') : null));
    const linked = (title, id, jobs, more) => {
      if (!jobs || !jobs.length) return;
      out.push(el('h2', {}, title), el('ul', { id },
        jobs.map(l => el('li', {}, el('a', { href: '/dashboard/jobs/' + encodeURIComponent(l.id) }, l.id),
          ' ' + (l.status || 'gone (deleted or expired)'))),
        more > 0 ? el('li', { class: 'muted' }, `and ${more} more`) : null));
    };
    linked('Waits for', 'parents', j.parents, 0);
    linked('Dependents', 'dependents', j.dependents, (j.dependents_total || 0) - (j.dependents || []).length);
    out.push(el('h2', {}, 'Timeline'), el('ol', { id: 'timeline' }, timeline(j).map(([t, what]) =>
      el('li', {}, `${new Date(t).toISOString()} ${what}`))));
    out.push(el('h2', {}, 'Arguments'), el('pre', {}, pretty({ args: j.args, kwargs: j.kwargs })),
      el('p', {}, el('a', { href: `/dashboard/api/jobs/${encodeURIComponent(j.id)}/download`, download: `job-${j.id}.json`, id: 'download' },
        'Download the arguments, meta and result in full (JSON)')));
    // A traceback opens at its end, where the error is.
    if (j.last_error) out.push(el('h2', {}, 'Last retried error'), el('pre', { id: 'last-error', 'data-end': true }, j.last_error));
    if (j.result) {
      const failed = j.result.type === 'failed';
      out.push(el('h2', {}, failed ? 'Traceback' : 'Result'),
        el('pre', { id: 'result', 'data-end': failed }, failed ? j.result.error : pretty(j.result.return_value ?? j.result)));
    }
    out.push(el('h2', {}, 'Meta'), el('pre', {}, pretty(j.meta)));
    return out;
  },

  // One state's list of a queue, a page at a time, in the order an operator reads it.
  async list([queue, state]) {
    const params = new URLSearchParams(location.search);
    const q = {};
    for (const k of ['cursor', 'lane', 'type', 'tenant', 'error']) if (params.get(k)) q[k] = params.get(k);
    const d = await api(`/dashboard/api/queues/${encodeURIComponent(queue)}/${state}?` + new URLSearchParams(q));
    const filters = {};
    for (const k of ['type', 'tenant', 'error']) if (q[k]) filters[k] = q[k];
    const out = [el('h1', { class: 'name', title: queue }, `Queue ${queue}`),
      el('nav', { class: 'actions tabs', 'aria-label': 'States' }, STATES.map(s =>
        el('a', { href: listLink(queue, s), 'aria-current': s === state ? 'page' : null }, s)))];
    const field = (name, label, size) => [el('label', { for: 'f-' + name }, label),
      el('input', { id: 'f-' + name, name, value: q[name] || '', size })];
    out.push(el('form', { class: 'actions', id: 'filter', method: 'get', role: 'search', 'aria-label': 'Filter jobs' },
      state === 'queued' ? field('lane', 'Tenant lane', 10) : null,
      field('type', 'Type', 12), field('tenant', 'Tenant', 10), field('error', 'Error text', 14),
      el('button', { type: 'submit' }, 'Show')));
    const last = Math.max(0, Math.floor((d.total - 1) / d.page_size) * d.page_size);
    const at = cursor => listLink(queue, state, Object.assign(d.lane ? { lane: d.lane } : {}, filters, cursor ? { cursor } : {}));
    const first = d.jobs.length ? d.cursor + 1 : 0;
    const order = d.newest_first ? 'newest first' : (state === 'queued' ? 'next to run first' : 'soonest first');
    const where = `${state}${d.lane ? ' in lane ' + d.lane : ''}`;
    // A filtered page says how far it looked: a filter reads at most 1,000 entries a page.
    const pager = () => d.filtered
      ? el('div', { class: 'actions pager' },
        el('span', { class: 'looked' }, `${d.jobs.length} matched among entries ${d.looked ? d.cursor + 1 : 0}–${d.cursor + d.looked} of ${d.total} ${where}, ${order}`),
        d.cursor > 0 ? el('a', { href: at(0) }, '« From the start') : null,
        d.next_cursor !== undefined && d.next_cursor !== null ? el('a', { href: at(d.next_cursor) }, 'Look further ›') : el('span', { class: 'muted' }, 'reached the end'))
      : el('div', { class: 'actions pager' },
        el('span', {}, `${first}–${d.cursor + d.jobs.length} of ${d.total} ${where}, ${order}`),
        d.cursor > 0 ? [el('a', { href: at(0) }, '« First'), el('a', { href: at(Math.max(0, d.cursor - d.page_size)) }, '‹ Previous')] : null,
        d.cursor + d.page_size < d.total ? [el('a', { href: at(d.cursor + d.page_size) }, 'Next ›'), el('a', { href: at(last) }, 'Last »')] : null);
    const when = j => {
      if (state === 'scheduled') return j.score ? 'due ' + new Date(j.score * 1000).toLocaleString() : 'due –';
      if (state === 'started') return 'running for ' + since(j.started_at).replace(' ago', '') + (j.worker_name ? ' on ' + j.worker_name : '');
      if (state === 'queued') return 'waiting ' + since(j.enqueued_at).replace(' ago', '');
      if (state === 'deferred') return j.deferred_reason || 'waits for its dependencies';
      return 'ended ' + since(j.ended_at);
    };
    const paused = d.paused;
    out.splice(1, 0, el('div', { class: 'actions' },
      paused ? el('span', { class: 'badge', id: 'paused' }, 'paused: no prosaas worker takes its jobs') : null,
      el('button', { type: 'button', id: 'pause', onclick: () => queueAction(queue, paused ? 'unpause' : 'pause') },
        paused ? 'Resume the queue' : 'Pause the queue')));
    const bulk = BULK[state] || [];
    const key = `${queue}/${state}`;
    if (selection.key !== key) selection = { key, ids: new Set() };
    const chosen = () => [...selection.ids];
    if (bulk.length) {
      out.push(el('div', { class: 'actions', id: 'bulk' }, el('span', { id: 'selected' }, `${selection.ids.size} selected`),
        bulk.map(what => el('button', { type: 'button', class: what === 'delete' ? 'danger' : null, 'data-bulk': what,
          disabled: !selection.ids.size, onclick: () => bulkAction(what, chosen()) }, `${what[0].toUpperCase()}${what.slice(1)} selected`)),
        state === 'failed' ? deleteAllFailed(queue, d.total, 'Delete all failed') : null));
    }
    const pick = id => el('input', { type: 'checkbox', 'aria-label': 'select ' + id, 'data-pick': id, checked: selection.ids.has(id),
      onchange: e => { if (e.target.checked) selection.ids.add(id); else selection.ids.delete(id); refreshSelection(); } });
    const rowActions = j => {
      if (j.gone) return null;
      if (state === 'started') return el('button', { type: 'button', class: 'danger', 'data-action': 'stop', onclick: () => jobAction(j.id, 'stop') }, 'Stop');
      if (['queued', 'scheduled', 'deferred'].includes(state)) return el('button', { type: 'button', 'data-action': 'cancel', onclick: () => jobAction(j.id, 'cancel') }, 'Cancel');
      return null;
    };
    out.push(pager(), table([...(bulk.length ? [{ text: 'Pick', attrs: { class: 'pick' } }] : []), 'Job', 'Type', 'Tenant', 'When', 'Status', { text: 'Attempts', attrs: { class: 'num hide-narrow' } }, 'Actions'],
      d.jobs.map(j => el('tr', { 'data-job': j.id },
        bulk.length ? el('td', { class: 'pick' }, pick(j.id)) : null,
        el('td', { class: 'id' }, jobLink(j.id), j.error ? el('div', { class: 'error' }, j.error) : null),
        el('td', {}, j.gone ? el('span', { class: 'muted' }, 'gone (deleted or expired)') : j.job_type),
        el('td', {}, j.tenant || '–'),
        el('td', {}, j.gone ? '–' : when(j)),
        el('td', {}, j.status || '–'),
        num(j.gone ? null : j.attempts, { class: 'num hide-narrow' }),
        el('td', {}, rowActions(j)))),
      { id: 'jobs' }), pager());
    return out;
  },

  // Jobs whose id starts with what was typed in the header's box; a lone exact match opens.
  async find() {
    const prefix = new URLSearchParams(location.search).get('prefix') || '';
    const d = await api('/dashboard/api/find?' + new URLSearchParams({ prefix }));
    if (d.ids.length === 1 && d.ids[0] === prefix) { location.replace('/dashboard/jobs/' + encodeURIComponent(prefix)); return []; }
    const walked = d.complete ? `every key (${d.keys_in_db})` : `about ${d.scan_calls * d.scan_count} of ${d.keys_in_db} keys; more may match`;
    return [el('h1', {}, `Jobs whose id starts with ${prefix}`),
      el('p', { class: 'muted', id: 'walked' }, `${d.ids.length} found, looking through ${walked}.`),
      d.ids.length ? el('ul', { id: 'found' }, d.ids.map(id => el('li', {}, jobLink(id)))) : el('p', { id: 'found' }, 'No job id starts with that.')];
  },

  async scheduler() {
    const d = await api('/dashboard/api/scheduler');
    const s = d.scheduler;
    return [el('h1', {}, 'Scheduler'), el('dl', { id: 'scheduler' },
      el('dt', {}, 'Leader'), el('dd', {}, s.lock_held ? s.holder : 'none: no scheduler holds the lock'),
      el('dt', {}, 'Lock TTL'), el('dd', {}, s.lock_held ? ms(s.lock_ttl_ms) + ' left of ' + ms(d.lock_ttl_ms) : '–'),
      el('dt', {}, 'Cycle'), el('dd', {}, s.cycle ?? '–'),
      el('dt', {}, 'Last tick'), el('dd', {}, s.last_tick || 'never'),
      el('dt', {}, 'Tick interval'), el('dd', {}, ms(d.tick_interval_ms))),
    el('h2', {}, 'Entries'), table(['Entry', 'Schedule', 'Next fire', 'Last fire', { text: 'Skipped slots', attrs: { class: 'num' } }],
      (s.entries || []).map(e => el('tr', {}, el('th', { scope: 'row' }, e.name), el('td', {}, e.schedule || '–'),
        el('td', {}, e.next_fire || '–'), el('td', {}, e.last_fire || 'not yet'), num(e.skipped_slots ?? 0)))),
    el('p', { class: 'muted' }, 'As of the leader\'s last tick; skipped slots are those the current leader passed over after downtime.')];
  },

  async calls() {
    const d = await api('/dashboard/api/calls');
    const out = [el('h1', {}, 'Calls'), table(['Calls process', { text: 'Live calls', attrs: { class: 'num' } }, 'Their ages', { text: 'Reported', attrs: { class: 'num' } }],
      d.processes.map(p => el('tr', {}, el('th', { scope: 'row' }, p.process),
        num(`${p.calls.active} of ${p.calls.max}`),
        el('td', {}, p.calls.ages_secs.length ? p.calls.ages_secs.map(age).join(', ') : 'none'),
        num(age(p.age_secs) + ' ago')))), el('h2', {}, 'Tenants')];
    if (!d.fair_queues.length) out.push(el('p', { class: 'muted' }, 'No queue has tenant lanes. Fair queues ([queues.<name>] fairness = "tenant") list their busiest tenants here.'));
    for (const f of d.fair_queues) {
      const t = f.tenants;
      out.push(el('h2', {}, `Queue ${f.queue}: ${t.with_work} tenants with work, ${t.queued} queued`),
        table(['Tenant', { text: 'Queued', attrs: { class: 'num' } }, { text: 'Running', attrs: { class: 'num' } }, { text: 'Oldest wait', attrs: { class: 'num' } }],
          t.busiest.map(r => el('tr', {}, el('th', { scope: 'row' }, r.tenant || '(no tenant)'), num(r.queued), num(r.running), num(age(r.oldest_queued_secs))))),
        t.complete ? null : el('p', { class: 'muted' }, 'More lanes than one read looks at: the numbers cover the first of them.'));
    }
    return out;
  },
};

// The job's events in time order: its own timestamps (the latest enqueue and start) and every
// outcome its result stream recorded (one per run that ended, across requeues).
function timeline(j) {
  const at = t => (t ? Date.parse(t) : NaN);
  const events = [[at(j.created_at), 'created'], [at(j.enqueued_at), 'enqueued (latest)']];
  const recorded = j.recorded || [];
  for (const r of recorded) {
    const by = r.worker_name ? ' on ' + r.worker_name : '';
    if (r.started_at) events.push([r.started_at * 1000, 'started' + by]);
    events.push([r.ended_at ? r.ended_at * 1000 : r.at_ms, r.outcome + by]);
  }
  const startedSeen = recorded.some(r => r.started_at && Math.abs(r.started_at * 1000 - at(j.started_at)) < 1000);
  if (!startedSeen) events.push([at(j.started_at), 'started (latest)' + (j.worker_name ? ' on ' + j.worker_name : '')]);
  return events.filter(([t]) => Number.isFinite(t)).sort((a, b) => a[0] - b[0]);
}

let toast = '';
function notice(text) {
  toast = text;
  setTimeout(() => { if (toast === text) toast = ''; }, 15000);
  refresh();
}

const ASK = {
  delete: id => `Delete job ${id}? Its data and results are removed.`,
  cancel: id => `Cancel job ${id}? It will never start.`,
  stop: id => `Stop job ${id}? Its worker ends it now; it is not retried.`,
};
const DONE = { requeue: 'requeued', delete: 'deleted', cancel: 'canceled', stop: 'told to stop' };
// What each list can do to several picked jobs at once.
const BULK = { failed: ['requeue', 'delete'], finished: ['delete'], canceled: ['delete'],
  queued: ['cancel', 'delete'], scheduled: ['cancel', 'delete'], deferred: ['cancel', 'delete'] };
let selection = { key: '', ids: new Set() };

async function jobAction(id, what) {
  if (ASK[what] && !confirm(ASK[what](id))) return;
  try {
    await act(`/dashboard/api/jobs/${encodeURIComponent(id)}/${what}`);
    notice(`Job ${id} ${DONE[what]}.`);
  } catch (e) { notice(`Could not ${what} job ${id}: ${e.message}`); }
}

async function bulkAction(what, ids) {
  if (!ids.length || !confirm(`${what[0].toUpperCase()}${what.slice(1)} ${ids.length} jobs?`)) return;
  try {
    const r = await act('/dashboard/api/jobs/bulk', { action: what, ids });
    const failed = r.results.filter(x => !x.done);
    selection.ids = new Set(failed.map(x => x.id));
    notice(`${r.done} of ${ids.length} jobs ${DONE[what]}.` + (failed.length
      ? ' Not done: ' + failed.map(x => `${x.id} (${x.error ? x.error.detail : '?'})`).join(', ') : ''));
  } catch (e) { notice(`Could not ${what}: ${e.message}`); }
}

// The button that deletes every failed job of a queue, after asking (failed page, failed list).
function deleteAllFailed(queue, total, label) {
  return el('button', { type: 'button', class: 'danger', id: 'delete-all', disabled: !total, onclick: async () => {
    if (!confirm(`Delete all ${total} failed jobs of ${queue}? Their data and results are removed.`)) return;
    try {
      const r = await act('/dashboard/api/failed/delete-all?queue=' + encodeURIComponent(queue));
      notice(`Deleted ${r.deleted} failed jobs.`);
    } catch (e) { notice(`Could not delete: ${e.message}`); }
  } }, label);
}

async function queueAction(queue, what) {
  if (what === 'pause' && !confirm(`Pause ${queue}? No prosaas worker starts its jobs until it is resumed; jobs running now finish.`)) return;
  try {
    await act(`/dashboard/api/queues/${encodeURIComponent(queue)}/${what}`);
    notice(`Queue ${queue} ${what === 'pause' ? 'paused' : 'resumed'}.`);
  } catch (e) { notice(`Could not ${what} ${queue}: ${e.message}`); }
}

function refreshSelection() {
  const n = selection.ids.size;
  const shown = document.getElementById('selected');
  if (shown) shown.textContent = `${n} selected`;
  document.querySelectorAll('button[data-bulk]').forEach(b => { b.disabled = !n; });
}

function route() {
  const path = location.pathname.replace(/\/+$/, '');
  const list = path.match(/^\/dashboard\/queues\/([^/]+)\/([a-z]+)$/);
  if (list) {
    return STATES.includes(list[2]) ? ['list', [decodeURIComponent(list[1]), list[2]]]
      : ['invalid', `There is no list of ${list[2]} jobs: the states are ${STATES.join(', ')}.`];
  }
  if (path.startsWith('/dashboard/jobs/')) {
    const job = path.match(/^\/dashboard\/jobs\/([A-Za-z0-9_-]{1,128})$/);
    return job ? ['job', job[1]] : ['invalid', 'That is not a job id: ids are 1 to 128 letters, digits, "-" and "_".'];
  }
  const name = path.split('/')[2] || 'overview';
  return [pages[name] ? name : 'overview'];
}

// A page whose subject does not exist says so, once: polling it again would only repeat that.
function notFound(text) {
  stopped = true;
  document.title = 'Not found · prosaas';
  document.getElementById('updated').textContent = '';
  return [el('div', { class: 'notfound', id: 'not-found', role: 'alert' }, el('h1', {}, 'Not found'), el('p', {}, text),
    el('p', {}, el('a', { href: '/dashboard' }, 'Back to the overview')))];
}
pages.invalid = async text => notFound(text);

// Where each scrolled box of the page was (sideways tables, tracebacks), by its place on the
// page, so a redraw puts them back.
function scrolls() {
  return [...main.querySelectorAll('.scroll, pre')].map(e => [e.scrollLeft, e.scrollTop]);
}
// Which folded sections the operator opened, by id, so a redraw keeps them open.
function opened() {
  return new Set([...main.querySelectorAll('details[id][open]')].map(d => d.id));
}
function reopen(ids) {
  ids.forEach(id => { const d = document.getElementById(id); if (d) d.open = true; });
}
function restore(saved, fresh) {
  main.querySelectorAll('.scroll, pre').forEach((e, i) => {
    if (e.hasAttribute('data-end') && (fresh || !saved[i])) { e.scrollTop = e.scrollHeight; return; }
    if (fresh || !saved[i]) return;
    [e.scrollLeft, e.scrollTop] = saved[i];
  });
}

let busy = false;
let stopped = false;
let drawn = false;
let queueFilter = '';
// Narrows the overview's queue table as the operator types, without a request; the next
// redraw draws only the matching rows.
function filterQueues(text, total) {
  queueFilter = text;
  const needle = text.toLowerCase();
  let shown = 0;
  document.querySelectorAll('#queues tbody tr[data-queue]').forEach(tr => {
    const keep = tr.dataset.queue.toLowerCase().includes(needle);
    tr.hidden = !keep;
    shown += keep;
  });
  document.getElementById('queue-count').textContent = needle ? `${shown} of ${total} shown` : '';
}
async function refresh() {
  if (busy || stopped) return;
  busy = true;
  const [name, arg] = route();
  try {
    let content;
    try { content = await pages[name](arg); } catch (e) {
      if (e.status !== 404) throw e;
      content = notFound(e.message);
    }
    const keep = [window.scrollX, window.scrollY];
    const saved = scrolls();
    const open = opened();
    main.replaceChildren(...(toast ? [el('p', { class: 'toast', role: 'status', id: 'toast' }, toast)] : []), ...content.flat().filter(Boolean));
    reopen(open);
    window.scrollTo(...keep);
    restore(saved, !drawn);
    drawn = true;
    if (!stopped) document.getElementById('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById('updated').textContent = 'Update failed: ' + e.message;
  } finally { busy = false; }
}

const TITLES = { overview: 'Overview', workers: 'Workers', failed: 'Failed jobs', job: 'Job',
  scheduler: 'Scheduler', calls: 'Calls & tenants', invalid: 'Not found', list: 'Jobs', find: 'Find' };
document.title = `${TITLES[route()[0]]} · prosaas`;
document.getElementById('find').addEventListener('submit', e => {
  e.preventDefault();
  location.href = '/dashboard/find?' + new URLSearchParams({ prefix: document.getElementById('find-id').value.trim() });
});
document.querySelectorAll('nav a[data-page]').forEach(a => {
  if (a.dataset.page === route()[0]) a.setAttribute('aria-current', 'page');
});
document.getElementById('logout').addEventListener('click', async () => {
  await act('/dashboard/logout').catch(() => {});
  location.href = '/dashboard/login';
});
refresh();
// A redraw replaces the page: not while the operator is on a control in it or selecting text,
// so a click or a keypress is never lost to it.
function interacting() {
  const a = document.activeElement;
  const onControl = a && main.contains(a) && ['BUTTON', 'A', 'INPUT', 'SELECT'].includes(a.tagName);
  const hovering = main.querySelector('button:hover, a:hover');
  return onControl || hovering || String(window.getSelection()).length > 0;
}
setInterval(() => {
  if (document.getElementById('live').checked && !document.hidden && !interacting()) refresh();
}, REFRESH_MS);
