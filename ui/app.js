// app.js - berth's web UI (docs/ui.md): a hash router over five pages
// (jobs, job, task, nodes, cron) and the login page. Every page is built
// with DOM calls (never HTML from data), refreshed when the event stream
// says something it shows changed (at most once a second), or every 5 s
// when the server has no event stream.
import { get, post, subscribe, token, setToken, Unauthorized } from './api.js';

// ---- small DOM helpers ------------------------------------------------------

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

const $ = (sel) => document.querySelector(sel);

function flash(msg, kind) {
  const f = $('#flash');
  f.replaceChildren();
  if (!msg) return;
  f.append(h('p', { class: 'flash ' + (kind || 'error') }, msg,
    h('button', { type: 'button', class: 'quiet', 'aria-label': 'Dismiss', onclick: () => flash('') }, '×')));
}

function badge(state) {
  return h('span', { class: 'state s-' + String(state || '').toLowerCase() }, state || '—');
}

const jobHref = (key) => '#/job/' + key;
const taskHref = (id) => '#/task/' + encodeURIComponent(id);

function fmtBytes(n) {
  if (!n) return '0';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function fmtCpu(n) {
  return (Math.round((n || 0) * 100) / 100).toString();
}

function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fmtAgo(ms) {
  if (!ms) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return 'in ' + dur(-s);
  return dur(s) + ' ago';
}

function dur(s) {
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60 ? (s % 60) + 's' : '');
  if (s < 86400) return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd' + Math.floor((s % 86400) / 3600) + 'h';
}

function meter(used, total, fmt, label) {
  const pct = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  return h('div', { class: 'meter-wrap' },
    h('meter', { min: 0, max: total || 1, value: used || 0, 'aria-label': label }),
    h('span', { class: 'meter-text' }, `${fmt(used)} / ${fmt(total)} (${pct}%)`));
}

function table(caption, heads, rows, empty) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, heads.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: heads.length, class: 'muted' }, empty || 'Nothing here.'))));
}

// A button that runs an action, shows it is busy, and reports errors.
function action(label, fn, opts) {
  const o = opts || {};
  const b = h('button', { type: 'button', class: o.class, disabled: o.disabled, title: o.title }, label);
  b.addEventListener('click', async () => {
    if (o.confirm && !window.confirm(o.confirm)) return;
    b.disabled = true;
    try {
      await fn();
      if (o.done) flash(o.done, 'ok');
      refreshSoon(0);
    } catch (e) {
      if (e instanceof Unauthorized) return toLogin();
      flash(e.message);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

// ---- the router -------------------------------------------------------------

let page = null; // {render(signal), query, matches(ev), stop()}
let stopEvents = null;
let refreshTimer = null;
let lastRefresh = 0;
let lastCost = 0; // how long the last refresh took (fetch and render), ms
// A page is read again at most once a second, and never for more than a
// sixth of the time: a view of 10,000 nodes that takes 300 ms to read and
// draw is read at most every 1.8 s.
const gap = () => Math.max(1000, 5 * lastCost);
// Tables show this many rows; the filters narrow them.
const MAX_ROWS = 1000;

function capped(rows, what) {
  if (rows.length <= MAX_ROWS) return { rows, note: null };
  return { rows: rows.slice(0, MAX_ROWS), note: h('p', { class: 'muted' }, `The first ${MAX_ROWS} of ${rows.length} ${what} are shown.`) };
}
let rendering = null;

function route() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(qs || '');
  const name = parts[0] || 'jobs';
  if (name === 'login') return { name, page: loginPage(query) };
  if (name === 'job' && parts.length >= 4) return { name: 'jobs', page: jobPage(parts.slice(1, 4).join('/')) };
  if (name === 'task' && parts[1]) return { name: 'jobs', page: taskPage(parts.slice(1).join('/')) };
  if (name === 'nodes') return { name, page: nodesPage(query) };
  if (name === 'cron') return { name, page: cronPage() };
  return { name: 'jobs', page: jobsPage(query) };
}

function toLogin() {
  setToken('');
  const next = location.hash.startsWith('#/login') ? '' : location.hash;
  location.hash = '#/login' + (next ? '?next=' + encodeURIComponent(next) : '');
}

async function navigate() {
  if (page && page.stop) page.stop();
  if (stopEvents) stopEvents();
  stopEvents = null;
  flash('');
  const r = route();
  page = r.page;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === r.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  $('#logout').hidden = !token();
  $('#live').textContent = '';
  const main = $('#main');
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  await refresh(true);
  main.focus({ preventScroll: true });
  if (page.events) {
    stopEvents = subscribe(page.events, (ev) => {
      if (ev.type === 'unauthorized') return toLogin();
      if (!page.matches || page.matches(ev)) refreshSoon(gap());
    }, () => refresh(false), (mode) => {
      $('#live').textContent = mode === 'live' ? '● live' : mode === 'refresh' ? '↻ every 5 s' : '… reconnecting';
      $('#live').className = 'live ' + mode;
    });
  }
}

// Refresh the page once, at most once a second however many events come.
function refreshSoon(minGap) {
  if (refreshTimer) return;
  const wait = Math.max(0, lastRefresh + minGap - Date.now());
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(false); }, wait);
}

async function refresh(first) {
  const p = page;
  if (!p || !p.render) return;
  if (rendering) return rendering.then(() => refreshSoon(gap()));
  lastRefresh = Date.now();
  rendering = (async () => {
    try {
      const view = await p.render(first);
      if (p !== page || !view) return;
      const main = $('#main');
      // Keep what the user opened and where they scrolled.
      const open = new Set([...main.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
      const y = window.scrollY;
      main.replaceChildren(view);
      for (const d of main.querySelectorAll('details[data-key]')) if (open.has(d.dataset.key)) d.open = true;
      if (!first) window.scrollTo(0, y);
    } catch (e) {
      if (e instanceof Unauthorized) return toLogin();
      if (p !== page) return;
      if (first) $('#main').replaceChildren(h('h1', {}, 'Error'), h('p', { class: 'error' }, e.message));
      else flash(e.message);
    }
  })();
  try { await rendering; } finally {
    rendering = null;
    lastCost = Date.now() - lastRefresh;
  }
}

// ---- login ------------------------------------------------------------------

function loginPage(query) {
  const next = query.get('next') || '#/jobs';
  return {
    async render() {
      const err = h('p', { class: 'error', id: 'login-error', role: 'alert' });
      const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', 'aria-describedby': 'token-help login-error' });
      const form = h('form', { class: 'login', onsubmit: async (e) => {
        e.preventDefault();
        err.textContent = '';
        setToken(input.value.trim());
        try {
          await get('/v1/jobs?limit=1');
          location.hash = next.startsWith('#/') && !next.startsWith('#/login') ? next : '#/jobs';
        } catch (x) {
          setToken('');
          err.textContent = x instanceof Unauthorized ? 'Token refused: ' + x.message : x.message;
          input.focus();
        }
      } },
      h('h1', {}, 'Log in to berth'),
      h('label', { for: 'token' }, 'Token'),
      input,
      h('p', { id: 'token-help', class: 'muted' }, 'An admin token (DATA/client/admin.token) or a role token (berth token create). It is kept in this tab only (sessionStorage).'),
      h('button', { type: 'submit', class: 'primary' }, 'Log in'),
      err);
      setTimeout(() => input.focus(), 0);
      return form;
    },
  };
}

// ---- jobs -------------------------------------------------------------------

const ORDER = ['PENDING', 'ASSIGNED', 'STARTING', 'RUNNING', 'RESTARTING', 'KILLING', 'PREEMPTING', 'DRAINING', 'FINISHED', 'FAILED', 'KILLED', 'LOST'];
const byState = (a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99);

function jobsPage(query) {
  const role = query.get('role') || '';
  const env = query.get('env') || '';
  return {
    events: { type: 'job,task' },
    async render() {
      const jobs = await get('/v1/jobs' + (role ? '?role=' + encodeURIComponent(role) : ''));
      const roles = new Set(), envs = new Set();
      for (const j of jobs) {
        const [r, e] = j.job.split('/');
        roles.add(r);
        envs.add(e);
      }
      if (role) roles.add(role);
      if (env) envs.add(env);
      const shown = jobs.filter((j) => !env || j.job.split('/')[1] === env);
      const totals = {};
      for (const j of shown) for (const [s, n] of Object.entries(j.states || {})) totals[s] = (totals[s] || 0) + n;
      const setFilter = () => {
        const q = new URLSearchParams();
        if (fr.value) q.set('role', fr.value);
        if (fe.value) q.set('env', fe.value);
        location.hash = '#/jobs' + (q.toString() ? '?' + q : '');
      };
      const sel = (id, label, values, cur) => h('select', { id, onchange: setFilter },
        h('option', { value: '' }, 'all'),
        [...values].sort().map((v) => h('option', { value: v, selected: v === cur }, v)));
      const fr = sel('f-role', 'Role', roles, role);
      const fe = sel('f-env', 'Environment', envs, env);
      const cap = capped(shown, 'jobs');
      const rows = cap.rows.map((j) => h('tr', { 'data-job': j.job },
        h('th', { scope: 'row' }, h('a', { href: jobHref(j.job) }, j.job)),
        h('td', {}, badge(j.status)),
        h('td', { class: 'num' }, j.instances),
        h('td', { class: 'num' }, j.version),
        h('td', {}, Object.keys(j.states || {}).sort(byState).map((s) => h('span', { class: 'count' }, badge(s), ' ', j.states[s])))));
      return h('div', {},
        h('h1', {}, 'Jobs'),
        h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() },
          h('label', { for: 'f-role' }, 'Role'), fr,
          h('label', { for: 'f-env' }, 'Environment'), fe),
        h('p', { class: 'summary' }, `${shown.length} job${shown.length === 1 ? '' : 's'}`,
          Object.keys(totals).sort(byState).map((s) => h('span', { class: 'count' }, ' · ', badge(s), ' ', totals[s]))),
        table('Jobs and their tasks by state', ['Job', 'Status', 'Instances', 'Version', 'Tasks by state'], rows,
          'No jobs. Run one with berth job run FILE.'),
        cap.note);
    },
  };
}

// ---- a job ------------------------------------------------------------------

const UPDATE_DONE = ['ROLLED_FORWARD', 'ROLLED_BACK', 'ABORTED', 'FAILED'];

function updateSection(key, u) {
  if (!u) return h('section', { 'aria-labelledby': 'h-update' }, h('h2', { id: 'h-update' }, 'Update'), h('p', { class: 'muted' }, 'No update yet.'));
  const running = u.state === 'ROLLING_FORWARD' || u.state === 'ROLLING_BACK';
  const paused = u.state === 'ROLL_FORWARD_PAUSED' || u.state === 'ROLL_BACK_PAUSED';
  const done = UPDATE_DONE.includes(u.state);
  const ctl = (what) => () => post(`/v1/jobs/${key}/update/${what}`);
  return h('section', { 'aria-labelledby': 'h-update', class: 'update' },
    h('h2', { id: 'h-update' }, 'Update'),
    h('p', {}, badge(u.state), ` version ${u.from_version} → ${u.to_version}`, u.message ? ' — ' + u.message : ''),
    h('div', { class: 'progress' },
      h('progress', { max: u.total || 1, value: u.updated || 0, 'aria-label': 'Instances updated' }),
      h('span', {}, `${u.updated || 0}/${u.total || 0} updated, ${u.healthy || 0} healthy, ${u.failed || 0} failed`)),
    h('div', { class: 'actions' },
      action('Pause', ctl('pause'), { disabled: !running, done: 'Update paused' }),
      action('Resume', ctl('resume'), { disabled: !paused, done: 'Update resumed' }),
      action('Roll back', ctl('rollback'), { disabled: done || u.state.startsWith('ROLL_BACK') || u.state === 'ROLLING_BACK', class: 'danger', confirm: `Roll ${key} back to version ${u.from_version}?`, done: 'Rolling back' })));
}

function eventsList(events) {
  return h('ol', { class: 'events' }, (events || []).map((e) =>
    h('li', {}, h('time', { datetime: e.time }, fmtTime(e.time_ms)), ' ', badge(e.state), ' ', e.message || '')));
}

function portsText(p) {
  return p ? Object.entries(p).map(([k, v]) => `${k}:${v}`).join(' ') : '';
}

function jobPage(key) {
  return {
    events: { job: key },
    async render() {
      const [job, u] = await Promise.all([
        get(`/v1/jobs/${key}?all=1`),
        get(`/v1/jobs/${key}/update`).catch((e) => { if (e.status === 404) return null; throw e; }),
      ]);
      const byInst = new Map();
      for (const t of job.tasks || []) {
        if (!byInst.has(t.instance)) byInst.set(t.instance, []);
        byInst.get(t.instance).push(t);
      }
      const ENDED = ['FINISHED', 'FAILED', 'KILLED', 'LOST'];
      const insts = [...byInst.keys()].sort((a, b) => a - b);
      const rows = [];
      for (const i of insts) {
        const ts = byInst.get(i).sort((a, b) => (b.created_ms || 0) - (a.created_ms || 0));
        const t = ts.find((x) => !ENDED.includes(x.state)) || ts[0];
        rows.push(h('tr', { 'data-instance': i },
          h('th', { scope: 'row' }, i),
          h('td', {}, badge(t.state)),
          h('td', {}, t.node || '—'),
          h('td', {}, t.address || '—'),
          h('td', {}, portsText(t.ports) || '—'),
          h('td', { class: 'num' }, t.version),
          h('td', {}, h('a', { href: taskHref(t.id) }, t.id)),
          h('td', { class: 'msg' }, t.message || '')));
        rows.push(h('tr', { class: 'history' }, h('td', { colspan: 8 },
          h('details', { 'data-key': 'i' + i },
            h('summary', {}, `History of instance ${i} (${ts.length} task${ts.length === 1 ? '' : 's'})`),
            ts.map((x) => h('div', { class: 'task-hist' },
              h('p', {}, h('a', { href: taskHref(x.id) }, x.id), ' ', badge(x.state), ` v${x.version}`, x.node ? ' on ' + x.node : '',
                x.exit_code !== undefined ? ` exit ${x.exit_code}` : ''),
              eventsList(x.events)))))));
      }
      return h('div', {},
        h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / '),
        h('h1', {}, key, ' ', badge(job.status)),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Type'), h('dd', {}, job.type),
          h('dt', {}, 'Version'), h('dd', {}, job.version),
          h('dt', {}, 'Instances'), h('dd', {}, job.instances),
          job.spec && job.spec.tier ? [h('dt', {}, 'Tier'), h('dd', {}, job.spec.tier)] : null,
          job.spec && job.spec.task ? [h('dt', {}, 'Driver'), h('dd', {}, job.spec.task.driver)] : null),
        h('div', { class: 'actions' },
          action('Restart', () => post(`/v1/jobs/${key}/restart`), { confirm: `Restart every task of ${key}?`, done: 'Restarting' }),
          action('Kill', () => post(`/v1/jobs/${key}/kill`), { class: 'danger', confirm: `Kill every task of ${key}? The job is then forgotten.`, done: 'Killing' }),
          job.type === 'cron' ? action('Run now', () => post(`/v1/jobs/${key}/cron/start`), { done: 'Started' }) : null),
        updateSection(key, u),
        h('section', { 'aria-labelledby': 'h-inst' },
          h('h2', { id: 'h-inst' }, 'Instances'),
          table(`Instances of ${key}`, ['#', 'State', 'Node', 'Address', 'Ports', 'Version', 'Task', 'Message'], rows, 'No tasks.')));
    },
  };
}

// ---- a task and its logs ----------------------------------------------------

const LOG_KEEP = 512 * 1024;

function taskPage(ref) {
  let stream = 'stdout';
  let offset = 0;
  let text = '';
  let timer = null;
  let stopped = false;
  let idle = 1000;
  let ended = false;
  let pre = null;
  let follow = true;
  let status = null;

  function show() {
    if (!pre) return;
    pre.textContent = text || '';
    if (follow) pre.scrollTop = pre.scrollHeight;
  }

  let busy = false;
  let again = false;
  let gen = 0; // a new stream starts a new generation: older answers are dropped

  async function tail() {
    timer = null;
    if (stopped) return;
    if (busy) { again = true; return; }
    busy = true;
    const g = gen;
    let got = 0;
    try {
      const r = await get(`/ui/logs/${encodeURIComponent(ref)}?stream=${stream}&offset=${offset}`);
      if (stopped) return;
      if (g === gen && r.offset === offset) {
        got = r.next - r.offset;
        offset = r.next;
        if (r.data) {
          text += r.data;
          if (text.length > LOG_KEEP) text = '…\n' + text.slice(text.length - LOG_KEEP);
          show();
        }
        if (status) status.textContent = `${stream}: ${offset} bytes`;
      }
    } catch (e) {
      if (e instanceof Unauthorized) return toLogin();
      if (status) status.textContent = e.message;
      got = 0;
    } finally {
      busy = false;
    }
    // More at once while there is more (or something asked meanwhile);
    // then back off to 5 s while the task says nothing; an ended task's
    // output is read to its end, then no more.
    if (got > 0 || again || g !== gen) { again = false; idle = 1000; schedule(0); return; }
    if (ended) return;
    schedule(idle);
    idle = Math.min(idle * 2, 5000);
  }

  function schedule(ms) {
    if (stopped || timer) return;
    timer = setTimeout(tail, ms);
  }

  // Read now (an event about the task, another stream).
  function now() {
    if (timer) { clearTimeout(timer); timer = null; }
    idle = 1000;
    schedule(0);
  }

  function restart(s) {
    stream = s;
    offset = 0;
    text = '';
    gen++;
    show();
    now();
  }

  return {
    events: null,
    stop() { stopped = true; if (timer) clearTimeout(timer); },
    async render(first) {
      const t = await get(`/v1/tasks/${encodeURIComponent(ref)}`);
      ended = ['FINISHED', 'FAILED', 'KILLED', 'LOST'].includes(t.state);
      if (first) {
        this.events = { job: t.job };
        this.matches = (ev) => !ev.task || ev.task === t.id;
        pre = h('pre', { id: 'log', class: 'log', tabindex: '0', 'aria-label': 'Task output' });
        status = h('span', { class: 'muted', id: 'log-status' });
        schedule(0);
      } else {
        now();
      }
      const radio = (s) => h('label', {},
        h('input', { type: 'radio', name: 'stream', value: s, checked: s === stream, onchange: () => restart(s) }), ' ', s);
      const followBox = h('input', { type: 'checkbox', id: 'follow', checked: follow, onchange: (e) => { follow = e.target.checked; show(); } });
      show();
      return h('div', {},
        h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', h('a', { href: jobHref(t.job) }, t.job), ' / '),
        h('h1', {}, t.id, ' ', badge(t.state)),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Job'), h('dd', {}, h('a', { href: jobHref(t.job) }, t.job)),
          h('dt', {}, 'Instance'), h('dd', {}, t.instance),
          h('dt', {}, 'Node'), h('dd', {}, t.node || '—'),
          h('dt', {}, 'Address'), h('dd', {}, t.address || '—'),
          h('dt', {}, 'Ports'), h('dd', {}, portsText(t.ports) || '—'),
          h('dt', {}, 'Version'), h('dd', {}, t.version),
          t.pid ? [h('dt', {}, 'Pid'), h('dd', {}, t.pid)] : null,
          t.exit_code !== undefined ? [h('dt', {}, 'Exit code'), h('dd', {}, t.exit_code)] : null,
          h('dt', {}, 'Message'), h('dd', {}, t.message || '—')),
        h('section', { 'aria-labelledby': 'h-logs' },
          h('h2', { id: 'h-logs' }, 'Logs'),
          h('fieldset', { class: 'logbar' }, h('legend', {}, 'Stream'), radio('stdout'), radio('stderr'),
            h('label', {}, followBox, ' follow'), status),
          pre),
        h('section', { 'aria-labelledby': 'h-events' },
          h('h2', { id: 'h-events' }, 'Events'), eventsList(t.events)));
    },
  };
}

// ---- nodes ------------------------------------------------------------------

function nodesPage(query) {
  const only = query.get('state') || '';
  return {
    events: { type: 'node' },
    async render() {
      const nodes = await get('/v1/nodes' + (only ? '?state=' + encodeURIComponent(only) : ''));
      const pick = h('select', { id: 'f-state', onchange: (e) => { location.hash = '#/nodes' + (e.target.value ? '?state=' + e.target.value : ''); } },
        h('option', { value: '' }, 'all'),
        ['ACTIVE', 'DRAINING', 'DRAINED', 'DOWN'].map((v) => h('option', { value: v, selected: v === only }, v)));
      const counts = {};
      for (const n of nodes) counts[n.state] = (counts[n.state] || 0) + 1;
      const cap = capped(nodes, 'nodes');
      const rows = cap.rows.map((n) => {
        const r = n.resources || {};
        const attrs = Object.entries(n.attributes || {}).filter(([, v]) => v !== '');
        return h('tr', { 'data-node': n.name },
          h('th', { scope: 'row' }, n.name),
          h('td', {}, badge(n.state), n.backoff_until_ms ? h('span', { class: 'muted' }, ` back-off until ${fmtTime(n.backoff_until_ms)}`) : null),
          h('td', {}, meter(r.cpu_used, r.cpu, fmtCpu, `CPU used on ${n.name}`)),
          h('td', {}, meter(r.memory_used, r.memory, fmtBytes, `Memory used on ${n.name}`)),
          h('td', { class: 'num' }, r.tasks || 0),
          h('td', {}, attrs.map(([k, v]) => h('span', { class: 'attr' }, `${k}=${v}`))),
          h('td', {}, n.last_seen_ms_ago === 0 ? 'now' : dur(Math.round((n.last_seen_ms_ago || 0) / 1000)) + ' ago'),
          h('td', { class: 'actions' },
            n.state === 'ACTIVE'
              ? action('Drain', () => post(`/v1/nodes/${encodeURIComponent(n.name)}/drain`), { confirm: `Drain ${n.name}? Its tasks move to other nodes.`, done: `Draining ${n.name}` })
              : action('Activate', () => post(`/v1/nodes/${encodeURIComponent(n.name)}/activate`), { done: `${n.name} active` })));
      });
      return h('div', {},
        h('h1', {}, 'Nodes'),
        h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() }, h('label', { for: 'f-state' }, 'State'), pick),
        h('p', { class: 'summary' }, `${nodes.length} node${nodes.length === 1 ? '' : 's'}`,
          Object.keys(counts).sort().map((s) => h('span', { class: 'count' }, ' · ', badge(s), ' ', counts[s]))),
        table('Nodes, their resources and attributes', ['Node', 'State', 'CPU', 'Memory', 'Tasks', 'Attributes', 'Last seen', ''], rows, 'No nodes. Start one with berth agent.'),
        cap.note);
    },
  };
}

// ---- cron -------------------------------------------------------------------

function cronPage() {
  return {
    events: { type: 'job' },
    async render() {
      const crons = await get('/v1/cron');
      const rows = crons.map((c) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: jobHref(c.job) }, c.job)),
        h('td', {}, h('code', {}, c.schedule)),
        h('td', {}, c.collision),
        h('td', {}, fmtTime(c.next_run_ms), h('span', { class: 'muted' }, ' (' + fmtAgo(c.next_run_ms) + ')')),
        h('td', {}, c.last_run_ms ? fmtAgo(c.last_run_ms) : '—'),
        h('td', { class: 'num' }, c.running),
        h('td', { class: 'num' }, c.runs),
        h('td', {}, action('Run now', () => post(`/v1/jobs/${c.job}/cron/start`), { done: `${c.job} started` }))));
      return h('div', {},
        h('h1', {}, 'Cron jobs'),
        table('Cron jobs and their next run', ['Job', 'Schedule', 'On collision', 'Next run', 'Last run', 'Running', 'Runs', ''], rows, 'No cron jobs.'));
    },
  };
}

// ---- start --------------------------------------------------------------------

$('#logout').addEventListener('click', () => { setToken(''); location.hash = '#/login'; });
window.addEventListener('hashchange', navigate);
if (!location.hash) location.hash = '#/jobs';
else navigate();
