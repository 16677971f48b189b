// The web UI in Firefox: Debian's firefox-esr driven over WebDriver BiDi
// (Firefox's own remote protocol; playwright-core drives only Playwright's
// patched Firefox), with npm `ws` as the WebSocket client. Signs in, opens
// the new-package page, the dashboard and the settings, collects every
// console error, saves a screenshot, and prints one JSON report line.
//
// Environment: MOAT_BASE, MOAT_EMAIL, MOAT_PASSWORD, MOAT_OUT (screenshot
// directory), MOAT_FIREFOX (default /usr/bin/firefox-esr).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');

const base = process.env.MOAT_BASE;
const email = process.env.MOAT_EMAIL;
const password = process.env.MOAT_PASSWORD;
const T = 60000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main(report) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-firefox-'));
  // Port 0: Firefox picks one and prints the WebDriver BiDi address.
  const ff = spawn(process.env.MOAT_FIREFOX || '/usr/bin/firefox-esr',
    ['-headless', '-no-remote', '-profile', profile, '--remote-debugging-port', '0'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  ff.stderr.on('data', (d) => { stderr += d; });
  let ws = null;
  try {
    const t = Date.now();
    let m = null;
    while (!(m = stderr.match(/WebDriver BiDi listening on (ws:\/\/[0-9.:]+)/)) && Date.now() - t < T) {
      if (ff.exitCode !== null) throw new Error('firefox exited: ' + stderr.slice(-500));
      await sleep(50);
    }
    if (!m) throw new Error('firefox did not open WebDriver BiDi: ' + stderr.slice(-500));
    ws = new WebSocket(m[1] + '/session');
    await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
    let id = 0;
    const pending = new Map();
    ws.on('message', (data) => {
      const msg = JSON.parse(data);
      if (msg.id !== undefined && pending.has(msg.id)) {
        pending.get(msg.id)(msg);
        pending.delete(msg.id);
      } else if (msg.method === 'log.entryAdded' && msg.params.level === 'error') {
        report.errors.push(msg.params.text);
      }
    });
    const send = (method, params) => new Promise((res, rej) => {
      const i = ++id;
      pending.set(i, (r) => (r.type === 'error' ? rej(new Error(`${method}: ${r.error}: ${r.message}`)) : res(r.result)));
      ws.send(JSON.stringify({ id: i, method, params }));
    });
    const s = await send('session.new', { capabilities: {} });
    report.browser = `${s.capabilities.browserName} ${s.capabilities.browserVersion}`;
    await send('session.subscribe', { events: ['log.entryAdded'] });
    const context = (await send('browsingContext.getTree', {})).contexts[0].context;
    const value = async (expr) => {
      const r = await send('script.evaluate', { expression: expr, target: { context }, awaitPromise: true });
      if (r.type === 'exception') throw new Error(`${expr}: ${r.exceptionDetails.text}`);
      return r.result;
    };
    const until = async (expr) => {
      const t0 = Date.now();
      while (Date.now() - t0 < T) {
        const r = await value(expr);
        if (r.type === 'boolean' && r.value) return;
        await sleep(100);
      }
      throw new Error('timed out waiting for ' + expr);
    };
    const go = async (p) => {
      await send('browsingContext.navigate', { context, url: base + p, wait: 'complete' });
      await until("document.body.dataset.ready === 'true'");
    };
    const list = (r) => r.value.map((v) => v.value);

    await go('/login');
    await value(`document.querySelector('#email').value = ${JSON.stringify(email)};
      document.querySelector('#password').value = ${JSON.stringify(password)};
      document.querySelector('#login-form').requestSubmit(); true`);
    await until("location.pathname === '/packages'");
    await until(`(document.querySelector('#who-email') || {}).textContent === ${JSON.stringify(email)}`);
    report.signed_in_as = (await value("document.querySelector('#who-email').textContent")).value;

    await go('/packages/new');
    report.new_labels = list(await value("[...document.querySelectorAll('#new-form label')].map((l) => l.textContent.trim())"));

    await go('/admin');
    await until("document.querySelectorAll('#engines tbody tr').length > 0 && document.querySelectorAll('[data-role]').length > 0");
    report.engines = list(await value("[...document.querySelectorAll('#engines tbody tr')].map((r) => r.textContent)"));
    report.roles = list(await value("[...document.querySelectorAll('[data-role]')].map((r) => r.textContent)"));
    const shot = await send('browsingContext.captureScreenshot', { context });
    fs.writeFileSync(path.join(process.env.MOAT_OUT, 'dashboard-firefox.png'), Buffer.from(shot.data, 'base64'));

    await go('/admin/settings');
    await until("document.querySelector('#settings-form input') !== null");
    report.settings_title = (await value('document.title')).value;
  } finally {
    if (ws) ws.close();
    ff.kill('SIGKILL');
    await new Promise((r) => (ff.exitCode !== null || ff.signalCode !== null ? r() : ff.once('exit', r)));
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const report = { errors: [] };
main(report).then(
  () => { console.log(JSON.stringify(report)); },
  (e) => { report.error = String(e && e.stack ? e.stack : e); console.log(JSON.stringify(report)); process.exit(1); },
);
