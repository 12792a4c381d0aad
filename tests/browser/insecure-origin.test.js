// Where the browser hides AudioWorklet (any plain-HTTP origin other than localhost), the page
// says so and how to fix it, instead of failing silently. The insecure origin is real: Chromium
// resolves a made-up host name to the test server, and treats that name as not secure.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser } from './support/browser.js';
import { startServer } from './support/server.js';

const HOST = 'earshot.test';

let server;
let browser;

before(async () => {
  server = await startServer({ instance: 'A' });
  browser = await launchBrowser({ args: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`] });
});

after(async () => {
  await browser?.close();
  await server?.kill();
});

test('on an insecure origin the page explains that HTTPS or localhost is needed, and Start is disabled', async () => {
  const page = await browser.newPage(`http://${HOST}:${server.port}/`);
  assert.equal(await page.evaluate(() => window.isSecureContext), false, 'the browser sees an insecure origin');
  assert.equal(await page.evaluate(() => 'audioWorklet' in AudioContext.prototype), false);
  const notice = page.getByRole('alert');
  await notice.waitFor();
  const text = await notice.innerText();
  assert.match(text, /Playback is blocked on this address/);
  assert.match(text, new RegExp(`http://${HOST}:${server.port} is not one`));
  assert.match(text, /HTTPS/);
  assert.match(text, /reverse proxy/);
  assert.match(text, new RegExp(`http://localhost:${server.port}/`));
  const start = page.getByRole('button', { name: 'Start' });
  assert.equal(await start.isDisabled(), true);
  assert.equal(await start.getAttribute('aria-describedby'), 'notice');
  await page.close();
});

test('on 127.0.0.1 the same page shows no such notice and can start', async () => {
  const page = await browser.newPage(server.url);
  assert.equal(await page.evaluate(() => window.isSecureContext), true);
  assert.equal(await page.getByRole('alert').isVisible(), false);
  assert.equal(await page.getByRole('button', { name: 'Start' }).isEnabled(), true);
  await page.close();
});

test('neither page logs console errors', () => {
  assert.deepEqual(browser.problems(), []);
});
