// Start under the browsers' own autoplay rules, not the tests' usual ones: the other browser
// tests let pages play without a gesture, but Safari starts an AudioContext only inside the
// user's gesture, and Chrome only once the page has had one. Here WebKitGTK runs with autoplay
// denied and Start is clicked: the page must start its audio inside that click, or nothing
// plays. Chromium runs as a phone (touch screen, mobile viewport) with Chrome's rule
// (`document-user-activation-required`) and Start, Mute and Stop are tapped with a finger (touch
// events, not a mouse). WebKitGTK's WebDriver turns touch actions into mouse events, so the
// finger is Chromium's.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, waitForState } from './support/browser.js';
import { createSink, recordFor } from './support/pulse.js';
import { startServer } from './support/server.js';
import { assertTone, part } from './support/tone.js';
import { launchWebKit } from './support/webkit.js';

let server;
let webkitSink;
let webkit;
let chromiumSink;
let chromium;

before(async () => {
  server = await startServer({ source: 'tone:', instance: 'A' });
  webkitSink = await createSink('earshot_autoplay_webkit');
  webkit = await launchWebKit({ sink: webkitSink, autoplay: 'deny' });
  chromiumSink = await createSink('earshot_autoplay_chromium');
  chromium = await launchBrowser({
    sink: chromiumSink,
    args: ['--autoplay-policy=document-user-activation-required'],
    device: { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true },
  });
});

after(async () => {
  await webkit?.close();
  await chromium?.close();
  await server?.kill();
  await webkitSink?.remove();
  await chromiumSink?.remove();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** In the page: whether an AudioContext started by a script, with no gesture, runs. */
const contextStartsWithoutGesture = async () => {
  const ctx = new AudioContext();
  await Promise.race([ctx.resume(), new Promise((resolve) => setTimeout(resolve, 500))]);
  const state = ctx.state;
  await ctx.close();
  return state;
};

/** Run in Chromium's page as it loads (Playwright's `evaluate` would count as a gesture and lend
 * the page user activation): records the kind of each pointer pressed, and whether an
 * AudioContext started by a script runs. */
const probeGestures = `
  window.__pointers = [];
  addEventListener('pointerdown', (e) => window.__pointers.push(e.pointerType), { capture: true });
  window.__withoutGesture = (${contextStartsWithoutGesture})();
`;

/** Records the sink for 2 s, a second after the page started playing, and asserts the tone. */
async function assertPlaysTone(t, sink, browser) {
  await sleep(1000); // past the fade-in
  const recording = await recordFor(sink, 2000); // each browser's holds left out, by its launcher
  const { freq, level } = assertTone(part(recording, { channel: 0 }), `${browser} after the gesture`);
  t.diagnostic(`${browser}: ${freq.toFixed(2)} Hz at ${level.toFixed(2)} dBFS`);
}

test('in WebKit with autoplay denied, a click on Start plays the tone', async (t) => {
  const page = await webkit.newPage(server.url);
  // The rule holds for this page: what Start does inside the click is what makes it play.
  assert.equal(await page.evaluate(contextStartsWithoutGesture), 'suspended');
  await page.click('#toggle');
  await webkit.waitForState(page, 'playing');
  await assertPlaysTone(t, webkitSink, 'WebKit');
  assert.deepEqual(await webkit.problems(), []);
  // Chromium's test is next: a WebKit still playing would take the cores its audio needs.
  await webkit.close();
  webkit = undefined;
});

test("on a phone in Chromium, with its own autoplay rule, a finger's tap on Start plays the tone", async (t) => {
  await chromium.context.addInitScript(probeGestures);
  const page = await chromium.newPage(server.url);
  await sleep(1000); // until the probe has its answer, with no gesture before it
  await page.getByRole('button', { name: 'Start' }).tap();
  assert.equal(await page.evaluate(() => window.__withoutGesture), 'suspended');
  assert.deepEqual(await page.evaluate(() => window.__pointers), ['touch']);
  await waitForState(page, 'playing');
  await assertPlaysTone(t, chromiumSink, 'Chromium');
  // Mute and Stop answer a finger too.
  await page.getByRole('button', { name: 'Mute' }).tap();
  await page.getByRole('button', { name: 'Mute', pressed: true }).waitFor({ timeout: 2000 });
  await page.getByRole('button', { name: 'Stop' }).tap();
  await waitForState(page, 'stopped');
  assert.deepEqual(await page.evaluate(() => window.__pointers), ['touch', 'touch', 'touch']);
  // Chromium warns of the probe's context, which was refused as it should be.
  assert.deepEqual(chromium.problems([/The AudioContext was not allowed to start/]), []);
});
