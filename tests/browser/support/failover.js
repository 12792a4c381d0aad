// What the failover tests (through HAProxy, through nginx) watch in the page: where it plays
// from, and what went wrong in the page or the browser meanwhile.

import { stats } from './browser.js';
import { waitFor } from './haproxy.js';

/** Resolves with the instance the page plays from once it is no longer `from`. */
export async function movedFrom(page, from, timeoutMs) {
  let now = from;
  await waitFor(async () => {
    now = (await stats(page)).instance;
    return now !== from && (await page.evaluate(() => window.earshot.state)) === 'playing';
  }, timeoutMs, `the page to leave ${from}`);
  return now;
}

/** For a failure message: tells a player fault from an output-path one. */
export const glitches = (before, after) =>
  `player underruns ${before.underruns} → ${after.underruns}, browser glitches ${before.output.glitches} → ${after.output.glitches}`;
