// Debian's WebKitGTK (Safari's engine: WebKit and JavaScriptCore) for browser tests, driven by
// its own WebKitWebDriver over classic W3C WebDriver. Neither Playwright (its own patched WebKit
// only) nor puppeteer (WebDriver BiDi, which WebKitWebDriver 2.50 does not offer) drives it, so
// this calls the handful of WebDriver endpoints the tests need with fetch: new session, navigate,
// find and click an element, run a script, delete the session. The browser is WebKitGTK's
// MiniBrowser on a private Xvfb display (it has no headless mode), with sound through GStreamer's
// PulseAudio sink into the given sink. What it cannot tell apart from Safari is said in README,
// "Browser player".

import { spawn } from 'node:child_process';
import fs from 'node:fs';

import { consoleProblems } from './browser.js';
import { freePort } from './ports.js';
import { freezeChildren, keepChildrenPrioritized } from './priority.js';

/** WebKitGTK's MiniBrowser: Debian ships it beside the library, under the multiarch directory. */
export function miniBrowser() {
  if (process.env.WEBKIT_BROWSER) return process.env.WEBKIT_BROWSER;
  for (const dir of fs.readdirSync('/usr/lib')) {
    const candidate = `/usr/lib/${dir}/webkit2gtk-4.1/MiniBrowser`;
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error('WebKitGTK MiniBrowser not found under /usr/lib/*/webkit2gtk-4.1/ (Debian package webkit2gtk-driver)');
}

/** Starts Xvfb on the first free display; resolves with the process and its `:N`. */
function startXvfb() {
  return new Promise((resolve, reject) => {
    // -displayfd: Xvfb picks a free display and writes its number to fd 3 once it accepts
    // clients, so there is neither a race for a number nor a wait loop.
    const xvfb = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x900x24', '-nolisten', 'tcp'], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    xvfb.stderr.on('data', (d) => (err += d));
    xvfb.stdio[3].on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve({ xvfb, display: `:${out.trim()}` });
    });
    xvfb.on('error', reject);
    xvfb.on('exit', (code) => reject(new Error(`Xvfb exited with ${code}: ${err}`)));
  });
}

/** The key under which WebDriver names an element (the "web element identifier"). */
const ELEMENT_KEY = 'element-6066-11e4-a52e-4f735466cecf';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Asks `child` to end (Xvfb then removes its display's socket and lock), and kills it if it
 * has not within 3 s. */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', () => resolve(true)));
  child.kill('SIGTERM');
  if (!(await Promise.race([exited, sleep(3000)]))) child.kill('SIGKILL');
}

/** One WebDriver command; a WebDriver error (its `error` and `message`) is thrown. */
async function command(base, method, route, body) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const reply = await response.json();
  if (!response.ok) {
    const { error, message } = reply.value ?? {};
    throw new Error(`WebDriver ${method} ${route}: ${error}${message ? `: ${message}` : ''}`);
  }
  return reply.value;
}

// Installed after each navigation: WebDriver classic has no console events, so the page's own
// console errors and warnings, and uncaught errors, are kept in the page for `problems`. Messages
// logged while the page loads, before this runs, are not seen.
const WATCH_CONSOLE = `
  if (!window.__earshotConsole) {
    const kept = (window.__earshotConsole = []);
    for (const type of ['error', 'warn']) {
      const original = console[type].bind(console);
      console[type] = (...args) => { kept.push({ type, text: args.map(String).join(' ') }); original(...args); };
    }
    addEventListener('error', (e) => kept.push({ type: 'pageerror', text: String(e.error?.stack ?? e.message) }));
    addEventListener('unhandledrejection', (e) => kept.push({ type: 'pageerror', text: String(e.reason?.stack ?? e.reason) }));
  }`;

/** `autoplay` is MiniBrowser's autoplay policy: `allow` (as the other browsers' tests set it) or
 * `deny`, under which nothing plays without the user's gesture. */
export async function launchWebKit({ sink, autoplay = 'allow' }) {
  const { xvfb, display } = await startXvfb();
  const port = await freePort();
  // The driver starts MiniBrowser, which starts WebKit's web process: all inherit this
  // environment, which is how the display and the sink reach them.
  const driver = spawn('WebKitWebDriver', [`--port=${port}`], {
    env: { ...process.env, DISPLAY: display, PULSE_SINK: sink.name },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let driverLog = '';
  driver.stderr.on('data', (d) => (driverLog = (driverLog + d).slice(-4000)));
  const base = `http://127.0.0.1:${port}`;
  const kill = async () => {
    await stop(driver);
    await stop(xvfb);
  };
  let ready = false;
  for (let i = 0; i < 100 && !ready; i++) {
    ready = await command(base, 'GET', '/status').then((s) => s.ready, () => false);
    if (!ready) await sleep(50);
  }
  if (!ready) {
    await kill();
    throw new Error(`WebKitWebDriver did not answer on ${base}: ${driverLog}`);
  }
  let session;
  try {
    session = await command(base, 'POST', '/session', {
      capabilities: {
        alwaysMatch: {
          'webkitgtk:browserOptions': {
            binary: miniBrowser(),
            // Autoplay as the other browser tests set it unless asked; Start is still a real
            // click.
            args: ['--automation', `--autoplay-policy=${autoplay}`],
          },
        },
      },
    });
  } catch (e) {
    await kill();
    throw new Error(`${e.message}; driver: ${driverLog}`, { cause: e });
  }
  const stopPrioritizing = keepChildrenPrioritized();
  const route = `/session/${session.sessionId}`;
  const run = (method, path, body) => command(base, method, `${route}${path}`, body);
  const evaluate = async (fn, ...args) => {
    // The script's last argument is WebDriver's callback; a rejected promise comes back as an
    // error message rather than a WebDriver timeout.
    const reply = await run('POST', '/execute/async', {
      script: `const done = arguments[arguments.length - 1];
        Promise.resolve().then(() => (${fn})(...Array.from(arguments).slice(0, -1)))
          .then((value) => done({ value }), (e) => done({ error: String(e?.stack ?? e) }));`,
      args,
    });
    if (reply?.error) throw new Error(`WebKit: page script failed: ${reply.error}`);
    return reply?.value;
  };
  // WebDriver names a found element by a key of its own (the "element identifier").
  const element = async (selector) => (await run('POST', '/element', { using: 'css selector', value: selector }))[ELEMENT_KEY];
  const page = {
    evaluate,
    async $eval(selector, fn) {
      return evaluate(`(s) => (${fn})(document.querySelector(s))`, selector);
    },
    /** A real click (WebDriver's element click), which gives the page user activation. With
     * `delay` (ms), as Playwright's and Puppeteer's `click` take it, the button is held down
     * that long before its release, as a person's is (about 100 ms): the page may change under
     * the pointer meanwhile, which an instant click almost never lets it. */
    async click(selector, { delay = 0 } = {}) {
      if (!delay) {
        await run('POST', `/element/${await element(selector)}/click`, {});
        return;
      }
      const origin = { [ELEMENT_KEY]: await element(selector) };
      // Element click scrolls its element into view; actions do not.
      await run('POST', '/execute/sync', { script: 'arguments[0].scrollIntoView({ block: "center" })', args: [origin] });
      const actions = [
        { type: 'pointerMove', origin, x: 0, y: 0 },
        { type: 'pointerDown', button: 0 },
        { type: 'pause', duration: delay },
        { type: 'pointerUp', button: 0 },
      ];
      await run('POST', '/actions', { actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions }] });
      await run('DELETE', '/actions');
    },
    /** Replaces an input's text by typing `text` into it, as a person would. */
    async fill(selector, text) {
      const id = await element(selector);
      await run('POST', `/element/${id}/clear`, {});
      await run('POST', `/element/${id}/value`, { text });
    },
    /** Whether the element is shown (WebDriver's "displayed"). */
    async isVisible(selector) {
      return run('GET', `/element/${await element(selector)}/displayed`);
    },
    /** Resolves once `fn` (run in the page) returns something truthy; else fails after `timeout`. */
    async waitFor(fn, timeout = 5000) {
      const deadline = Date.now() + timeout;
      while (Date.now() < deadline) {
        if (await evaluate(fn)) return;
        await sleep(50);
      }
      throw new Error(`WebKit: still false after ${timeout} ms: ${fn}`);
    },
    async goto(url) {
      await run('POST', '/url', { url });
      await run('POST', '/execute/sync', { script: WATCH_CONSOLE, args: [] });
    },
  };
  // As in Chromium (browser.js): where the machine held up the page's audio thread, WebKit
  // played its own silence, and a recording of the sink leaves those moments out.
  const stopHolds = sink.holdsFrom('WebKit', async () => (await evaluate(() => window.earshot?.stats().output?.recentHolds)) ?? []);
  const problems = async (allowed = []) => consoleProblems(await evaluate(() => window.__earshotConsole ?? []), allowed);
  return {
    version: session.capabilities.browserVersion,
    async newPage(url) {
      await page.goto(url);
      return page;
    },
    problems,
    /** Resolves once the page says it is `state`; else fails with what it says instead. */
    async waitForState(_page, state, timeout = 10_000) {
      const deadline = Date.now() + timeout;
      let now;
      while (Date.now() < deadline) {
        now = await evaluate(() => ({ state: window.earshot?.state, status: document.querySelector('#status')?.textContent }));
        if (now.state === state) return;
        await sleep(50);
      }
      throw new Error(`WebKit: not ${state} after ${timeout} ms: ${JSON.stringify(now)}; console: ${JSON.stringify(await problems().catch(String))}`);
    },
    /** Stops WebKit's web process (SIGSTOP) for `ms`: the page's threads, its audio thread
     * among them, held up as on a machine too busy to run them in time. */
    async freeze(ms) {
      // comm keeps 15 bytes of the name.
      await freezeChildren({ file: 'comm', matches: (comm) => comm.trim() === 'WebKitWebProces', what: 'WebKit web' }, ms);
    },
    async close() {
      stopHolds();
      stopPrioritizing();
      await Promise.race([run('DELETE', '').catch(() => {}), sleep(10_000)]);
      await kill();
    },
  };
}
