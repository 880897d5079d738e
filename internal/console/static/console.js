// relaygate console. Plain script, no dependencies, no build step.
//
// Rules this file keeps (the page's Content-Security-Policy enforces most):
// - DOM is built with createElement/textContent only (Trusted Types are
//   enforced; nothing is ever parsed as HTML).
// - The API key lives in the apiKey variable only: never in storage, a
//   cookie or a URL. It goes out as X-API-Key or Authorization: Bearer.
// - The feed is read with fetch streaming (EventSource cannot send headers),
//   so it is authenticated like every other call.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // Content-Security-Policy violations are listed (hidden) for the tests.
  document.addEventListener('securitypolicyviolation', (e) => {
    const li = document.createElement('li');
    li.textContent = `${e.violatedDirective} ${e.blockedURI || ''}`.trim();
    $('csp-violations').appendChild(li);
  });

  // ---- helpers --------------------------------------------------------

  function setBadge(el, text, kind) {
    el.textContent = text;
    el.className = 'badge' + (kind ? ' ' + kind : '');
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const statusTexts = {
    200: 'OK', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found',
    405: 'Method Not Allowed', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
    500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  };
  const statusLine = (resp) => `${resp.status} ${resp.statusText || statusTexts[resp.status] || ''}`.trim();

  // ---- API key (memory only) -------------------------------------------

  let apiKey = '';

  function authHeaders(h) {
    if (apiKey) {
      if ($('auth-scheme').value === 'bearer') h['Authorization'] = 'Bearer ' + apiKey;
      else h['X-API-Key'] = apiKey;
    }
    return h;
  }

  let authTimer = 0;
  function authChanged() {
    apiKey = $('api-key').value.trim();
    clearTimeout(authTimer);
    authTimer = setTimeout(() => { refreshStatus(); restartFeed(); }, 250);
  }

  // call does one request to the gateway and reads the whole answer.
  async function call(method, url, body, contentType) {
    const headers = authHeaders({ Accept: 'application/json, application/problem+json' });
    if (contentType) headers['Content-Type'] = contentType;
    const resp = await fetch(url, { method, headers, body, cache: 'no-store', redirect: 'error' });
    const text = await resp.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
    const ct = resp.headers.get('Content-Type') || '';
    const problem = ct.startsWith('application/problem+json') && json && typeof json === 'object' ? json : null;
    return { resp, text, json, problem };
  }

  // renderProblem shows every member of an RFC 9457 problem document.
  function renderProblem(dl, p) {
    dl.replaceChildren();
    const order = ['title', 'status', 'code', 'detail', 'request_id', 'type'];
    const keys = order.filter((k) => k in p).concat(Object.keys(p).filter((k) => !order.includes(k) && k !== 'errors'));
    for (const k of keys) {
      dl.append(el('dt', '', k));
      const v = p[k];
      dl.append(el('dd', k === 'request_id' || k === 'type' ? 'mono' : '', typeof v === 'string' ? v : JSON.stringify(v)));
    }
    if (Array.isArray(p.errors)) {
      dl.append(el('dt', '', 'errors'));
      const ul = el('ul');
      for (const e of p.errors) {
        const where = e.pointer ? `${e.pointer}: ` : e.parameter ? `?${e.parameter}: ` : '';
        ul.append(el('li', '', where + (e.detail || JSON.stringify(e))));
      }
      const dd = el('dd');
      dd.append(ul);
      dl.append(dd);
    }
    dl.hidden = false;
  }

  // ---- target, readiness, pool -------------------------------------------

  const modeNames = { local: 'local (in-process emulator)', emulator: 'relay-emulator', azure: 'Azure Relay' };

  async function refreshReady() {
    try {
      const r = await fetch('/readyz', { cache: 'no-store' });
      const j = await r.json().catch(() => null);
      if (r.ok) {
        setBadge($('ready-state'), 'ready', 'ok');
        $('ready-detail').textContent = '';
      } else {
        setBadge($('ready-state'), 'not ready', 'bad');
        $('ready-detail').textContent = (j && j.detail) || statusLine(r);
      }
    } catch (_) {
      setBadge($('ready-state'), 'unreachable', 'bad');
      $('ready-detail').textContent = 'the gateway does not answer';
    }
  }

  let feedAvailable = true;

  async function refreshStatus() {
    let r;
    try {
      r = await call('GET', '/console/status');
    } catch (_) {
      return; // refreshReady reports an unreachable gateway
    }
    if (r.resp.status === 401) {
      setBadge($('target-mode'), 'API key required', 'warn');
      $('target-namespace').textContent = '—';
      $('target-entity').textContent = '—';
      $('pool-state').textContent = '—';
      setBadge($('auth-state'), apiKey ? 'the gateway rejects this key' : 'the gateway requires an API key', 'warn');
      return;
    }
    if (!r.resp.ok || !r.json) {
      setBadge($('auth-state'), r.problem ? r.problem.detail : statusLine(r.resp), 'bad');
      return;
    }
    const s = r.json;
    setBadge($('auth-state'), apiKey ? 'key accepted' : 'no key needed', 'ok');
    setBadge($('target-mode'), modeNames[s.mode] || s.mode, s.mode === 'azure' ? 'ok' : '');
    $('target-namespace').textContent = s.namespace;
    $('target-entity').textContent = s.entity;
    if (s.pool) {
      const p = s.pool;
      let t = `${p.ready}/${p.size} ready`;
      if (p.connecting) t += `, ${p.connecting} connecting`;
      if (p.backoff) t += `, ${p.backoff} backing off`;
      if (p.retiring) t += `, ${p.retiring} retiring`;
      t += `, ${p.queued} queued`;
      if (p.reason) t += ` (${p.reason})`;
      $('pool-state').textContent = t;
    }
    if (s.delivery === 'request') {
      // Request-only gateway: no sender WebSockets; every message is an HTTP request.
      $('pool-state').textContent = 'none: request-only mode (every message is an HTTP request to the listener)';
      const sel = $('send-delivery');
      sel.value = 'request';
      for (const o of sel.options) o.disabled = o.value !== 'request';
    }
    if (s.feed !== feedAvailable) {
      feedAvailable = s.feed;
      restartFeed();
    }
  }

  async function pollLoop() {
    for (;;) {
      await Promise.all([refreshReady(), refreshStatus()]);
      await new Promise((res) => setTimeout(res, 2000));
    }
  }

  // ---- send ----------------------------------------------------------

  const examples = {
    json: '{"message": "hello from the console"}',
    text: 'hello from the console',
    batch: '{"message": "first of a batch"}\n{"message": "second of a batch"}',
  };

  function formatChanged() {
    const fmt = $('send-format').value;
    const body = $('send-body');
    for (const [k, v] of Object.entries(examples)) {
      if (k !== fmt && body.value === v) body.value = examples[fmt];
    }
    $('send-hint').hidden = fmt === 'text';
    $('send-delivery').disabled = fmt === 'batch';
  }

  async function send(ev) {
    ev.preventDefault();
    const fmt = $('send-format').value;
    const contentTypes = { json: 'application/json', text: 'text/plain; charset=utf-8', batch: 'application/x-ndjson' };
    const url = fmt === 'batch' ? '/messages:batch' : '/messages' + ($('send-delivery').value === 'request' ? '?delivery=request' : '');
    const ct = contentTypes[fmt];
    const button = $('send-button');
    button.disabled = true;
    setBadge($('send-status'), 'sending…', '');
    $('problem').hidden = true;
    try {
      const r = await call('POST', url, $('send-body').value, ct);
      setBadge($('send-status'), statusLine(r.resp), r.resp.ok ? 'ok' : 'bad');
      const lines = [`POST ${url}  (Content-Type: ${ct})`, `→ HTTP ${statusLine(r.resp)}`];
      for (const h of ['Content-Type', 'X-Request-Id', 'Retry-After']) {
        const v = r.resp.headers.get(h);
        if (v) lines.push(`${h}: ${v}`);
      }
      lines.push('', r.json ? JSON.stringify(r.json, null, 2) : r.text);
      $('send-response').textContent = lines.join('\n');
      if (r.problem) renderProblem($('problem'), r.problem);
    } catch (e) {
      setBadge($('send-status'), 'network error', 'bad');
      $('send-response').textContent = String(e);
    } finally {
      $('send-result').hidden = false;
      button.disabled = false;
    }
  }

  // ---- token -----------------------------------------------------------

  let tokenExpiry = 0;

  function tick() {
    if (!tokenExpiry) return;
    const left = Math.round((tokenExpiry - Date.now()) / 1000);
    if (left <= 0) {
      setBadge($('token-countdown'), 'expired', 'bad');
      return;
    }
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    const t = (h ? `${h}h ` : '') + (h || m ? `${m}m ` : '') + `${s}s left`;
    setBadge($('token-countdown'), t, left < 60 ? 'warn' : 'ok');
  }

  async function getToken(ev) {
    ev.preventDefault();
    const ttl = $('token-ttl').value.trim();
    const url = '/token' + (ttl ? '?ttl=' + encodeURIComponent(ttl) : '');
    setBadge($('token-status'), 'requesting…', '');
    $('token-problem').hidden = true;
    try {
      const r = await call('GET', url);
      setBadge($('token-status'), statusLine(r.resp), r.resp.ok ? 'ok' : 'bad');
      if (!r.resp.ok || !r.json) {
        $('token-result').hidden = true;
        tokenExpiry = 0;
        if (r.problem) renderProblem($('token-problem'), r.problem);
        return;
      }
      const t = r.json;
      $('token-value').textContent = t.token;
      $('token-url').textContent = t.url;
      $('token-resource').textContent = t.resource;
      $('token-keyname').textContent = t.keyName;
      tokenExpiry = Date.parse(t.expiresAt);
      $('token-expires').textContent = new Date(tokenExpiry).toISOString();
      $('token-result').hidden = false;
      tick();
    } catch (e) {
      setBadge($('token-status'), 'network error: ' + e.message, 'bad');
    }
  }

  async function copy(button, source) {
    const old = button.textContent;
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = 'Copied';
    } catch (_) {
      // No clipboard permission: select the text for a manual copy.
      const range = document.createRange();
      range.selectNodeContents(source);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = 'Selected: press Ctrl+C';
    }
    setTimeout(() => { button.textContent = old; }, 1500);
  }

  // ---- feed (server-sent events over fetch streaming) -------------------

  const feed = { ctrl: null, gen: 0, lastId: '', wake: null, count: 0 };
  const maxItems = 200;

  function setFeedState(text, kind) { setBadge($('feed-state'), text, kind); }

  // restartFeed drops the current stream and reconnects at once (key
  // changed, or the feed became (un)available).
  function restartFeed() {
    feed.gen++;
    if (feed.ctrl) feed.ctrl.abort();
    if (feed.wake) feed.wake();
  }

  function pause(ms) {
    return new Promise((res) => {
      const t = ms > 0 ? setTimeout(res, ms) : 0;
      feed.wake = () => { clearTimeout(t); res(); };
    });
  }

  function addItem(e) {
    const li = el('li');
    const meta = el('div', 'meta');
    const when = new Date(e.time);
    meta.append(el('div', '', when.toLocaleTimeString([], { hour12: false }) + '.' + String(when.getMilliseconds()).padStart(3, '0')));
    let what = `${e.kind} · ${e.type} · ${e.bytes} B`;
    if (e.method) what = `${e.method} ${e.contentType || ''} · ${e.bytes} B`;
    meta.append(el('div', '', what));
    if (e.conn) meta.append(el('div', 'mono', e.conn.slice(0, 12)));
    let data = e.encoding === 'base64' ? '[base64] ' + e.data : e.data;
    if (e.truncated) data += ` … (first part only; ${e.bytes} bytes in all)`;
    li.append(meta, el('div', 'data', data));
    addLi(li);
  }

  function addNotice(text) {
    const li = el('li');
    li.append(el('div', 'notice', text));
    addLi(li);
  }

  function addLi(li) {
    const list = $('feed-list');
    list.prepend(li);
    while (list.children.length > maxItems) list.lastChild.remove();
    feed.count++;
    $('feed-count').textContent = `${feed.count} received`;
  }

  // readStream parses text/event-stream and returns why it ended:
  // 'eof', 'shutdown' or an error detail.
  async function readStream(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { event: '', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'eof';
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (ev.id !== null) feed.lastId = ev.id;
          if (ev.data.length) {
            const end = dispatch(ev.event || 'message', ev.data.join('\n'));
            if (end) return end;
          }
          ev = { event: '', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue; // comment (keepalive)
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? '' : line.slice(i + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') ev.data.push(val);
        else if (field === 'event') ev.event = val;
        else if (field === 'id') ev.id = val;
      }
    }
  }

  function dispatch(type, data) {
    let j = null;
    try { j = JSON.parse(data); } catch (_) { /* ignored */ }
    switch (type) {
      case 'message':
        if (j) addItem(j);
        return '';
      case 'gap':
        addNotice('Some messages were missed while the feed was disconnected.');
        return '';
      case 'shutdown':
        return 'shutdown';
      case 'error':
        return (j && j.detail) || 'error';
      default:
        return '';
    }
  }

  async function feedLoop() {
    let delay = 1000;
    for (;;) {
      const gen = feed.gen;
      if (!feedAvailable) {
        setFeedState('off', '');
        $('feed-note').textContent = 'The received feed exists in local mode only (the gateway runs its own listener there).';
        await pause(0);
        continue;
      }
      const ctrl = new AbortController();
      feed.ctrl = ctrl;
      setFeedState('connecting…', '');
      let wait = delay;
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (feed.lastId) headers['Last-Event-ID'] = feed.lastId;
        const resp = await fetch('/console/events', { headers, signal: ctrl.signal, cache: 'no-store', redirect: 'error' });
        if (resp.status === 401) {
          await resp.body?.cancel();
          setFeedState('API key required', 'warn');
          await pause(0); // until the key changes
          continue;
        }
        if (resp.status === 404) {
          await resp.body?.cancel();
          feedAvailable = false;
          continue;
        }
        if (!resp.ok || !resp.body) {
          await resp.body?.cancel();
          setFeedState(`error: ${statusLine(resp)}`, 'bad');
        } else {
          setFeedState('live', 'ok');
          delay = 1000;
          const end = await readStream(resp.body);
          if (end === 'shutdown') {
            setFeedState('gateway shutting down', 'warn');
            wait = 2000;
          } else if (end !== 'eof') {
            setFeedState(end, 'bad');
            wait = 10000;
          } else {
            setFeedState('reconnecting…', 'warn');
            wait = 500;
          }
        }
      } catch (_) {
        if (gen !== feed.gen) continue; // restarted on purpose
        setFeedState('disconnected, retrying…', 'bad');
      }
      if (gen !== feed.gen) continue;
      await pause(wait);
      delay = Math.min(delay * 2, 15000);
    }
  }

  // ---- wiring ----------------------------------------------------------

  $('auth-form').addEventListener('submit', (ev) => { ev.preventDefault(); authChanged(); });
  $('api-key').addEventListener('input', authChanged);
  $('auth-scheme').addEventListener('change', authChanged);
  $('send-form').addEventListener('submit', send);
  $('send-format').addEventListener('change', formatChanged);
  $('token-form').addEventListener('submit', getToken);
  $('token-copy').addEventListener('click', () => copy($('token-copy'), $('token-value')));
  $('token-url-copy').addEventListener('click', () => copy($('token-url-copy'), $('token-url')));
  $('feed-clear').addEventListener('click', () => {
    $('feed-list').replaceChildren();
    feed.count = 0;
    $('feed-count').textContent = '';
  });
  setInterval(tick, 1000);
  pollLoop();
  feedLoop();
})();
