// Debian's Chromium driven by playwright-core for browser tests: a fresh profile, sound routed
// to a given PulseAudio sink (Playwright's default --mute-audio removed, or the sound card would
// get exact zeros while every counter looked perfect), and every console message kept so tests
// can insist there are no errors.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { freezeChildren, keepChildrenPrioritized } from './priority.js';
import { holdsOfPages } from './pulse.js';

/** How long the Stop tests hold the button down before releasing it. A person's press lasts
 * about 100 ms, long enough to straddle one of the page's renders (four a second) now and then;
 * 300 ms straddles one every time, where an instant click almost never does. WebKit dropped
 * such a click while the page rewrote the button's label on every render. */
export const HELD_PRESS_MS = 300;

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

/** Console errors and warnings among `messages` ({ type, text }), less those matching `allowed`
 * (regexps). Playwright calls a warning `warning`, puppeteer `warn`. */
export function consoleProblems(messages, allowed = []) {
  return messages.filter(
    (m) => ['error', 'warn', 'warning', 'pageerror'].includes(m.type) && !allowed.some((re) => re.test(m.text)),
  );
}

/** What marks each kind of process `freeze` can stop, in its command line. */
const FROZEN = { renderer: '--type=renderer', audio: 'audio.mojom.AudioService' };

/** A switch in `args` replaces the usual one of that name (Chromium would take the first of
 * two). `device`
 * overrides the context's viewport and touch options (Playwright's `viewport`, `hasTouch`,
 * `isMobile`). */
export async function launchBrowser({ sink, args = [], device = {} } = {}) {
  const profile = await fs.mkdtemp(path.join(os.tmpdir(), 'earshot-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: ['--mute-audio'],
    args: [...FLAGS.filter((f) => !args.some((a) => a.split('=')[0] === f.split('=')[0])), ...args],
    env: { ...process.env, ...(sink ? { PULSE_SINK: sink.name } : {}) },
    viewport: { width: 1280, height: 860 },
    ...device,
  });
  const stopPrioritizing = keepChildrenPrioritized();
  const messages = []; // { type, text, url }
  const watch = (page) => {
    page.on('console', (m) => messages.push({ type: m.type(), text: m.text(), url: page.url() }));
    page.on('pageerror', (e) => messages.push({ type: 'pageerror', text: String(e?.stack ?? e), url: page.url() }));
  };
  context.on('page', watch);
  context.pages().forEach(watch);
  // Where the machine held up a page's audio thread, Chromium played its own silence: a
  // recording of the sink leaves those moments out, as it does the sound server's underruns.
  const stopHolds = sink?.holdsFrom('Chromium', () => holdsOfPages(context.pages()));
  return {
    context,
    messages,
    waitForState,
    async newPage(url) {
      const page = await context.newPage();
      if (url) await page.goto(url);
      return page;
    },
    /** Console errors and warnings, less those matching `allowed` (regexps). */
    problems(allowed = []) {
      return consoleProblems(messages, allowed);
    },
    /** Stops Chromium's `renderer` processes or its `audio` service (SIGSTOP) for `ms`: a
     * machine too busy to run the page's audio thread, or the browser's output to the sound
     * server, in time, as on a loaded Pi. */
    async freeze(kind, ms) {
      const marker = FROZEN[kind];
      if (!marker) throw new Error(`freeze: unknown kind ${kind}`);
      // Chromium rewrites its command line as one string, so not split at NULs.
      await freezeChildren({ file: 'cmdline', matches: (cmdline) => cmdline.includes(marker), what: `Chromium ${kind}` }, ms);
    },
    async close() {
      stopPrioritizing();
      stopHolds?.();
      await context.close().catch(() => {});
      await fs.rm(profile, { recursive: true, force: true });
    },
  };
}

/** Resolves when the page says it is `state` (see window.earshot.state). */
export function waitForState(page, state, timeout = 10_000) {
  return page.waitForFunction((s) => window.earshot?.state === s, state, { timeout, polling: 50 });
}

/** Opens `url` in a new page of `browser`, presses Start and waits until the page plays. */
export async function openPlaying(browser, url) {
  const page = await browser.newPage(url);
  await page.getByRole('button', { name: 'Start' }).click();
  await waitForState(page, 'playing');
  return page;
}

/** The status line a person reads at the top of the page. */
export const statusText = (page) => page.locator('#status[role=status]').textContent();

export const stats = (page) => page.evaluate(() => window.earshot.stats());
export const interruptions = (page) => page.evaluate(() => window.earshot.log());

/** How far the average fill may be from target and still be held there. */
const BUFFER_BAND_MS = 25;
/** How long an average fill off target is given to come back: what speed alone removes at its
 * 3 ms a second from just below the trim margin (40 ms past an 80 ms target), and more. */
const BUFFER_RETURN_MS = 10_000;

/**
 * Asserts that the player holds its jitter buffer at the target, from a stats snapshot `s`
 * taken while playing (any browser); `read` takes another. On the average fill, which drift
 * correction steers: the instant fill saws down by a chunk between arrivals, and further when
 * the machine bunches them (a CI run read 23 ms for an 80 ms target, with no underrun). An
 * average off target is read again until it is back within 25 ms, for up to 10 s: a hold of
 * the browser's audio thread leaves the fill that much higher (a CI run read 106 ms on average
 * for 80, after the sound server ran dry for 100 ms), and the page takes back what stays under
 * its trim margin with speed, not with an audible trim. A player that does not steer never
 * comes back. Returns a line for the test's log.
 */
export async function assertBufferHeld(s, browser, read) {
  const describe = (x) => `buffer ${x.bufferMs?.toFixed(1)} ms now, ${x.bufferAverageMs?.toFixed(1)} ms on average, target ${x.targetMs} ms`;
  const off = (x) => !(Math.abs(x.bufferAverageMs - x.targetMs) < BUFFER_BAND_MS);
  const first = Date.now();
  let now = s;
  while (off(now) && Date.now() - first < BUFFER_RETURN_MS) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    now = await read();
  }
  const back = now === s ? '' : `; first ${describe(s)}, read again for ${Date.now() - first} ms`;
  const what = `${browser}: ${describe(now)}${back}`;
  assert.ok(!off(now), what);
  assert.ok(now.bufferMs > 0, what);
  return what;
}
