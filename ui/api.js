// api.js - the API as the UI calls it: the token (sessionStorage, sent as
// "Authorization: Bearer"), JSON calls, and the event stream (docs/ui.md).

const TOKEN_KEY = 'berth.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Thrown for 401: the app sends the user to the login page.
export class Unauthorized extends Error {}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

// A JSON call: resolves to the parsed answer, rejects with the server's
// own "error" message (Error.status = the HTTP status).
export async function api(method, path, body, signal) {
  const init = { method, headers: headers(), signal, cache: 'no-store' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  // A read that the network dropped (a laptop changing networks; Chromium
  // drops requests when the host's interfaces change) is tried again.
  let r;
  for (let attempt = 0; ; attempt++) {
    try {
      r = await fetch(path, init);
      break;
    } catch (e) {
      if (method !== 'GET' || attempt >= 2 || (signal && signal.aborted)) throw e;
      await new Promise((res) => setTimeout(res, 300 * (attempt + 1)));
    }
  }
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  if (r.status === 401) throw new Unauthorized((j && j.error) || 'unauthorized');
  if (!r.ok) {
    const e = new Error((j && j.error) || `${method} ${path}: HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return j;
}

export const get = (path, signal) => api('GET', path, undefined, signal);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);

// The event stream, GET /v1/events (server-sent events). EventSource cannot
// send a header, so the stream is read with fetch() and parsed here. Calls
// onEvent(event) for each event; reconnects from the last id it saw. When
// the server has no such route (404), calls onFallback() every 5 s instead
// (only while the page is visible). Returns a function that stops it.
export function subscribe(query, onEvent, onFallback, onMode) {
  const ctl = new AbortController();
  let lastId = null;
  let timer = null;
  let stopped = false;
  let delay = 1000;
  const mode = (m) => { if (onMode) onMode(m); };

  function fallback() {
    mode('refresh');
    timer = setInterval(() => {
      if (document.visibilityState === 'visible') onFallback();
    }, 5000);
  }

  async function run() {
    while (!stopped) {
      const q = new URLSearchParams(query || {});
      if (lastId !== null) q.set('index', lastId);
      const h = headers({ Accept: 'text/event-stream' });
      if (lastId !== null) h['Last-Event-ID'] = lastId;
      let r;
      try {
        r = await fetch('/v1/events?' + q.toString(), { headers: h, signal: ctl.signal, cache: 'no-store' });
      } catch (e) {
        if (stopped) return;
        r = null;
      }
      if (r && (r.status === 404 || r.status === 405)) { fallback(); return; }
      if (r && r.status === 401) { stopped = true; onEvent({ type: 'unauthorized' }); return; }
      if (r && r.ok && r.body) {
        mode('live');
        delay = 1000;
        // After a reconnect, what changed meanwhile is read again.
        if (lastId !== null) onFallback();
        try {
          await readEvents(r.body, (ev) => {
            if (ev.id !== undefined) lastId = ev.id;
            if (ev.data) {
              let d = null;
              try { d = JSON.parse(ev.data); } catch (e) { d = null; }
              if (d) onEvent(d);
            }
          });
        } catch (e) {
          if (stopped) return;
        }
      }
      if (stopped) return;
      mode('reconnecting');
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
  run();
  return () => {
    stopped = true;
    ctl.abort();
    if (timer) clearInterval(timer);
  };
}

// Parse a text/event-stream body (the WHATWG rules, the fields berth uses).
export async function readEvents(body, dispatch) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let ev = { data: '' };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
      if (buf[i] === '\r' && i === buf.length - 1) break; // a CRLF cut in two?
      const line = buf.slice(0, i);
      buf = buf.slice(buf[i] === '\r' && buf[i + 1] === '\n' ? i + 2 : i + 1);
      if (line === '') {
        if (ev.data !== '' || ev.id !== undefined) dispatch(ev);
        ev = { data: '' };
        continue;
      }
      if (line[0] === ':') continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? '' : line.slice(c + 1);
      if (v[0] === ' ') v = v.slice(1);
      if (field === 'data') ev.data = ev.data ? ev.data + '\n' + v : v;
      else if (field === 'id') ev.id = v;
      else if (field === 'event') ev.event = v;
    }
  }
}
