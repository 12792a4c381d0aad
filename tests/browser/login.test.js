// The login form in real Chromium against a server with --password: the form shows before
// anything plays and no stream is opened without a token, a wrong password says so, the right one
// lets Start play the tone through the sound card, and Log out stops playing and asks again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, stats, waitForState } from './support/browser.js';
import { createSink, record } from './support/pulse.js';
import { startServer } from './support/server.js';
import { assertTone, part } from './support/tone.js';

const PASSWORD = 'correct horse battery staple';

let sink;
let server;
let browser;
let page;

before(async () => {
  sink = await createSink('earshot_login');
  server = await startServer({ instance: 'A', args: ['--password', PASSWORD] });
  browser = await launchBrowser({ sink });
  page = await browser.newPage(server.url);
});

after(async () => {
  await browser?.close();
  await server?.kill();
  await sink?.remove();
});

const joined = () => server.log.filter((l) => /listener .* joined/.test(l.line)).length;

test('the login form shows and no stream is opened without a token', async () => {
  const password = page.getByLabel('Password');
  await password.waitFor({ state: 'visible' });
  assert.equal(await page.getByRole('button', { name: 'Log in' }).isVisible(), true);
  assert.equal(await page.getByRole('button', { name: 'Log out' }).isVisible(), false);
  await page.waitForTimeout(300);
  assert.equal(joined(), 0);
});

test('a wrong password is refused with a message, and the form stays', async () => {
  await page.getByLabel('Password').fill('wrong horse');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#login-message', { hasText: 'Wrong password.' }).waitFor({ timeout: 3000 });
  assert.equal(await page.getByRole('alert').filter({ hasText: 'Wrong password.' }).count(), 1, 'announced as an alert');
  assert.equal(await page.getByLabel('Password').isVisible(), true);
  assert.equal(joined(), 0);
});

test('the right password hides the form, and Start then plays the tone', async () => {
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor({ timeout: 3000 });
  assert.equal(await page.getByLabel('Password').isVisible(), false);
  await page.getByRole('button', { name: 'Start' }).click();
  await waitForState(page, 'playing');
  await page.waitForTimeout(500);
  const recorder = record(sink);
  await page.waitForTimeout(2000);
  const recording = await recorder.stop();
  const s = await stats(page);
  assert.equal(s.instance, 'A');
  assert.ok(s.chunks >= 100, `${s.chunks} chunks`);
  assert.equal(joined(), 1);
  assertTone(part(recording), `after login (player underruns: ${s.underruns})`, { holes: false });
});

test('Log out stops playing and shows the form again', async () => {
  await page.getByRole('button', { name: 'Log out' }).click();
  await waitForState(page, 'stopped', 3000);
  await page.getByLabel('Password').waitFor({ state: 'visible', timeout: 3000 });
  // The browser's own session is gone, not just the page's view of it.
  const session = await page.evaluate(() => fetch('/api/session', { cache: 'no-store' }).then((r) => r.json()));
  assert.deepEqual(session, { auth_required: true, authenticated: false });
});

test('the only console error is the browser reporting the refused wrong password', () => {
  assert.deepEqual(browser.problems([/status of 401 \(Unauthorized\)/]), []);
});
