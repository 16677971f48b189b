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

  // Replace a polled region's children only when they changed, so a poll
  // does not take the keyboard focus away or make screen readers re-read.
  function swap(node, kids) {
    const t = node.cloneNode(false);
    t.append(...kids);
    if (t.innerHTML === node.innerHTML) return;
    node.replaceChildren(...t.childNodes);
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

  // A confirmation in the page's own modal dialog (keyboard: focus starts
  // on Cancel, Tab reaches the action, Escape cancels). Resolves true when
  // the action was confirmed.
  function confirmAction(title, text, okLabel) {
    const d = $('#confirm');
    return new Promise((resolve) => {
      const ok = $('#confirm-ok');
      const cancel = $('#confirm-cancel');
      const back = document.activeElement;
      $('#confirm-h').textContent = title;
      $('#confirm-text').textContent = text;
      ok.textContent = okLabel;
      const done = (v) => {
        ok.onclick = null;
        cancel.onclick = null;
        d.onclose = null;
        if (d.open) d.close();
        if (back && back.focus) back.focus();
        resolve(v);
      };
      ok.onclick = () => done(true);
      cancel.onclick = () => done(false);
      d.onclose = () => done(false);
      d.showModal();
      cancel.focus();
    });
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
      swap(tbody, items.map((p) => {
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
    // The admin's expiry default and maximum (the settings).
    const lim = me.limits || {};
    const exp = $('#expires');
    if (lim.default_expiry_days) exp.value = String(lim.default_expiry_days);
    if (lim.max_expiry_days) {
      exp.max = String(lim.max_expiry_days);
      $('#expires-hint').textContent = 'At most ' + lim.max_expiry_days + ' days.';
    }
    // The admin's sharing policy: only the access modes allowed, and a
    // password where links need one.
    if (Array.isArray(lim.access_modes)) {
      const sel = $('#access');
      Array.from(sel.options).forEach((o) => { if (!lim.access_modes.includes(o.value)) o.remove(); });
    }
    const pwPolicy = () => {
      const need = !!lim.require_password && $('#access').value !== 'internal';
      $('#pkg-password').required = need;
      $('#pkg-password-label').textContent = need ? 'Password (required by the portal\'s policy)' : 'Password (optional)';
    };
    $('#access').addEventListener('change', pwPolicy);
    pwPolicy();
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
    // Files chosen before this script was ready (the page waits for the
    // account first) are still in the input: keep them.
    if (input.files && input.files.length) { add(input.files); input.value = ''; }
    ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); }));
    ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove('over'); }));
    drop.addEventListener('drop', (e) => { if (e.dataTransfer) add(e.dataTransfer.files); });

    // An upload interrupted by a reload or a closed tab: the package it
    // went into and its files are kept in localStorage (tus-js-client keeps
    // each file's upload URL there too), so choosing the same files again
    // continues into the same package from the offsets the server holds.
    const DRAFT = 'moat:upload-draft:' + (me.id || me.email);
    const fkey = (file) => [file.name, file.size, file.lastModified].join(':');
    function loadDraft() {
      try { return JSON.parse(localStorage.getItem(DRAFT) || 'null'); } catch (e) { return null; }
    }
    function saveDraft(d) {
      try {
        if (d) localStorage.setItem(DRAFT, JSON.stringify(d));
        else localStorage.removeItem(DRAFT);
      } catch (e) { /* storage unavailable: no resume after a reload */ }
    }
    let draft = loadDraft();
    let draftLive = false;
    if (draft && draft.id) {
      api('GET', '/v1/portal/packages/' + encodeURIComponent(draft.id)).then((r) => {
        if (r.status === 200 && r.data.state === 'uploading') {
          draftLive = true;
          const names = (draft.files || []).map((k) => k.split(':').slice(0, -2).join(':'));
          $('#resume-text').textContent = 'Choose the same file(s) again (' + names.join(', ') +
            ') and press "Upload and send": the upload continues where it stopped, into the same package ' +
            '(with the message, recipients and settings entered then).';
          $('#resume-note').hidden = false;
        } else {
          saveDraft(null);
          draft = null;
        }
      });
    }
    $('#resume-discard').addEventListener('click', async () => {
      if (draft) await api('DELETE', '/v1/portal/packages/' + encodeURIComponent(draft.id));
      saveDraft(null);
      draft = null;
      draftLive = false;
      $('#resume-note').hidden = true;
      say('The interrupted upload was discarded.');
    });

    function upload(pkgId, f) {
      return new Promise((resolve, reject) => {
        const key = fkey(f.file);
        if (draft && (draft.done || []).includes(key)) {
          f.bar.value = 1;
          f.note.textContent = 'uploaded';
          resolve();
          return;
        }
        const up = new window.tus.Upload(f.file, {
          endpoint: '/v1/portal/uploads',
          metadata: { package: pkgId, filename: f.file.name },
          headers: { 'X-CSRF-Token': csrf() },
          retryDelays: [0, 1000, 3000, 5000, 10000],
          // Pieces of 4 MiB: progress the server has kept survives a
          // dropped connection or a reload.
          chunkSize: 4 * 1024 * 1024,
          removeFingerprintOnSuccess: true,
          // Resume only into the same package.
          fingerprint: (file) => Promise.resolve(['moat', pkgId, file.name, file.size, file.lastModified].join(':')),
          onProgress: (sent, total) => {
            f.bar.value = total ? sent / total : 1;
            f.note.textContent = Math.floor(total ? (100 * sent) / total : 100) + ' %';
          },
          onSuccess: () => {
            f.bar.value = 1;
            f.note.textContent = 'uploaded';
            if (draft) {
              draft.done = (draft.done || []).concat([key]);
              saveDraft(draft);
            }
            resolve();
          },
          onError: (err) => { f.note.textContent = 'failed'; reject(err); },
        });
        up.findPreviousUploads().then((prev) => {
          if (prev.length) {
            f.note.textContent = 'resuming';
            up.resumeFromPreviousUpload(prev[0]);
          }
          up.start();
        }, () => up.start());
      });
    }

    $('#new-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      showError('');
      if (!files.length) { showError('Add at least one file.'); input.focus(); return; }
      const send = $('#send');
      send.disabled = true;
      let pkg;
      const keys = files.map((f) => fkey(f.file));
      if (draftLive && draft && keys.every((k) => (draft.files || []).includes(k))) {
        // The same files again: continue the interrupted package.
        pkg = { id: draft.id };
        say('Resuming the interrupted upload…');
      } else {
        const access = $('#access').value;
        const recipients = $('#recipients').value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
        const req = { access, message: $('#message').value, recipients };
        const days = parseInt($('#expires').value, 10);
        if (days > 0) req.expires_in_days = days;
        const limit = parseInt($('#limit').value, 10);
        if (limit > 0) req.download_limit = limit;
        const pw = $('#pkg-password').value;
        if (pw) req.password = pw;
        say('Creating the package…');
        const r = await api('POST', '/v1/portal/packages', req);
        if (r.status !== 201) { send.disabled = false; say(''); showError(errText(r)); return; }
        pkg = r.data;
        draft = { id: pkg.id, files: keys, done: [] };
        saveDraft(draft);
      }
      $('#resume-note').hidden = true;
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
      saveDraft(null);
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
    // Revoke, extend, delete: for the owner and admins.
    async function act(method, path, body, done) {
      const r = await api(method, path, body);
      if (r.status === 401) { toLogin(); return; }
      if (r.status !== 200 && r.status !== 204) { showError(errText(r)); return; }
      showError('');
      say(done);
      await refresh();
    }
    $('#revoke').addEventListener('click', async () => {
      if (await confirmAction('Revoke this package?',
        'Every link stops working at once and nobody can download the files any more. This cannot be undone.', 'Revoke')) {
        await act('POST', base + '/revoke', {}, 'The package is revoked: its links no longer work.');
      }
    });
    $('#delete').addEventListener('click', async () => {
      if (await confirmAction('Delete this package now?',
        'Its files are removed from storage now and its links stop working. The record and its activity log are kept. This cannot be undone.', 'Delete')) {
        await act('DELETE', base, undefined, 'The package is deleted: its files are gone from storage.');
      }
    });
    $('#extend-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const days = parseInt($('#extend-days').value, 10);
      if (!(days > 0)) { showError('Enter a number of days.'); $('#extend-days').focus(); return; }
      await act('POST', base + '/extend', { expires_in_days: days }, 'The expiry is now ' + days + ' day(s) from now.');
    });
    // The poller and an action may refresh at once: only the latest
    // refresh may draw, so an answer read before a revoke never
    // overwrites the state read after it.
    let generation = 0;
    async function refresh() {
      const mine = ++generation;
      const stale = () => mine !== generation;
      const r = await api('GET', base);
      if (stale()) return true;
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
      if (stale()) return true;
      // Summary and files together, so the state never shows without its files.
      swap($('#summary'), facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, v)]));
      swap($('#files tbody'), rows);
      // The controls follow the state in the same step (before any await).
      const owner = me.role === 'admin' || me.id === p.owner_id;
      const live = p.state !== 'expired' && p.state !== 'purged';
      $('#manage').hidden = !owner || p.state === 'purged';
      $('#extend-form').hidden = !live;
      $('#revoke').hidden = !live;
      $('#revoke-hint').hidden = !live;
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
      swap($('#links'), links);
      const a = await api('GET', '/v1/portal/audit?limit=50&package=' + encodeURIComponent(id));
      if (stale()) return true;
      if (a.status === 200) {
        swap($('#log'), (a.data.items || []).map((e) =>
          el('li', { text: when(e.at) + ' · ' + e.action + (e.actor_email ? ' · ' + e.actor_email : '') + (e.ip ? ' · ' + e.ip : '') })));
      }
      if (p.state !== last) { say('The package is ' + p.state + '.'); last = p.state; }
      return true;
    }
    poll(refresh, 2000);
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
        plain('This package has expired or was withdrawn by its sender. Nothing can be downloaded.');
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
    // The password is checked before the files are shown (a HEAD of the
    // zip: no bytes, no download counted), so a wrong one is said at once
    // rather than by every download failing.
    $('#pw-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const given = $('#pkg-password').value;
      if (!given) { showError('Enter the password.'); return; }
      const button = $('#pw-form button[type="submit"]');
      button.disabled = true;
      say('Checking the password…');
      let r = null;
      try {
        r = await fetch(base + '/zip', { method: 'HEAD', headers: { 'X-Package-Password': given }, credentials: 'same-origin' });
      } catch (e) { r = null; }
      button.disabled = false;
      say('');
      if (!r || !r.ok) {
        showError(!r ? 'The server cannot be reached.'
          : r.status === 403 ? 'Wrong password.'
            : r.status === 429 ? 'Too many wrong passwords: wait a while, then try again.'
              : 'The package cannot be opened (' + r.status + ').');
        $('#pkg-password').select();
        $('#pkg-password').focus();
        return;
      }
      showError('');
      password = given;
      $('#pw-form').hidden = true;
      $('#files-box').hidden = false;
      const first = $('#files a');
      if (first) first.focus();
    });
  };

  // A stacked bar chart of verdicts per bucket, as inline SVG (no library;
  // colours come from classes in app.css, so the CSP's style-src holds).
  const VERDICTS = ['clean', 'infected', 'suspicious', 'unscannable', 'error'];
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = v;
      else e.setAttribute(k, String(v));
    }
    kids.forEach((k) => e.append(k));
    return e;
  }
  function chart(stats) {
    const W = 720;
    const H = 200;
    const left = 36;
    const bottom = 20;
    const buckets = stats.buckets || [];
    const total = (b) => Object.values(b.counts || {}).reduce((a, c) => a + c, 0);
    const max = Math.max(1, ...buckets.map(total));
    const bw = (W - left) / Math.max(1, buckets.length);
    const y = (v) => (H - bottom) * (1 - v / max);
    const sum = Object.entries(stats.totals || {}).map(([k, v]) => v + ' ' + k).join(', ') || 'no scans';
    const g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'Scans per ' +
      Math.round(stats.bucket_ms / 60000) + ' minute(s) over the last ' + stats.window + ': ' + sum,
      'data-buckets': buckets.length });
    g.append(svg('line', { class: 'axis', x1: left, y1: H - bottom, x2: W, y2: H - bottom }));
    g.append(svg('text', { x: 0, y: 12, text: String(max) }));
    g.append(svg('text', { x: 0, y: H - bottom, text: '0' }));
    const fmt = (ms) => {
      const d = new Date(ms);
      return stats.window === 'week' ? d.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric' })
        : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    };
    if (buckets.length) {
      g.append(svg('text', { x: left, y: H - 4, text: fmt(buckets[0].start) }));
      g.append(svg('text', { x: W, y: H - 4, 'text-anchor': 'end', text: fmt(buckets[buckets.length - 1].start) }));
    }
    buckets.forEach((b, i) => {
      let acc = 0;
      for (const v of VERDICTS) {
        const n = (b.counts || {})[v] || 0;
        if (!n) continue;
        const top = y(acc + n);
        const r = svg('rect', { class: 'bar-' + v, x: (left + i * bw + 0.5).toFixed(1), y: top.toFixed(1),
          width: Math.max(1, bw - 1).toFixed(1), height: (y(acc) - top).toFixed(1), 'data-verdict': v, 'data-count': n });
        r.append(svg('title', { text: fmt(b.start) + ': ' + n + ' ' + v }));
        g.append(r);
        acc += n;
      }
    });
    return g;
  }

  function age(ms) {
    if (ms === null || ms === undefined) return '–';
    const s = Math.round(ms / 1000);
    if (s < 120) return s + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return Math.round(s / 3600) + ' h';
  }

  pages.dashboard = async function () {
    if (!(await signedIn())) return;
    const src = $('#f-source');
    const ver = $('#f-verdict');
    const win = $('#f-window');
    let refresh = null;
    // The records API: needs no token on a loopback listener without
    // tokens; otherwise the dashboard says so and shows what it can.
    let needToken = false;
    async function scans() {
      const q = new URLSearchParams({ limit: '100' });
      if (src.value) q.set('source', src.value);
      if (ver.value) q.set('status', ver.value);
      const list = await api('GET', '/v1/scans?' + q.toString());
      if (list.status === 401) { needToken = true; return; }
      if (list.status !== 200) return;
      swap($('#scans tbody'), (list.data.scans || []).map((s) => el('tr', { 'data-status': s.status, 'data-source': s.source },
        el('td', { text: when(s.created_at) }),
        el('td', { text: s.source }),
        el('td', { text: s.name }),
        el('td', {}, el('span', { class: 'v-' + s.status, text: s.status })),
        el('td', { class: 'hint', text: (s.findings || []).map((f) => f.signature).join(', ') }))));
    }
    async function stats() {
      const st = await api('GET', '/v1/stats/verdicts?window=' + encodeURIComponent(win.value));
      if (st.status !== 200) return;
      swap($('#chart'), [chart(st.data)]);
      swap($('#counts'), VERDICTS.map((v) => el('li', { 'data-verdict': v },
        el('span', { class: 'sw bar-' + v, 'aria-hidden': 'true' }), v + ': ' + ((st.data.totals || {})[v] || 0))));
      const have = new Set([...src.options].map((o) => o.value));
      Object.keys(st.data.sources || {}).forEach((s) => { if (!have.has(s)) src.append(el('option', { value: s, text: s })); });
    }
    [src, ver].forEach((x) => x.addEventListener('change', () => scans()));
    win.addEventListener('change', () => stats());
    refresh = async () => {
      const [ready, engines, queues] = await Promise.all([
        api('GET', '/readyz'), api('GET', '/v1/engines'), api('GET', '/v1/stats/queues'), scans(), stats()]);
      if (ready.data) {
        const roles = Object.entries(ready.data.roles || {}).map(([n, h]) => {
          const okr = h && h.ready === true;
          return el('li', { class: okr ? 'ok' : 'bad', 'data-role': n, text: n + ': ' + (okr ? 'ready' : 'not ready') + (h && h.detail ? ' (' + h.detail + ')' : '') });
        });
        roles.push(el('li', { class: ready.data.database === 'ok' ? 'ok' : 'bad', text: 'database: ' + ready.data.database }));
        swap($('#roles'), roles);
      }
      const health = (ready.data && ready.data.engines) || {};
      if (engines.status === 200) {
        swap($('#engines tbody'), (engines.data.engines || []).map((e) => {
          const n = Object.values(e.signatures || {}).reduce((a, b) => a + b, 0);
          const h = health[e.name] || 'unknown';
          const err = e.last_reload_error ? ' (last reload failed: ' + e.last_reload_error + ')' : '';
          return el('tr', { 'data-engine': e.name, 'data-health': h === 'ok' ? 'ok' : 'bad' },
            el('td', { text: e.name + (e.kind && e.kind !== e.name ? ' (' + e.kind + ')' : '') }),
            el('td', { text: e.version }),
            el('td', { text: n.toLocaleString() }),
            el('td', { text: e.signature_version || '' }),
            el('td', { text: (e.loaded_at ? when(e.loaded_at * 1000) : '') + err }),
            el('td', { class: h === 'ok' ? 'ok' : 'bad', text: h === 'ok' ? 'healthy' : 'unhealthy: ' + h }));
        }));
      } else if (engines.status === 401) {
        needToken = true;
      }
      if (queues.status === 200) {
        const qs = queues.data.queues || [];
        $('#queues-empty').hidden = qs.length > 0;
        $('#queues').closest('.table-wrap').hidden = !qs.length;
        swap($('#queues tbody'), qs.map((q) => el('tr', { 'data-queue': q.queue },
          el('td', { text: q.queue }),
          el('td', { text: q.waiting }),
          el('td', { text: q.in_flight }),
          el('td', { class: q.dead ? 'bad' : '', text: q.dead }),
          el('td', { text: age(q.lag_ms) }))));
      }
      showError(needToken ? 'The records API needs a token on this listener; the dashboard shows what it can.' : '');
      return true;
    };
    poll(refresh, 3000);
  };

  pages.quarantine = async function () {
    if (!(await signedIn())) return;
    // Polled: packages quarantined since the page opened appear, released
    // ones go. Cards already shown are kept as they are (a reason being
    // typed and the focus survive a refresh), so each poll fetches the
    // findings of new cards only. Only the latest refresh draws.
    let generation = 0;
    function card(p, files) {
      const rid = 'r-' + p.id;
      const pid = 'pw-' + p.id;
      const form = el('form', { class: 'release', novalidate: true },
        el('p', {}, el('label', { for: rid, text: 'Reason for releasing' }),
          el('textarea', { id: rid, rows: '2', required: true })),
        el('p', {}, el('label', { for: pid, text: 'Your password' }),
          el('input', { id: pid, type: 'password', autocomplete: 'current-password', required: true })),
        el('p', {}, el('button', { type: 'submit', class: 'danger', text: 'Release' })));
      const section = el('section', { class: 'card', 'data-id': p.id },
        el('h2', {}, el('a', { href: '/packages/' + encodeURIComponent(p.id), text: 'Package ' + p.id })),
        el('p', { text: 'Reason: ' + (p.reason || 'not given') }),
        el('ul', { class: 'files' }, ...files), form);
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const reason = form.querySelector('textarea').value.trim();
        const password = form.querySelector('input').value;
        if (reason.length < 3 || !password) { showError('A written reason and your password are required.'); return; }
        const x = await api('POST', '/v1/portal/packages/' + encodeURIComponent(p.id) + '/release', { reason, password });
        if (x.status !== 200) { showError(errText(x)); return; }
        showError('');
        say('Package ' + p.id + ' released.');
        section.remove();
        $('#empty').hidden = $('#q-list').children.length > 0;
        await load();
      });
      return section;
    }
    async function load() {
      const mine = ++generation;
      const stale = () => mine !== generation;
      const r = await api('GET', '/v1/portal/packages?all=true&limit=200');
      if (stale()) return true;
      if (r.status === 401) { toLogin(); return false; }
      if (r.status !== 200) { showError(errText(r)); return true; }
      const q = (r.data.items || []).filter((p) => p.state === 'quarantined');
      const list = $('#q-list');
      const shown = new Map([...list.children].map((c) => [c.dataset.id, c]));
      const fresh = new Map();
      for (const p of q) {
        if (shown.has(p.id)) continue;
        const files = [];
        for (const f of p.files || []) {
          const rec = await findings(f.scan_record_id);
          files.push(el('li', {}, el('span', { class: 'name', text: f.name }), ' ',
            el('span', { class: 'v-' + f.status, text: f.status }), ' ',
            el('span', { class: 'hint', text: findingText(rec) })));
        }
        fresh.set(p.id, card(p, files));
      }
      if (stale()) return true;
      // Draw in the list's order, moving or inserting only what changed.
      const keep = new Set(q.map((p) => p.id));
      for (const [id, c] of shown) if (!keep.has(id)) c.remove();
      let at = list.firstElementChild;
      for (const p of q) {
        const c = shown.get(p.id) || fresh.get(p.id);
        if (!c) continue;
        if (c === at) at = at.nextElementSibling;
        else list.insertBefore(c, at);
      }
      $('#empty').hidden = q.length > 0;
      return true;
    }
    poll(load, 5000);
  };

  pages.users = async function () {
    if (!(await signedIn())) return;
    const path = (u) => '/v1/portal/users/' + encodeURIComponent(u.id);
    async function change(u, body, done) {
      const r = await api('PATCH', path(u), body);
      if (r.status === 401) { toLogin(); return; }
      if (r.status !== 200) showError(errText(r));
      else { showError(''); say(done); }
      await load();
    }
    // The reset dialog: set a password, or issue a one-time reset link.
    const rd = $('#reset-dialog');
    let target = null;
    $('#reset-close').addEventListener('click', () => rd.close());
    $('#reset-set').addEventListener('click', async () => {
      const pw = $('#reset-password').value;
      if (pw.length < 12) { $('#reset-out').textContent = 'The password needs 12 characters or more.'; return; }
      const r = await api('POST', path(target) + '/password', { password: pw });
      $('#reset-out').textContent = r.status === 200
        ? 'Password set for ' + target.email + '; their sessions were signed out.' : errText(r);
      $('#reset-password').value = '';
    });
    $('#reset-token').addEventListener('click', async () => {
      const r = await api('POST', path(target) + '/password', { reset_token: true });
      $('#reset-out').textContent = r.status === 201
        ? 'Give ' + target.email + ' this one-time link (it works once, until ' + when(r.data.expires_at) + '): ' + r.data.url
        : errText(r);
    });
    async function load() {
      const all = [];
      let cursor = '';
      for (let i = 0; i < 50; i++) {
        const r = await api('GET', '/v1/portal/users?limit=200' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
        if (r.status === 401) { toLogin(); return; }
        if (r.status !== 200) { showError(errText(r)); return; }
        all.push(...(r.data.items || []));
        cursor = r.data.next_cursor;
        if (!cursor) break;
      }
      $('#users tbody').replaceChildren(...all.map((u) => {
        const role = el('select', { 'aria-label': 'Role of ' + u.email },
          el('option', { value: 'member', text: 'Member', selected: u.role === 'member' }),
          el('option', { value: 'admin', text: 'Admin', selected: u.role === 'admin' }));
        role.addEventListener('change', () => change(u, { role: role.value }, u.email + ' is now ' + role.value + '.'));
        const toggle = el('button', { type: 'button', class: u.disabled ? 'secondary' : 'danger',
          'aria-label': (u.disabled ? 'Enable ' : 'Disable ') + u.email, text: u.disabled ? 'Enable' : 'Disable' });
        toggle.addEventListener('click', async () => {
          if (u.disabled) { await change(u, { disabled: false }, u.email + ' is enabled.'); return; }
          if (await confirmAction('Disable ' + u.email + '?',
            'They are signed out at once, cannot sign in, and their API tokens stop working until the account is enabled again.', 'Disable')) {
            await change(u, { disabled: true }, u.email + ' is disabled.');
          }
        });
        const reset = el('button', { type: 'button', class: 'secondary', 'aria-label': 'Reset password of ' + u.email, text: 'Reset password' });
        reset.addEventListener('click', () => {
          target = u;
          $('#reset-who').textContent = 'For ' + u.email + '. Their sessions are signed out either way.';
          $('#reset-out').textContent = '';
          $('#reset-password').value = '';
          rd.showModal();
          $('#reset-password').focus();
        });
        return el('tr', { 'data-email': u.email, 'data-disabled': String(u.disabled) },
          el('td', { text: u.email }),
          el('td', {}, role),
          el('td', { class: u.disabled ? 'bad status' : 'ok status', text: u.disabled ? 'disabled' : 'active' }),
          el('td', {}, el('span', { class: 'actions' }, toggle, reset)));
      }));
    }
    $('#user-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const r = await api('POST', '/v1/portal/users', {
        email: $('#u-email').value.trim(), password: $('#u-password').value, role: $('#u-role').value });
      if (r.status !== 201) { showError(errText(r)); return; }
      showError('');
      say('User ' + r.data.email + ' (' + r.data.role + ') added.');
      $('#user-form').reset();
      await load();
    });
    await load();
  };

  pages.reset = function () {
    const token = decodeURIComponent(location.hash.replace(/^#/, ''));
    if (token) {
      $('#r-token').value = token;
      // The code is in the fragment only; keep it out of the history too.
      history.replaceState(null, '', location.pathname);
    }
    $('#reset-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const pw = $('#r-password').value;
      if (pw.length < 12) { showError('The password needs 12 characters or more.'); return; }
      if (pw !== $('#r-again').value) { showError('The two passwords differ.'); return; }
      const r = await api('POST', '/v1/portal/auth/reset', { token: $('#r-token').value.trim(), password: pw });
      if (r.status !== 204) { showError(errText(r)); return; }
      showError('');
      say('Your password is set. Sign in with it.');
      setTimeout(() => location.assign('/login'), 1500);
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

  pages.settings = async function () {
    if (!(await signedIn())) return;
    const NUM = ['max_file_size', 'max_files_per_package', 'quota_bytes', 'default_expiry_days', 'max_expiry_days'];
    const LISTS = ['allowed_types', 'denied_types'];
    const BYTES = ['max_file_size', 'quota_bytes'];
    const POLICY = ['require_password', 'access_modes'];
    const modeBoxes = () => Array.from(document.querySelectorAll('input[name="access_modes"]'));
    let loaded = null;
    function fmt(k, v) {
      if (k === 'require_password') return v ? 'required' : 'not required';
      if (LISTS.includes(k) || k === 'access_modes') return v && v.length ? v.join(', ') : '(empty)';
      if (k === 'quota_bytes' && Number(v) === 0) return 'none';
      if (BYTES.includes(k)) return v + ' bytes' + (v >= 1000 ? ' (' + size(v) + ')' : '');
      return String(v);
    }
    function labelOf(k) {
      const l = document.querySelector('label[for="s-' + k + '"]');
      return l ? l.textContent : k;
    }
    function fill(v) {
      loaded = v;
      const over = new Set(v.overridden || []);
      NUM.concat(LISTS).forEach((k) => {
        const input = $('#s-' + k);
        input.value = LISTS.includes(k) ? (v.settings[k] || []).join('\n') : String(v.settings[k]);
        input.removeAttribute('aria-invalid');
        $('#h-' + k).textContent = (over.has(k) ? 'Set here. The configuration says: ' : 'The configuration\'s value: ') + fmt(k, v.config[k]);
      });
      $('#s-require_password').checked = !!v.settings.require_password;
      modeBoxes().forEach((b) => { b.checked = (v.settings.access_modes || []).includes(b.value); });
      POLICY.forEach((k) => {
        $('#h-' + k).textContent = (over.has(k) ? 'Set here. The configuration says: ' : 'The configuration\'s value: ') + fmt(k, v.config[k]);
      });
      $('#settings-updated').textContent = v.updated_at
        ? 'Last changed ' + when(v.updated_at) + ' by ' + (v.updated_by || 'unknown') + '.'
        : 'Nothing has been changed here; every value comes from the configuration.';
      const eng = v.engines || {};
      $('#s-fingerprint').textContent = eng.fingerprint ? 'Engine set ' + eng.fingerprint : '';
      $('#s-engines tbody').replaceChildren(...(eng.engines || []).map((e) => el('tr', {},
        el('td', { text: e.name + (e.kind && e.kind !== e.name ? ' (' + e.kind + ')' : '') }),
        el('td', { text: e.version + (e.signature_version ? ' · ' + e.signature_version : '') }),
        el('td', { text: Object.values(e.signatures || {}).reduce((a, b) => a + b, 0).toLocaleString() }),
        el('td', { text: e.loaded_at ? when(e.loaded_at * 1000) : '' }))));
      const smtp = v.smtp;
      const dl = $('#s-smtp');
      if (!smtp) {
        dl.replaceChildren(el('dt', { text: 'SMTP' }), el('dd', { text: 'Not configured: no e-mail is sent.' }));
      } else {
        const rows = [['Server', smtp.host + (smtp.port ? ':' + smtp.port : '')], ['Security', smtp.security],
          ['Authentication', smtp.authentication ? 'yes (credentials in the configuration)' : 'none'], ['Sender', smtp.from]];
        dl.replaceChildren(...rows.flatMap(([k, val]) => [el('dt', { text: k }), el('dd', { text: val })]));
      }
    }
    async function load() {
      const r = await api('GET', '/v1/portal/settings');
      if (r.status === 401) { toLogin(); return; }
      if (r.status !== 200) { showError(errText(r)); return; }
      fill(r.data);
    }
    async function save(body, done) {
      $('#settings-save').disabled = true;
      const r = await api('PUT', '/v1/portal/settings', body);
      $('#settings-save').disabled = false;
      if (r.status === 401) { toLogin(); return; }
      if (r.status !== 200) { say(''); showError(errText(r)); return; }
      showError('');
      fill(r.data);
      say(done);
    }
    $('#settings-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!loaded) return;
      const body = {};
      for (const k of NUM) {
        const input = $('#s-' + k);
        const raw = input.value.trim();
        if (!/^\d+$/.test(raw)) {
          input.setAttribute('aria-invalid', 'true');
          say('');
          showError(labelOf(k) + ': enter a whole number.');
          input.focus();
          return;
        }
        input.removeAttribute('aria-invalid');
        if (Number(raw) !== loaded.settings[k]) body[k] = Number(raw);
      }
      for (const k of LISTS) {
        const list = $('#s-' + k).value.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
        if (JSON.stringify(list) !== JSON.stringify(loaded.settings[k] || [])) body[k] = list;
      }
      const rp = $('#s-require_password').checked;
      if (rp !== !!loaded.settings.require_password) body.require_password = rp;
      const modes = modeBoxes().filter((b) => b.checked).map((b) => b.value);
      if (!modes.length) {
        say('');
        showError('Choose at least one access mode.');
        modeBoxes()[0].focus();
        return;
      }
      if (JSON.stringify(modes) !== JSON.stringify(loaded.settings.access_modes || [])) body.access_modes = modes;
      if (!Object.keys(body).length) { showError(''); say('Nothing changed.'); return; }
      await save(body, 'Settings saved.');
    });
    $('#settings-reset').addEventListener('click', async () => {
      if (await confirmAction('Use the configuration\'s values?',
        'Every setting changed here goes back to the value in the [portal] configuration.', 'Use the configuration')) {
        const body = {};
        NUM.concat(LISTS, POLICY).forEach((k) => { body[k] = null; });
        await save(body, 'Every setting now comes from the configuration.');
      }
    });
    await load();
  };

  // body[data-ready] says the page's script has set itself up (its
  // listeners are attached), whatever the outcome.
  const ready = () => { document.body.dataset.ready = 'true'; };
  if (pages[page]) Promise.resolve(pages[page]()).then(ready, ready);
  else ready();
})();
