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
const fs = require('fs');

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

async function signIn(page, who, pw) {
  await page.goto(base + '/login');
  await page.getByLabel('E-mail').fill(who || email);
  await page.getByLabel('Password').fill(pw || password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(base + '/packages');
  await page.locator('#who-email', { hasText: who || email }).waitFor();
}

// Every value the page's upload progress bars and notes take, per file
// name (a MutationObserver reports to the test through an exposed
// function, so nothing is missed between polls and nothing is slept).
async function watchProgress(page) {
  const seen = {};
  await page.exposeFunction('moatProgress', (name, value, note) => {
    const s = seen[name] || (seen[name] = { values: [], notes: [] });
    if (s.values[s.values.length - 1] !== value) s.values.push(value);
    if (note && s.notes[s.notes.length - 1] !== note) s.notes.push(note);
  });
  await page.evaluate(() => {
    const list = document.getElementById('file-list');
    const report = () => list.querySelectorAll('li').forEach((li) => {
      const bar = li.querySelector('progress');
      const note = li.querySelector('.hint');
      window.moatProgress(li.querySelector('.name').textContent, bar ? bar.value : null, note ? note.textContent : '');
    });
    new MutationObserver(report).observe(list, { subtree: true, childList: true, attributes: true, characterData: true });
  });
  return seen;
}

// Drop `paths` on the element `target` the way a browser does: a real
// DataTransfer holding File objects (read from disk through a detached
// file input), with dragenter, dragover and drop events. Returns whether
// the zone showed it was a drop target during the drag.
async function dropFiles(page, target, paths) {
  const holder = await page.evaluateHandle(() => {
    const i = document.createElement('input');
    i.type = 'file';
    i.multiple = true;
    return i;
  });
  await holder.asElement().setInputFiles(paths);
  return page.evaluate(([input, sel]) => {
    const dt = new DataTransfer();
    for (const f of input.files) dt.items.add(f);
    const zone = document.querySelector(sel);
    const ev = (type) => new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt });
    zone.dispatchEvent(ev('dragenter'));
    zone.dispatchEvent(ev('dragover'));
    const highlighted = zone.classList.contains('over');
    const accepted = !zone.dispatchEvent(ev('drop'));
    return { highlighted, accepted, after: zone.classList.contains('over') };
  }, [holder, target]);
}

// The CSP actually enforced by the page: an inline script and an inline
// event handler are both tried; neither may run, and the browser must
// report the violations.
async function probeCsp(page) {
  return page.evaluate(() => new Promise((resolve) => {
    const violated = [];
    let imgDone = false;
    // Only when the page misbehaves (no violation reported): give up then.
    setTimeout(() => resolve({ inline_script_ran: window.__moatInline === 1, inline_handler_ran: window.__moatHandler === 1, violated, timed_out: true }), 30000);
    const finish = () => {
      if (imgDone && violated.length >= 2) {
        resolve({ inline_script_ran: window.__moatInline === 1, inline_handler_ran: window.__moatHandler === 1, violated });
      }
    };
    document.addEventListener('securitypolicyviolation', (e) => { violated.push(e.violatedDirective); finish(); });
    const s = document.createElement('script');
    s.textContent = 'window.__moatInline = 1;';
    document.body.append(s);
    const holder = document.createElement('div');
    holder.innerHTML = '<img src="/no-such-image-for-the-csp-probe" onerror="window.__moatHandler = 1">';
    const img = holder.firstChild;
    img.addEventListener('error', () => { imgDone = true; finish(); });
    document.body.append(img);
  }));
}

// Sign in, create a package with the files through the file input, wait
// for `want` on its page; returns the package page's facts.
async function send(page, result, message, want) {
  await signIn(page);
  await page.goto(base + '/packages/new');
  await page.locator('body[data-ready]').waitFor({ state: 'attached' });
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
  // The admin's settings page: read-only engines and e-mail, a refused
  // value shown as an error, a change saved with the keyboard (Enter in a
  // field), still there after a reload, and in effect on the new-package
  // page (an expiry beyond the new maximum is refused; a program named
  // .txt is refused by its content; the sharing policy's access modes and
  // password).
  async settings(browser, result) {
    const { page } = await newPage(browser, result);
    await signIn(page);
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.waitForURL(base + '/admin/settings');
    await page.locator('#settings-updated', { hasText: /\S/ }).waitFor();
    result.engine_rows = await page.locator('#s-engines tbody tr').count();
    result.smtp_text = await page.locator('#s-smtp').innerText();
    result.max_before = await page.getByLabel('Maximum expiry (days)').inputValue();
    await page.getByLabel('Default expiry (days)').fill('99');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#error:not([hidden])').waitFor();
    result.error_shown = await page.locator('#error').innerText();
    await page.getByLabel('Default expiry (days)').fill('2');
    await page.getByLabel('Maximum expiry (days)').fill('3');
    await page.getByLabel('Denied types').fill('executable');
    // The sharing policy: no public links, and links need a password.
    await page.getByLabel('Anyone with the link').uncheck();
    await page.getByLabel('Packages shared by link need a password').check();
    await page.getByLabel('Maximum expiry (days)').focus();
    await page.keyboard.press('Enter');
    await page.locator('#status', { hasText: 'Settings saved.' }).waitFor();
    result.error_hidden = await page.locator('#error').isHidden();
    await page.screenshot({ path: path.join(out, 'settings.png'), fullPage: true });
    await page.reload();
    await page.locator('#settings-updated', { hasText: 'Last changed' }).waitFor();
    result.max_after_reload = await page.getByLabel('Maximum expiry (days)').inputValue();
    result.denied_after_reload = await page.getByLabel('Denied types').inputValue();
    result.max_hint = await page.locator('#h-max_expiry_days').innerText();
    result.public_after_reload = await page.getByLabel('Anyone with the link').isChecked();
    result.password_policy_after_reload = await page.getByLabel('Packages shared by link need a password').isChecked();

    await page.goto(base + '/packages/new');
    await page.locator('body[data-ready]').waitFor({ state: 'attached' });
    await page.locator('#expires-hint', { hasText: 'At most' }).waitFor();
    result.new_default_expiry = await page.getByLabel('Expires after (days)').inputValue();
    result.new_expiry_hint = await page.locator('#expires-hint').innerText();
    await page.getByLabel('Choose files').setInputFiles(files);
    result.access_options = await page.locator('#access option').evaluateAll((os) => os.map((o) => o.value));
    await page.getByLabel('Who can download').selectOption('recipients');
    result.password_required = await page.locator('#pkg-password').evaluate((e) => e.required);
    result.password_label = await page.locator('#pkg-password-label').innerText();
    await page.getByLabel('Who can download').selectOption('internal');
    result.password_required_internal = await page.locator('#pkg-password').evaluate((e) => e.required);
    await page.getByLabel('Expires after (days)').fill('5');
    await page.getByRole('button', { name: 'Upload and send' }).click();
    await page.locator('#error:not([hidden])').waitFor();
    result.expiry_error = await page.locator('#error').innerText();
    await page.getByLabel('Expires after (days)').fill('3');
    await page.getByRole('button', { name: 'Upload and send' }).click();
    await page.locator('#error', { hasText: 'upload failed' }).waitFor();
    result.upload_error = await page.locator('#error').innerText();
    result.file_note = await page.locator('#file-list .hint').first().innerText();
  },

  // An admin revokes a member's package from its page with the keyboard
  // (the confirmation is the page's own dialog), then disables the member
  // from the users page. MOAT_PACKAGE and MOAT_MEMBER name them.
  async manage(browser, result) {
    const { page } = await newPage(browser, result);
    await signIn(page);
    await page.goto(base + '/packages/' + process.env.MOAT_PACKAGE);
    await page.locator('#summary .state-available').waitFor();
    const revoke = page.getByRole('button', { name: 'Revoke links' });
    await revoke.waitFor();
    await revoke.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Revoke this package?' });
    await dialog.waitFor();
    result.focus_in_dialog = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
    await page.screenshot({ path: path.join(out, 'package-revoke-confirm.png') });
    await page.keyboard.press('Tab');
    result.second_focus = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
    await page.keyboard.press('Enter');
    await page.locator('#summary .state-expired').waitFor();
    result.summary = await page.locator('#summary').innerText();
    result.revoke_visible = await revoke.isVisible();
    result.delete_visible = await page.getByRole('button', { name: 'Delete now' }).isVisible();
    await page.screenshot({ path: path.join(out, 'package-revoked.png'), fullPage: true });

    const member = process.env.MOAT_MEMBER;
    await page.goto(base + '/admin/users');
    const row = page.locator(`tr[data-email="${member}"]`);
    await row.waitFor();
    result.role_label = await page.getByLabel('Role of ' + member).inputValue();
    // A one-time reset link; the member chooses a password with it and signs in.
    await page.getByRole('button', { name: 'Reset password of ' + member }).click();
    await page.getByRole('button', { name: 'Create a one-time reset link instead' }).click();
    await page.locator('#reset-out', { hasText: '/reset#' }).waitFor();
    const m = (await page.locator('#reset-out').innerText()).match(/(http\S+\/reset#\S+)$/);
    result.reset_link = m ? m[1] : null;
    await page.getByRole('button', { name: 'Close' }).click();
    const mp = await newPage(browser, result);
    await mp.page.goto(result.reset_link);
    result.reset_code_filled = (await mp.page.getByLabel('Reset code').inputValue()).length > 0;
    result.reset_url_after = mp.page.url();
    await mp.page.locator('#r-password').fill(process.env.MOAT_MEMBER_NEW_PASSWORD);
    await mp.page.locator('#r-again').fill(process.env.MOAT_MEMBER_NEW_PASSWORD);
    await mp.page.getByRole('button', { name: 'Set password' }).click();
    await mp.page.waitForURL(base + '/login');
    await mp.page.getByLabel('E-mail').fill(member);
    await mp.page.getByLabel('Password').fill(process.env.MOAT_MEMBER_NEW_PASSWORD);
    await mp.page.getByRole('button', { name: 'Sign in' }).click();
    await mp.page.waitForURL(base + '/packages');
    // The header's address is filled in by the page's own request after
    // load: wait until it says something, then report what it says.
    await mp.page.waitForFunction(() => {
      const w = document.querySelector('#who-email');
      return w && w.textContent.trim() !== '';
    });
    result.member_signed_in = await mp.page.locator('#who-email').innerText();
    await page.getByRole('button', { name: 'Disable ' + member }).click();
    await page.getByRole('dialog', { name: 'Disable ' + member + '?' }).waitFor();
    await page.locator('#confirm-ok').click();
    await page.locator(`tr[data-email="${member}"][data-disabled="true"]`).waitFor();
    result.member_status = await page.locator(`tr[data-email="${member}"] .status`).innerText();
    result.enable_button = await page.getByRole('button', { name: 'Enable ' + member }).count();
    await page.screenshot({ path: path.join(out, 'users.png'), fullPage: true });
  },


  // Three files dropped on the new-package page (a real drop event with a
  // DataTransfer of File objects), personal links for MOAT_RECIPIENT and
  // the package password MOAT_PKG_PASSWORD: per-file progress, then
  // "available" for the sender. The recipient part is the scenario
  // "recipient", with the link from the e-mail.
  async dropshare(browser, result) {
    const { page } = await newPage(browser, result);
    await signIn(page);
    await page.goto(base + '/packages/new');
    await page.locator('body[data-ready]').waitFor({ state: 'attached' });
    await page.locator('#who-email', { hasText: email }).waitFor();
    const drop = await dropFiles(page, '#drop', files);
    result.drop_highlighted = drop.highlighted;
    result.drop_accepted = drop.accepted;
    result.drop_highlight_after = drop.after;
    await page.locator('#file-list li').nth(files.length - 1).waitFor();
    result.listed = await page.locator('#file-list .name').allInnerTexts();
    result.progress_labels = await page.locator('#file-list progress').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label')));
    await page.getByLabel('Message').fill('The three files, as promised.');
    await page.getByLabel('Who can download').selectOption('recipients');
    await page.getByLabel('Recipients').fill(process.env.MOAT_RECIPIENT);
    await page.getByLabel('Password (optional)').fill(process.env.MOAT_PKG_PASSWORD);
    await page.screenshot({ path: path.join(out, 'new.png'), fullPage: true });
    const seen = await watchProgress(page);
    await page.getByRole('button', { name: 'Upload and send' }).click();
    await page.waitForURL(/\/packages\/[0-9a-f-]+$/);
    result.progress = seen;
    result.package_id = page.url().split('/').pop();
    await page.locator('#summary .state-available').waitFor();
    result.summary = await page.locator('#summary').innerText();
    result.file_rows = await page.locator('#files tbody tr').count();
    result.files_text = await page.locator('#files').innerText();
    result.links_text = await page.locator('#links').innerText();
    await page.screenshot({ path: path.join(out, 'package-available.png'), fullPage: true });
    await page.goto(base + '/packages');
    await page.locator(`tr[data-id="${result.package_id}"][data-state="available"]`).waitFor();
    result.list_row = await page.locator(`tr[data-id="${result.package_id}"]`).innerText();
    await page.screenshot({ path: path.join(out, 'packages.png'), fullPage: true });
  },

  // A recipient follows MOAT_LINK (from the e-mail) in a fresh browser:
  // the password prompt; a wrong password is refused; the right one
  // (MOAT_PKG_PASSWORD) gives the files: MOAT_DOWNLOAD is downloaded, then
  // the zip. The downloads are saved for the test to compare.
  async recipient(browser, result) {
    const { page } = await newPage(browser, result);
    const resp = await page.goto(process.env.MOAT_LINK);
    result.landed = page.url();
    result.csp = resp.headers()['content-security-policy'] || null;
    await page.getByLabel('This package is protected by a password').waitFor();
    result.files_hidden_before = await page.locator('#files-box').isHidden();
    result.message_shown = await page.locator('#message').innerText();
    await page.screenshot({ path: path.join(out, 'recipient-password.png'), fullPage: true });
    await page.getByLabel('This package is protected by a password').fill('not the password');
    await page.getByRole('button', { name: 'Unlock' }).click();
    await page.locator('#error:not([hidden])').waitFor();
    result.wrong_password_error = await page.locator('#error').innerText();
    result.files_hidden_after_wrong = await page.locator('#files-box').isHidden();
    await page.getByLabel('This package is protected by a password').fill(process.env.MOAT_PKG_PASSWORD);
    await page.getByRole('button', { name: 'Unlock' }).click();
    await page.locator('#files-box').waitFor();
    result.error_hidden = await page.locator('#error').isHidden();
    result.file_names = await page.locator('#files .name').allInnerTexts();
    await page.screenshot({ path: path.join(out, 'recipient.png'), fullPage: true });
    const name = process.env.MOAT_DOWNLOAD;
    const [dl] = await Promise.all([page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download ' + name, exact: true }).click()]);
    result.file_suggested = dl.suggestedFilename();
    result.downloaded = path.join(out, 'recipient-' + name);
    await dl.saveAs(result.downloaded);
    const [z] = await Promise.all([page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download all (zip)' }).click()]);
    result.zip_suggested = z.suggestedFilename();
    result.zip = path.join(out, 'recipient-package.zip');
    await z.saveAs(result.zip);
    result.error_hidden_after = await page.locator('#error').isHidden();
  },

  // Markup in a file name and a message, through the whole UI: the new
  // page's list, the package page, "My packages", the recipient page.
  // Each shows the text literally (no element made of it); the CSP header
  // is read from each page and probed in the browser.
  async markup(browser, result) {
    const { page } = await newPage(browser, result);
    const fname = path.basename(files[0]);
    const message = process.env.MOAT_MESSAGE;
    const literal = async (p, where) => {
      const t = p.getByText(where === 'name' ? fname : message, { exact: true }).first();
      await t.waitFor();
      return t.isVisible();
    };
    const madeOf = (p) => p.evaluate(() => ({
      imgs: document.querySelectorAll('img').length,
      scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
    }));
    result.csp = {};
    result.visible = {};
    result.elements = {};
    result.probe = {};
    await signIn(page);
    let resp = await page.goto(base + '/packages/new');
    await page.locator('body[data-ready]').waitFor({ state: 'attached' });
    result.csp.new = resp.headers()['content-security-policy'] || null;
    await page.getByLabel('Choose files').setInputFiles(files);
    result.visible.new_name = await literal(page, 'name');
    await page.getByLabel('Message').fill(message);
    await page.getByLabel('Who can download').selectOption('public');
    result.elements.new = await madeOf(page);
    await page.getByRole('button', { name: 'Upload and send' }).click();
    await page.waitForURL(/\/packages\/[0-9a-f-]+$/);
    const id = page.url().split('/').pop();
    resp = await page.reload();
    result.csp.package = resp.headers()['content-security-policy'] || null;
    await page.locator('#summary .state-available').waitFor();
    result.visible.package_name = await literal(page, 'name');
    result.visible.package_message = await literal(page, 'message');
    result.elements.package = await madeOf(page);
    result.public_link = await page.locator('a.public-link').getAttribute('href');
    await page.screenshot({ path: path.join(out, 'package-markup.png'), fullPage: true });
    result.probe.package = await probeCsp(page);
    resp = await page.goto(base + '/packages');
    result.csp.packages = resp.headers()['content-security-policy'] || null;
    await page.locator(`tr[data-id="${id}"]`).waitFor();
    result.list_title = await page.locator(`tr[data-id="${id}"] td a`).first().innerText();
    result.elements.packages = await madeOf(page);
    const r = await newPage(browser, result);
    resp = await r.page.goto(result.public_link);
    result.csp.recipient = resp.headers()['content-security-policy'] || null;
    await r.page.locator('#files .name').first().waitFor();
    result.visible.recipient_name = await literal(r.page, 'name');
    result.visible.recipient_message = await literal(r.page, 'message');
    result.message_shown = await r.page.locator('#message').innerText();
    result.file_names = await r.page.locator('#files .name').allInnerTexts();
    result.elements.recipient = await madeOf(r.page);
    result.probe.recipient = await probeCsp(r.page);
    await r.page.screenshot({ path: path.join(out, 'recipient-markup.png'), fullPage: true });
  },

  // An EICAR file: quarantined for the sender; the recipient page says so
  // and offers nothing to download.
  async eicar(browser, result) {
    // The admin's quarantine page is open (and empty) before the package
    // exists: the card must appear there without a reload.
    const a = await newPage(browser, result);
    await signIn(a.page, process.env.MOAT_ADMIN_EMAIL, process.env.MOAT_ADMIN_PASSWORD);
    await a.page.getByRole('link', { name: 'Quarantine' }).click();
    await a.page.waitForURL(base + '/admin/quarantine');
    await a.page.locator('#empty:not([hidden])').waitFor();
    result.empty_before = await a.page.locator('#empty').isVisible();
    await a.page.evaluate(() => { window.__sameDocument = true; });

    const { page } = await newPage(browser, result);
    await send(page, result, 'test file', 'quarantined');
    const r = await newPage(browser, result);
    await r.page.goto(result.public_link);
    await r.page.locator('.state-msg', { hasText: 'quarantined' }).waitFor();
    result.recipient_text = await r.page.locator('main').innerText();
    result.download_links = await r.page.locator('main a[download], main a:has-text("Download")').count();
    result.zip_visible = await r.page.locator('#zip').isVisible();
    await r.page.screenshot({ path: path.join(out, 'recipient-quarantined.png'), fullPage: true });

    // The admin (MOAT_ADMIN_EMAIL) releases it from the quarantine page:
    // a wrong password is refused, then the right one with a reason.
    const id = result.package_id;
    const card = a.page.locator(`#q-list section[data-id="${id}"]`);
    await card.waitFor({ timeout: 60000 });
    result.card_appeared_in_place = await a.page.evaluate(() => window.__sameDocument === true);
    result.empty_hidden_with_card = await a.page.locator('#empty').isHidden();
    await card.locator('.files li .hint', { hasText: /\S/ }).first().waitFor();
    result.quarantine_card = await card.innerText();
    await a.page.screenshot({ path: path.join(out, 'quarantine.png'), fullPage: true });
    const reason = process.env.MOAT_RELEASE_REASON;
    await card.getByLabel('Reason for releasing').fill(reason);
    // Two refreshes later, the reason being typed is still there.
    for (let i = 0; i < 2; i++) {
      await a.page.waitForResponse((x) => x.url().includes('/v1/portal/packages?all=true'), { timeout: 60000 });
    }
    result.reason_kept_across_refresh = await card.getByLabel('Reason for releasing').inputValue();
    await card.getByLabel('Your password').fill('not my password');
    await card.getByRole('button', { name: 'Release' }).click();
    await a.page.locator('#error:not([hidden])').waitFor();
    result.wrong_password_error = await a.page.locator('#error').innerText();
    result.still_listed = await card.count();
    await card.getByLabel('Your password').fill(process.env.MOAT_ADMIN_PASSWORD);
    await card.getByRole('button', { name: 'Release' }).click();
    await a.page.locator('#status', { hasText: 'released' }).waitFor();
    await card.waitFor({ state: 'detached' });
    result.release_status = await a.page.locator('#status').innerText();
    result.error_hidden_after_release = await a.page.locator('#error').isHidden();
    result.empty_after_release = await a.page.locator('#empty').isVisible();

    // The audit page shows the release (filtered by its action), with the reason.
    await a.page.getByRole('link', { name: 'Audit log' }).click();
    await a.page.waitForURL(base + '/admin/audit');
    await a.page.locator('#audit tbody tr').first().waitFor();
    await a.page.screenshot({ path: path.join(out, 'audit.png'), fullPage: true });
    await a.page.getByLabel('Action').fill('package.release');
    await a.page.getByRole('button', { name: 'Filter' }).click();
    const row = a.page.locator('#audit tbody tr', { hasText: id });
    await a.page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#audit tbody tr')];
      return rows.length > 0 && rows.every((r) => r.children[2].textContent === 'package.release');
    });
    result.audit_rows = await a.page.locator('#audit tbody tr').count();
    result.audit_row = await row.innerText();
    result.audit_cells = await row.locator('td').allInnerTexts();
    await a.page.getByLabel('Action').fill('package.release.denied');
    await a.page.getByLabel('Action').press('Enter');
    await a.page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#audit tbody tr')];
      return rows.length > 0 && rows.every((r) => r.children[2].textContent === 'package.release.denied');
    });
    result.denied_rows = await a.page.locator('#audit tbody tr').count();
    await a.page.screenshot({ path: path.join(out, 'audit-release.png'), fullPage: true });

    // The sender sees it available, released, with who and why.
    await page.goto(base + '/packages/' + id);
    await page.locator('#summary .state-available').waitFor();
    result.summary_after_release = await page.locator('#summary').innerText();
    // The recipient now has the file.
    await r.page.reload();
    await r.page.getByRole('link', { name: 'Download ' + path.basename(files[0]), exact: true }).waitFor();
    result.recipient_links_after_release = await r.page.locator('#files a').count();
  },

  // A large upload interrupted by reloading the page: the first two 4 MiB
  // pieces reach the server, the third is held and the page reloaded
  // under it. The server's HEAD offset for the stored upload URL is read;
  // the same file chosen again must go on from there into the same package.
  async resume(browser, result) {
    const { page } = await newPage(browser, result);
    await signIn(page);
    await page.goto(base + '/packages/new');
    await page.locator('body[data-ready]').waitFor({ state: 'attached' });
    await page.getByLabel('Choose files').setInputFiles(files);
    await page.getByLabel('Who can download').selectOption('public');
    result.patches = [];
    let reloaded = false;
    let passed = 0;
    let held = null;
    await page.route('**/v1/portal/uploads/**', async (route) => {
      const req = route.request();
      if (req.method() !== 'PATCH') return route.continue();
      if (!reloaded && passed >= 2) { held = route; return; }
      passed++;
      const body = req.postDataBuffer();
      result.patches.push({ after_reload: reloaded, offset: Number(req.headers()['upload-offset']), bytes: body ? body.length : -1 });
      return route.continue();
    });
    await page.getByRole('button', { name: 'Upload and send' }).click();
    const t = Date.now();
    while (!held && Date.now() - t < T) await new Promise((r) => setTimeout(r, 50));
    result.progress_before_reload = await page.locator('#file-list progress').first().evaluate((p) => p.value);
    await page.reload();
    held.abort().catch(() => {});
    reloaded = true;
    await page.locator('#resume-note').waitFor();
    result.resume_text = await page.locator('#resume-text').innerText();
    // What the server holds for the upload URL tus-js-client stored.
    const stored = await page.evaluate(async () => {
      const out = [];
      for (let i = 0; i < localStorage.length; i++) {
        const k = localStorage.key(i);
        if (!k.startsWith('tus::')) continue;
        const url = JSON.parse(localStorage.getItem(k)).uploadUrl;
        const r = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' }, credentials: 'same-origin' });
        out.push({ url, status: r.status, offset: Number(r.headers.get('upload-offset')) });
      }
      return out;
    });
    result.stored_uploads = stored;
    await page.screenshot({ path: path.join(out, 'new-resume.png'), fullPage: true });
    await page.getByLabel('Choose files').setInputFiles(files);
    await page.getByRole('button', { name: 'Upload and send' }).click();
    await page.waitForURL(/\/packages\/[0-9a-f-]+$/);
    result.package_id = page.url().split('/').pop();
    await page.locator('#summary .state-available').waitFor();
    result.summary = await page.locator('#summary').innerText();
    result.file_rows = await page.locator('#files tbody tr').count();
    result.public_link = await page.locator('a.public-link').getAttribute('href');
    result.draft_left = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('moat:') || k.startsWith('tus::')));
  },

  // Every main page on a phone-sized screen (375x667): no horizontal
  // scrolling of the page, and Tab from the top reaches every visible
  // control, each with a visible focus outline. MOAT_PACKAGE (available,
  // with a public link MOAT_LINK_PAGE) gives the package and recipient pages.
  async phone(browser, result) {
    const ctx = await browser.newContext({ viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true });
    const page = await ctx.newPage();
    page.setDefaultTimeout(T);
    page.on('dialog', async (d) => { result.dialogs.push(d.message()); await d.dismiss(); });
    page.on('pageerror', (e) => result.page_errors.push(String(e)));
    result.pages = {};
    async function check(name, url, ready) {
      await page.goto(url);
      await page.locator(ready).first().waitFor();
      // Let a first poll settle.
      await page.waitForTimeout(300);
      const r = await page.evaluate(() => {
        const vw = document.documentElement.clientWidth;
        const offenders = [];
        document.querySelectorAll('body *').forEach((e) => {
          if (e.closest('.table-wrap') || !e.getClientRects().length) return;
          const b = e.getBoundingClientRect();
          if (b.right > vw + 1 && offenders.length < 5) offenders.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ' + Math.round(b.right));
        });
        const sel = 'a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])';
        const want = [...document.querySelectorAll(sel)].filter((e) => !e.disabled && e.getClientRects().length &&
          getComputedStyle(e).visibility !== 'hidden' && !e.closest('[hidden], dialog:not([open])'));
        want.forEach((e, i) => { e.dataset.kbd = String(i); });
        return { scroll_width: document.documentElement.scrollWidth, viewport: vw, offenders,
          controls: want.map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ':' + (e.getAttribute('aria-label') || e.textContent || e.name || '').trim().slice(0, 30)) };
      });
      // Tab through the page from the top.
      await page.evaluate(() => { if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0); });
      const reached = new Set();
      const unoutlined = [];
      for (let i = 0; i < r.controls.length + 15; i++) {
        await page.keyboard.press('Tab');
        const f = await page.evaluate(() => {
          const a = document.activeElement;
          if (!a || a === document.body) return null;
          const cs = getComputedStyle(a);
          const shown = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2;
          return { kbd: a.dataset.kbd || null, shown, what: a.tagName.toLowerCase() + (a.id ? '#' + a.id : '') };
        });
        if (!f) continue;
        if (!f.shown && unoutlined.length < 5) unoutlined.push(f.what);
        if (f.kbd !== null) reached.add(Number(f.kbd));
        if (reached.size === r.controls.length) break;
      }
      r.missing = r.controls.filter((_, i) => !reached.has(i));
      r.unoutlined = unoutlined;
      r.overflow = r.scroll_width > r.viewport;
      await page.screenshot({ path: path.join(out, 'phone-' + name + '.png'), fullPage: true });
      result.pages[name] = r;
    }
    await check('login', base + '/login', '#login-form');
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(base + '/packages');
    const id = process.env.MOAT_PACKAGE;
    await check('packages', base + '/packages', `tr[data-id="${id}"]`);
    await check('new', base + '/packages/new', '#new-form');
    await check('package', base + '/packages/' + id, '#summary .state-available');
    await check('dashboard', base + '/admin', '#engines tbody tr');
    await check('quarantine', base + '/admin/quarantine', '#empty:not([hidden]), #q-list section');
    await check('users', base + '/admin/users', '#users tbody tr');
    await check('audit', base + '/admin/audit', '#audit tbody tr');
    await check('recipient', process.env.MOAT_LINK_PAGE, '#files a');
  },

  // The dashboard after three scans through the API (two clean, one
  // EICAR): counts, the chart's bars, the verdict filter, the week view;
  // then the engine whose health check runs MOAT_ENGINE_SCRIPT is made
  // unreachable (the script renamed away) and the page must show it.
  async dashboard(browser, result) {
    const { page } = await newPage(browser, result);
    await signIn(page);
    await page.goto(base + '/admin');
    const probe = page.locator('#engines tr[data-engine="probe"]');
    await page.locator('#engines tr[data-engine="probe"][data-health="ok"]').waitFor();
    result.engine_health_before = await probe.locator('td').last().innerText();
    await page.locator('#counts li[data-verdict="infected"]', { hasText: 'infected: 1' }).waitFor();
    result.counts = {};
    for (const li of await page.locator('#counts li').all()) {
      const v = await li.getAttribute('data-verdict');
      result.counts[v] = Number((await li.innerText()).split(':').pop());
    }
    const bars = () => page.evaluate(() => {
      const out = {};
      document.querySelectorAll('#chart rect[data-verdict]').forEach((r) => {
        out[r.dataset.verdict] = (out[r.dataset.verdict] || 0) + Number(r.dataset.count);
      });
      return out;
    });
    result.chart = await bars();
    result.hour_buckets = await page.locator('#chart svg').getAttribute('data-buckets');
    result.chart_label = await page.locator('#chart svg').getAttribute('aria-label');
    await page.locator('#scans tbody tr').nth(2).waitFor();
    result.scan_rows = await page.locator('#scans tbody tr').count();
    await page.screenshot({ path: path.join(out, 'dashboard-overview.png'), fullPage: true });
    await page.locator('#f-verdict').selectOption('infected');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#scans tbody tr')];
      return rows.length > 0 && rows.every((r) => r.dataset.status === 'infected');
    });
    result.infected_rows = await page.locator('#scans tbody tr').count();
    await page.locator('#f-window').selectOption('week');
    await page.waitForFunction(() => {
      const s = document.querySelector('#chart svg');
      return s && s.dataset.buckets === '168';
    });
    result.week_chart = await bars();
    result.roles_text = await page.locator('#roles').innerText();
    result.queues_text = await page.locator('#queues').innerText();
    await page.screenshot({ path: path.join(out, 'dashboard.png'), fullPage: true });
    const script = process.env.MOAT_ENGINE_SCRIPT;
    fs.renameSync(script, script + '.gone');
    const t = Date.now();
    await page.locator('#engines tr[data-engine="probe"][data-health="bad"]').waitFor({ timeout: 30000 });
    result.unhealthy_after_ms = Date.now() - t;
    result.engine_health_after = await probe.locator('td').last().innerText();
    await page.screenshot({ path: path.join(out, 'dashboard-engine-down.png'), fullPage: true });
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
