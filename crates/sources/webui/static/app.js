// moat web UI: one small script, no framework. Every value from the API is
// put into the page with textContent or attributes, never parsed as HTML.
'use strict';

(function () {
  const page = document.body.dataset.page;
  const $ = (sel) => document.querySelector(sel);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  function csrf() {
    const m = document.cookie.split(';').map((s) => s.trim()).find((s) => s.startsWith('moat_csrf='));
    return m ? m.slice('moat_csrf='.length) : '';
  }

  function showError(msg) {
    const e = $('#error');
    if (!e) return;
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  function say(msg) {
    const s = $('#status');
    if (s) s.textContent = msg || '';
  }

  // A call to the JSON API with the session cookie (and the CSRF token on
  // anything that changes state). Returns {status, data}.
  async function api(method, path, body, headers) {
    const h = Object.assign({ Accept: 'application/json' }, headers || {});
    if (method !== 'GET' && method !== 'HEAD') h['X-CSRF-Token'] = csrf();
    const init = { method, headers: h, credentials: 'same-origin' };
    if (body !== undefined) {
      h['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      return { status: 0, data: { error: { message: 'The server cannot be reached.' } } };
    }
    let data = null;
    const ct = r.headers.get('content-type') || '';
    if (ct.includes('json')) {
      try { data = await r.json(); } catch (e) { data = null; }
    }
    return { status: r.status, data };
  }

  function errText(res, fallback) {
    return (res.data && res.data.error && res.data.error.message) || fallback || ('Request failed (' + res.status + ').');
  }

  function toLogin() {
    const next = location.pathname + location.search;
    location.assign('/login?next=' + encodeURIComponent(next));
  }

  function size(n) {
    if (n === null || n === undefined) return '';
    const u = ['bytes', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    let v = Number(n);
    while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return (i === 0 ? v : v.toFixed(1)) + ' ' + u[i];
  }

  function when(ms) {
    if (!ms) return '';
    return new Date(Number(ms)).toLocaleString();
  }

  function stateLabel(pkg) {
    const s = pkg.state;
    const span = el('span', { class: 'state state-' + s, text: s });
    if (s === 'quarantined' && pkg.reason) return el('span', {}, span, ': ' + pkg.reason);
    return span;
  }

  // The recipient page's address for a link the API gives (its JSON URL).
  function pageUrl(u) {
    try {
      const x = new URL(u, location.href);
      return location.origin + x.pathname.replace(/^\/v1\/portal\/p\//, '/p/');
    } catch (e) {
      return u;
    }
  }

  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    async function tick() {
      let again = true;
      try { again = (await fn()) !== false; } catch (e) { showError(String(e)); }
      if (again && !stopped) timer = setTimeout(tick, document.hidden ? ms * 3 : ms);
    }
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  // ---- signed-in chrome: who, admin links, sign out
  let me = null;
  async function signedIn() {
    const r = await api('GET', '/v1/portal/auth/me');
    if (r.status === 401) { toLogin(); return null; }
    if (r.status !== 200) { showError(errText(r)); return null; }
    me = r.data;
    const w = $('#who-email');
    if (w) w.textContent = me.email;
    if (me.role === 'admin') document.querySelectorAll('.admin-only').forEach((n) => { n.hidden = false; });
    return me;
  }

  const out = $('#sign-out');
  if (out) {
    out.addEventListener('click', async () => {
      await api('POST', '/v1/portal/auth/logout');
      location.assign('/login');
    });
  }

  // ---- pages
  const pages = {};

  pages.login = function () {
    $('#login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError('');
      const email = $('#email').value.trim();
      const password = $('#password').value;
      if (!email || !password) { showError('Enter your e-mail and password.'); return; }
      say('Signing in…');
      const r = await api('POST', '/v1/portal/auth/login', { email, password });
      say('');
      if (r.status !== 200) {
        showError(r.status === 401 ? 'Wrong e-mail or password.' : errText(r));
        $('#password').focus();
        return;
      }
      const next = new URLSearchParams(location.search).get('next') || '';
      // Only a path on this site (not "//host").
      location.assign(/^\/(?!\/)/.test(next) ? next : '/packages');
    });
  };

  pages.packages = async function () {
    if (!(await signedIn())) return;
    const tbody = $('#packages tbody');
    poll(async () => {
      const r = await api('GET', '/v1/portal/packages?limit=100');
      if (r.status === 401) { toLogin(); return false; }
      if (r.status !== 200) { showError(errText(r)); return true; }
      showError('');
      const items = r.data.items || [];
      $('#empty').hidden = items.length > 0;
      tbody.replaceChildren(...items.map((p) => {
        const title = (p.message || '').split('\n')[0].slice(0, 60) || ('Package ' + p.id.slice(-8));
        const files = p.files || [];
        const states = {};
        files.forEach((f) => { states[f.status] = (states[f.status] || 0) + 1; });
        const fileText = files.length + ' (' + Object.entries(states).map(([k, v]) => v + ' ' + k).join(', ') + ')';
        return el('tr', { 'data-id': p.id, 'data-state': p.state },
          el('td', {}, el('a', { href: '/packages/' + encodeURIComponent(p.id), text: title })),
          el('td', {}, stateLabel(p)),
          el('td', { text: files.length ? fileText : '0' }),
          el('td', { text: (p.recipients || []).join(', ') || (p.access === 'public' ? 'public link' : p.access) }),
          el('td', { text: p.download_count + (p.download_limit ? ' / ' + p.download_limit : '') }),
          el('td', { text: when(p.expires_at) }));
      }));
      return true;
    }, 2000);
  };

  pages.new = async function () {
    if (!(await signedIn())) return;
    const files = [];
    const list = $('#file-list');
    const input = $('#files');
    const drop = $('#drop');
    function render() {
      list.replaceChildren(...files.map((f, i) => {
        f.bar = el('progress', { max: '1', value: '0', 'aria-label': 'Upload progress of ' + f.file.name });
        f.note = el('span', { class: 'hint' });
        return el('li', {},
          el('span', { class: 'name', text: f.file.name }),
          el('span', { text: size(f.file.size) }),
          f.bar, f.note,
          el('button', { type: 'button', class: 'secondary', 'aria-label': 'Remove ' + f.file.name,
            onclick: () => { files.splice(i, 1); render(); } }, 'Remove'));
      }));
    }
    function add(fl) {
      for (const file of fl) files.push({ file });
      render();
    }
    input.addEventListener('change', () => { add(input.files); input.value = ''; });
    ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); }));
    ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove('over'); }));
    drop.addEventListener('drop', (e) => { if (e.dataTransfer) add(e.dataTransfer.files); });

    function upload(pkgId, f) {
      return new Promise((resolve, reject) => {
        const up = new window.tus.Upload(f.file, {
          endpoint: '/v1/portal/uploads',
          metadata: { package: pkgId, filename: f.file.name },
          headers: { 'X-CSRF-Token': csrf() },
          retryDelays: [0, 1000, 3000, 5000, 10000],
          removeFingerprintOnSuccess: true,
          // Resume only into the same package.
          fingerprint: (file) => Promise.resolve(['moat', pkgId, file.name, file.size, file.lastModified].join(':')),
          onProgress: (sent, total) => {
            f.bar.value = total ? sent / total : 1;
            f.note.textContent = Math.floor(total ? (100 * sent) / total : 100) + ' %';
          },
          onSuccess: () => { f.bar.value = 1; f.note.textContent = 'uploaded'; resolve(); },
          onError: (err) => { f.note.textContent = 'failed'; reject(err); },
        });
        up.findPreviousUploads().then((prev) => {
          if (prev.length) up.resumeFromPreviousUpload(prev[0]);
          up.start();
        }, () => up.start());
      });
    }

    $('#new-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError('');
      if (!files.length) { showError('Add at least one file.'); input.focus(); return; }
      const access = $('#access').value;
      const recipients = $('#recipients').value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
      const req = { access, message: $('#message').value, recipients };
      const days = parseInt($('#expires').value, 10);
      if (days > 0) req.expires_in_days = days;
      const limit = parseInt($('#limit').value, 10);
      if (limit > 0) req.download_limit = limit;
      const pw = $('#pkg-password').value;
      if (pw) req.password = pw;
      const send = $('#send');
      send.disabled = true;
      say('Creating the package…');
      const r = await api('POST', '/v1/portal/packages', req);
      if (r.status !== 201) { send.disabled = false; say(''); showError(errText(r)); return; }
      const pkg = r.data;
      say('Uploading ' + files.length + ' file(s)…');
      try {
        await Promise.all(files.map((f) => upload(pkg.id, f)));
      } catch (e) {
        send.disabled = false;
        say('');
        showError('An upload failed: ' + (e && e.message ? e.message : e));
        return;
      }
      say('Submitting for scanning…');
      const s = await api('POST', '/v1/portal/packages/' + encodeURIComponent(pkg.id) + '/submit');
      if (s.status !== 200) { send.disabled = false; say(''); showError(errText(s)); return; }
      location.assign('/packages/' + encodeURIComponent(pkg.id));
    });
  };

  // Findings of a scan record (the records API; absent when it needs a token).
  const records = new Map();
  async function findings(rid) {
    if (!rid) return null;
    if (records.has(rid)) return records.get(rid);
    const r = await api('GET', '/v1/scans/' + encodeURIComponent(rid));
    const v = r.status === 200 ? r.data : null;
    records.set(rid, v);
    return v;
  }

  function findingText(rec) {
    if (!rec) return '';
    const f = (rec.findings || []).map((x) => x.signature + ' (' + x.engine + (x.location ? ', ' + x.location : '') + ')');
    const engines = (rec.engines || []).map((e) => e.engine || e.name).filter(Boolean);
    let t = f.join('; ');
    if (!t && rec.reason) t = typeof rec.reason === 'string' ? rec.reason : JSON.stringify(rec.reason);
    if (engines.length) t += (t ? ' · ' : '') + 'engines: ' + engines.join(', ');
    return t;
  }

  pages.package = async function () {
    if (!(await signedIn())) return;
    const id = document.body.dataset.id;
    const base = '/v1/portal/packages/' + encodeURIComponent(id);
    let last = '';
    poll(async () => {
      const r = await api('GET', base);
      if (r.status === 401) { toLogin(); return false; }
      if (r.status === 404) { showError('No such package.'); return false; }
      if (r.status !== 200) { showError(errText(r)); return true; }
      showError('');
      const p = r.data;
      const facts = [
        ['State', stateLabel(p)],
        ['Access', p.access],
        ['Created', when(p.created_at)],
        ['Expires', when(p.expires_at)],
        ['Downloads', p.download_count + (p.download_limit ? ' of ' + p.download_limit : ' (no limit)')],
        ['Password', p.has_password ? 'yes' : 'no'],
        ['Message', el('span', { class: 'message', text: p.message || '' })],
      ];
      if (p.released_by) facts.push(['Released by', p.released_by + ': ' + (p.release_reason || '')]);
      const ok = p.state === 'available';
      const rows = [];
      for (const f of p.files || []) {
        const rec = f.status === 'pending' ? null : await findings(f.scan_record_id);
        const name = ok
          ? el('a', { href: base + '/files/' + encodeURIComponent(f.id) + '/content', download: f.name, text: f.name })
          : el('span', { text: f.name });
        rows.push(el('tr', { 'data-file': f.id },
          el('td', {}, name),
          el('td', { text: size(f.size) }),
          el('td', {}, el('span', { class: 'v-' + f.status, text: f.complete ? f.status : 'uploading' })),
          el('td', { class: 'hint', text: findingText(rec) || (f.sha256 ? 'SHA-256 ' + f.sha256.slice(0, 16) + '…' : '') })));
      }
      // Summary and files together, so the state never shows without its files.
      $('#summary').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
      $('#files tbody').replaceChildren(...rows);
      $('#zip-row').hidden = !ok;
      $('#zip').setAttribute('href', base + '/zip');
      const links = [];
      if (p.links && p.links.public) {
        const u = pageUrl(p.links.public);
        links.push(el('li', {}, 'Public link: ', el('a', { href: u, class: 'public-link', text: u })));
      }
      for (const rc of (p.links && p.links.recipients) || []) {
        const u = pageUrl(rc.url);
        links.push(el('li', {}, rc.email + ': ', el('a', { href: u, text: u }),
          rc.downloaded_at ? ' (downloaded ' + when(rc.downloaded_at) + ')' : ''));
      }
      if (!links.length) links.push(el('li', { text: p.access === 'internal' ? 'Signed-in users download it from this page.' : 'No links.' }));
      $('#links').replaceChildren(...links);
      const a = await api('GET', '/v1/portal/audit?limit=50&package=' + encodeURIComponent(id));
      if (a.status === 200) {
        $('#log').replaceChildren(...(a.data.items || []).map((e) =>
          el('li', { text: when(e.at) + ' · ' + e.action + (e.actor_email ? ' · ' + e.actor_email : '') + (e.ip ? ' · ' + e.ip : '') })));
      }
      if (p.state !== last) { say('The package is ' + p.state + '.'); last = p.state; }
      return true;
    }, 2000);
  };

  pages.recipient = function () {
    const token = document.body.dataset.token;
    const base = '/v1/portal/p/' + encodeURIComponent(token);
    const box = $('#state-box');
    let password = '';
    let needPw = false;
    function plain(msg) {
      box.replaceChildren(el('p', { class: 'state-msg', text: msg }));
    }
    async function download(url, name) {
      showError('');
      const r = await fetch(url, { headers: { 'X-Package-Password': password }, credentials: 'same-origin' });
      if (!r.ok) {
        let msg = 'The download was refused (' + r.status + ').';
        try { const j = await r.json(); if (j.error) msg = j.error.message; } catch (e) { /* not JSON */ }
        showError(msg);
        return;
      }
      const blob = await r.blob();
      const u = URL.createObjectURL(blob);
      const a = el('a', { href: u, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(u), 60000);
    }
    function link(url, name, label) {
      return el('a', { href: url, class: 'button', download: name, text: label,
        onclick: (e) => { if (needPw) { e.preventDefault(); download(url, name); } } });
    }
    poll(async () => {
      const r = await api('GET', base);
      if (r.status === 404) { plain('This link is not valid.'); return false; }
      if (r.status === 410) {
        plain('This package has expired. Nothing can be downloaded.');
        $('#files-box').hidden = true;
        return false;
      }
      if (r.status !== 200) { showError(errText(r)); return true; }
      showError('');
      const p = r.data;
      if (p.message) {
        $('#message').textContent = p.message;
        $('#message-box').hidden = false;
      }
      if (p.state === 'uploading' || p.state === 'scanning') {
        plain('The files are being checked for malware. This page updates itself when they are ready.');
        return true;
      }
      if (p.state === 'quarantined') {
        plain('This package is quarantined: a file did not pass the security scan. Nothing can be downloaded.');
        $('#files-box').hidden = true;
        $('#pw-form').hidden = true;
        return false;
      }
      if (p.state !== 'available') {
        plain('This package is ' + p.state + '. Nothing can be downloaded.');
        return false;
      }
      plain('Ready to download until ' + when(p.expires_at) + '.');
      needPw = !!p.has_password;
      const list = (p.files || []).map((f) => el('li', {},
        el('span', { class: 'name', text: f.name }),
        el('span', { text: size(f.size) }),
        link(base + '/files/' + encodeURIComponent(f.id), f.name, 'Download ' + f.name)));
      $('#files').replaceChildren(...list);
      const zip = $('#zip');
      zip.onclick = () => {
        if (needPw) download(base + '/zip', 'package.zip');
        else location.assign(base + '/zip');
      };
      if (needPw && !password) {
        $('#pw-form').hidden = false;
        $('#files-box').hidden = true;
      } else {
        $('#files-box').hidden = false;
      }
      return false;
    }, 2000);
    $('#pw-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      password = $('#pkg-password').value;
      if (!password) { showError('Enter the password.'); return; }
      $('#pw-form').hidden = true;
      $('#files-box').hidden = false;
      const first = $('#files a');
      if (first) first.focus();
    });
  };

  pages.dashboard = async function () {
    if (!(await signedIn())) return;
    const src = $('#f-source');
    const ver = $('#f-verdict');
    let scans = [];
    function renderScans() {
      const rows = scans.filter((s) => (!src.value || s.source === src.value) && (!ver.value || s.status === ver.value));
      $('#scans tbody').replaceChildren(...rows.slice(0, 100).map((s) => el('tr', {},
        el('td', { text: when(s.created_at) }),
        el('td', { text: s.source }),
        el('td', { text: s.name }),
        el('td', {}, el('span', { class: 'v-' + s.status, text: s.status })),
        el('td', { class: 'hint', text: (s.findings || []).map((f) => f.signature).join(', ') }))));
    }
    src.addEventListener('change', renderScans);
    ver.addEventListener('change', renderScans);
    poll(async () => {
      const [ready, engines, list] = await Promise.all([
        api('GET', '/readyz'), api('GET', '/v1/engines'), api('GET', '/v1/scans?limit=500')]);
      if (ready.data) {
        const roles = Object.entries(ready.data.roles || {}).map(([n, h]) => {
          const okr = h && (h.ready === true || h === 'ok');
          return el('li', { class: okr ? 'ok' : 'bad', text: n + ': ' + (okr ? 'ready' : 'not ready') + (h && h.detail ? ' (' + h.detail + ')' : '') });
        });
        roles.push(el('li', { class: ready.data.database === 'ok' ? 'ok' : 'bad', text: 'database: ' + ready.data.database }));
        $('#roles').replaceChildren(...roles);
      }
      const health = (ready.data && ready.data.engines) || {};
      if (engines.status === 200) {
        $('#engines tbody').replaceChildren(...(engines.data.engines || []).map((e) => {
          const n = Object.values(e.signatures || {}).reduce((a, b) => a + b, 0);
          const h = health[e.name] || '';
          return el('tr', {},
            el('td', { text: e.name + (e.kind && e.kind !== e.name ? ' (' + e.kind + ')' : '') }),
            el('td', { text: e.version + (e.signature_version ? ' · ' + e.signature_version : '') }),
            el('td', { text: n.toLocaleString() }),
            el('td', { text: e.loaded_at ? when(e.loaded_at * 1000) : '' }),
            el('td', { class: h === 'ok' ? 'ok' : 'bad', text: h || 'unknown' }));
        }));
      } else if (engines.status === 401) {
        showError('The records API needs a token on this listener; the dashboard shows what it can.');
      }
      if (list.status === 200) {
        scans = list.data.scans || [];
        const counts = {};
        const sources = new Set();
        scans.forEach((s) => { counts[s.status] = (counts[s.status] || 0) + 1; sources.add(s.source); });
        $('#counts').replaceChildren(...Object.entries(counts).map(([k, v]) => el('li', { class: 'v-' + k, 'data-verdict': k, text: k + ': ' + v })));
        const have = new Set([...src.options].map((o) => o.value));
        sources.forEach((s) => { if (!have.has(s)) src.append(el('option', { value: s, text: s })); });
        renderScans();
      }
      return true;
    }, 3000);
  };

  pages.quarantine = async function () {
    if (!(await signedIn())) return;
    async function load() {
      const r = await api('GET', '/v1/portal/packages?all=true&limit=200');
      if (r.status !== 200) { showError(errText(r)); return; }
      const q = (r.data.items || []).filter((p) => p.state === 'quarantined');
      $('#empty').hidden = q.length > 0;
      const cards = [];
      for (const p of q) {
        const files = [];
        for (const f of p.files || []) {
          const rec = await findings(f.scan_record_id);
          files.push(el('li', {}, el('span', { class: 'name', text: f.name }), ' ',
            el('span', { class: 'v-' + f.status, text: f.status }), ' ',
            el('span', { class: 'hint', text: findingText(rec) })));
        }
        const rid = 'r-' + p.id;
        const pid = 'pw-' + p.id;
        const form = el('form', { class: 'release', novalidate: true },
          el('p', {}, el('label', { for: rid, text: 'Reason for releasing' }),
            el('textarea', { id: rid, rows: '2', required: true })),
          el('p', {}, el('label', { for: pid, text: 'Your password' }),
            el('input', { id: pid, type: 'password', autocomplete: 'current-password', required: true })),
          el('p', {}, el('button', { type: 'submit', class: 'danger', text: 'Release' })));
        form.addEventListener('submit', async (ev) => {
          ev.preventDefault();
          const reason = form.querySelector('textarea').value.trim();
          const password = form.querySelector('input').value;
          if (reason.length < 3 || !password) { showError('A written reason and your password are required.'); return; }
          const x = await api('POST', '/v1/portal/packages/' + encodeURIComponent(p.id) + '/release', { reason, password });
          if (x.status !== 200) { showError(errText(x)); return; }
          showError('');
          say('Package ' + p.id + ' released.');
          load();
        });
        cards.push(el('section', { class: 'card', 'data-id': p.id },
          el('h2', {}, el('a', { href: '/packages/' + encodeURIComponent(p.id), text: 'Package ' + p.id })),
          el('p', { text: 'Reason: ' + (p.reason || 'not given') }),
          el('ul', { class: 'files' }, ...files), form));
      }
      $('#q-list').replaceChildren(...cards);
    }
    load();
  };

  pages.users = async function () {
    if (!(await signedIn())) return;
    $('#user-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const r = await api('POST', '/v1/portal/users', {
        email: $('#u-email').value.trim(), password: $('#u-password').value, role: $('#u-role').value });
      if (r.status !== 201) { showError(errText(r)); return; }
      showError('');
      say('User ' + r.data.email + ' (' + r.data.role + ') added.');
      $('#user-form').reset();
    });
  };

  pages.audit = async function () {
    if (!(await signedIn())) return;
    async function load() {
      const q = new URLSearchParams();
      [['action', '#a-action'], ['actor', '#a-actor'], ['package', '#a-package']].forEach(([k, s]) => {
        const v = $(s).value.trim();
        if (v) q.set(k, v);
      });
      $('#csv').setAttribute('href', '/v1/portal/audit.csv?' + q.toString());
      q.set('limit', '200');
      const r = await api('GET', '/v1/portal/audit?' + q.toString());
      if (r.status !== 200) { showError(errText(r)); return; }
      showError('');
      $('#audit tbody').replaceChildren(...(r.data.items || []).map((e) => el('tr', {},
        el('td', { text: when(e.at) }),
        el('td', { text: e.actor_email || e.actor || '' }),
        el('td', { text: e.action }),
        el('td', { text: e.package_id || '' }),
        el('td', { text: e.ip || '' }),
        el('td', { class: 'hint', text: e.detail ? JSON.stringify(e.detail) : '' }))));
    }
    $('#audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
    load();
  };

  if (pages[page]) pages[page]();
})();
