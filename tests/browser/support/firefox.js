// Debian's Firefox ESR for browser tests, driven over WebDriver BiDi by puppeteer-core (Playwright
// drives only its own patched Firefox builds, which this project does not download): a fresh
// profile, sound routed to a given PulseAudio sink, and every console message kept.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import puppeteer from 'puppeteer-core';

import { consoleProblems } from './browser.js';
import { keepChildrenPrioritized } from './priority.js';
import { holdsOfPages } from './pulse.js';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

export async function launchFirefox({ sink }) {
  const profile = await fs.mkdtemp(path.join(os.tmpdir(), 'earshot-firefox-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    env: { ...process.env, PULSE_SINK: sink.name },
    extraPrefsFirefox: {
      // Sound through PulseAudio (run.sh's private daemon), as on a Linux desktop.
      'media.cubeb.backend': 'pulse',
      'media.autoplay.default': 0,
      'media.autoplay.blocking_policy': 0,
      // Nothing of the browser's own on the closed network.
      'app.update.enabled': false,
      'browser.shell.checkDefaultBrowser': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'network.captive-portal-service.enabled': false,
    },
  });
  const stopPrioritizing = keepChildrenPrioritized();
  const messages = []; // { type, text }
  // As in Chromium (browser.js): where the machine held up a page's audio thread, Firefox played
  // its own silence, and a recording of the sink leaves those moments out.
  const stopHolds = sink.holdsFrom('Firefox', async () => holdsOfPages(await browser.pages()));
  return {
    messages,
    async newPage(url) {
      const page = await browser.newPage();
      page.on('console', (m) => messages.push({ type: m.type(), text: m.text() }));
      page.on('pageerror', (e) => messages.push({ type: 'pageerror', text: String(e?.stack ?? e) }));
      await page.goto(url);
      return page;
    },
    /** Console errors and warnings, less those matching `allowed` (regexps). */
    problems(allowed = []) {
      return consoleProblems(messages, allowed);
    },
    /** Resolves once the page says it is `state`; else fails with what it says instead. */
    async waitForState(page, state, timeout = 10_000) {
      try {
        await page.waitForFunction((s) => window.earshot?.state === s, { timeout, polling: 50 }, state);
      } catch (e) {
        const now = await page
          .evaluate(() => ({ state: window.earshot?.state, status: document.querySelector('#status')?.textContent }))
          .catch((err) => ({ unreadable: String(err) }));
        throw new Error(`Firefox: not ${state} after ${timeout} ms: ${JSON.stringify(now)}; console: ${JSON.stringify(messages)}`, { cause: e });
      }
    },
    async close() {
      stopPrioritizing();
      stopHolds();
      // A Firefox that does not quit in time is killed: the test is over either way.
      const quit = browser.close().catch(() => {});
      const late = new Promise((resolve) => setTimeout(() => resolve('late'), 10_000));
      if ((await Promise.race([quit, late])) === 'late') browser.process()?.kill('SIGKILL');
      await fs.rm(profile, { recursive: true, force: true });
    },
  };
}
