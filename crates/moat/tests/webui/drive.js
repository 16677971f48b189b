// Drives Debian's Chromium through playwright-core against a running
// `moat serve`, one scenario per run; prints one JSON line with what it saw.
// The Rust test (tests/webui.rs) starts the server, checks the figures and
// the downloaded bytes.
//
//   NODE_PATH=$MOAT_TEST_NODE_MODULES node drive.js <scenario>
//   env: MOAT_BASE, MOAT_EMAIL, MOAT_PASSWORD, MOAT_OUT (downloads and
//   screenshots), MOAT_FILES (paths, separated by newlines)
'use strict';

const { chromium } = require('playwright-core');
const path = require('path');

const base = process.env.MOAT_BASE;
const email = process.env.MOAT_EMAIL;
const password = process.env.MOAT_PASSWORD;
const out = process.env.MOAT_OUT;
const files = (process.env.MOAT_FILES || '').split('\n').filter(Boolean);
const T = 60000;

async function newPage(browser, result) {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T);
  // Any alert/confirm/prompt would mean page text ran as script.
  page.on('dialog', async (d) => { result.dialogs.push(d.message()); await d.dismiss(); });
  page.on('pageerror', (e) => result.page_errors.push(String(e)));
  return { ctx, page };
}

async function signIn(page) {
  await page.goto(base + '/login');
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(base + '/packages');
}

// Sign in, create a package with the files through the file input, wait
// for `want` on its page; returns the package page's facts.
async function send(page, result, message, want) {
  await signIn(page);
  await page.goto(base + '/packages/new');
  await page.getByLabel('Choose files').setInputFiles(files);
  await page.getByLabel('Message').fill(message);
  await page.getByLabel('Who can download').selectOption('public');
  const bars = await page.locator('#file-list progress').count();
  await page.getByRole('button', { name: 'Upload and send' }).click();
  await page.waitForURL(/\/packages\/[0-9a-f-]+$/);
  const id = page.url().split('/').pop();
  await page.locator('#summary .state-' + want).waitFor();
  result.package_id = id;
  result.progress_bars = bars;
  result.summary = await page.locator('#summary').innerText();
  result.file_rows = await page.locator('#files tbody tr').count();
  result.files_text = await page.locator('#files').innerText();
  result.public_link = await page.locator('a.public-link').getAttribute('href');
  await page.screenshot({ path: path.join(out, 'package-' + want + '.png'), fullPage: true });
  // "My packages" shows it with the same state.
  await page.goto(base + '/packages');
  await page.locator(`tr[data-id="${id}"][data-state="${want}"]`).waitFor();
  await page.screenshot({ path: path.join(out, 'packages.png'), fullPage: true });
}

const scenarios = {
  // Two files (one with markup in its name, a message with a script tag):
  // available, then the public link in a fresh context downloads the first.
  async share(browser, result) {
    const { page } = await newPage(browser, result);
    await send(page, result, 'Hello <script>alert(1)</script> & welcome', 'available');
    const r = await newPage(browser, result);
    const resp = await r.page.goto(result.public_link);
    result.recipient_url = r.page.url();
    result.csp = resp.headers()['content-security-policy'] || null;
    const name = path.basename(files[0]);
    const link = r.page.getByRole('link', { name: 'Download ' + name });
    await link.waitFor();
    result.message_shown = await r.page.locator('#message').innerText();
    result.file_names = await r.page.locator('#files .name').allInnerTexts();
    await r.page.screenshot({ path: path.join(out, 'recipient.png'), fullPage: true });
    const [dl] = await Promise.all([r.page.waitForEvent('download'), link.click()]);
    const saved = path.join(out, 'downloaded-' + name);
    await dl.saveAs(saved);
    result.downloaded = saved;
  },

  // An EICAR file: quarantined for the sender; the recipient page says so
  // and offers nothing to download.
  async eicar(browser, result) {
    const { page } = await newPage(browser, result);
    await send(page, result, 'test file', 'quarantined');
    const r = await newPage(browser, result);
    await r.page.goto(result.public_link);
    await r.page.locator('.state-msg', { hasText: 'quarantined' }).waitFor();
    result.recipient_text = await r.page.locator('main').innerText();
    result.download_links = await r.page.locator('main a[download], main a:has-text("Download")').count();
    result.zip_visible = await r.page.locator('#zip').isVisible();
    await r.page.screenshot({ path: path.join(out, 'recipient-quarantined.png'), fullPage: true });
  },

  // Sign in with the keyboard only: Tab to the e-mail field, type, Tab,
  // type, Enter.
  async keyboard(browser, result) {
    const { page } = await newPage(browser, result);
    await page.goto(base + '/login');
    await page.locator('body').focus();
    let steps = 0;
    while (steps < 15 && (await page.evaluate(() => document.activeElement && document.activeElement.id)) !== 'email') {
      await page.keyboard.press('Tab');
      steps++;
    }
    result.tab_presses = steps;
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    result.second_field = await page.evaluate(() => document.activeElement.id);
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
    await page.waitForURL(base + '/packages');
    await page.locator('#who-email', { hasText: email }).waitFor();
    result.who = await page.locator('#who-email').innerText();
    result.url = page.url();
    await page.screenshot({ path: path.join(out, 'login-keyboard.png') });
  },
};

(async () => {
  const name = process.argv[2];
  const result = { scenario: name, dialogs: [], page_errors: [] };
  const browser = await chromium.launch({
    executablePath: process.env.MOAT_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    await scenarios[name](browser, result);
    console.log(JSON.stringify(result));
  } catch (e) {
    result.error = String(e && e.stack ? e.stack : e);
    console.log(JSON.stringify(result));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
