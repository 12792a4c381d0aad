// The failover tests' moves (through HAProxy, through nginx): drain or freeze the instance the
// page plays from while the sink is recorded, and see where the page went and what went wrong
// in the page or the browser meanwhile.

import { saveRecording } from './artifacts.js';
import { stats } from './browser.js';
import { waitFor } from './haproxy.js';
import { record } from './pulse.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

/** For a failure message: the page's log rows, each with when it began and ended against the
 * moves' moments (`marks`, name → ms since the epoch), so that a row nobody expected can be
 * placed in the test's own timeline (during the freeze, after the thaw, after the recording). */
export function placed(rows, marks) {
  const at = (t) =>
    t == null ? 'ongoing' : Object.entries(marks).map(([name, ms]) => `${name}${t >= ms ? '+' : ''}${Math.round(t - ms)}`).join(' ');
  return rows.map((r) => `${r.cause} ${r.instanceBefore}→${r.instanceAfter} from [${at(r.start)}] to [${at(r.end)}]${r.detail ? `: ${r.detail}` : ''}`).join('; ');
}

/**
 * Drains (SIGUSR1) the instance of `servers` the page plays from, 1.5 s into a recording of
 * `sink`, waits up to 5 s for the page to move, and records 2 s more (saved as `wav`).
 * Resolves with { from, to, drainAt, recordedTo, before, after, recording }: stats before and
 * after, and the moments of SIGUSR1 and the recording's end in ms since the epoch.
 */
export async function drainWhilePlaying({ page, sink, servers, wav }) {
  const before = await stats(page);
  const from = before.instance;
  const recorder = record(sink);
  await sleep(1500);
  const drainAt = Date.now();
  servers[from].signal('SIGUSR1');
  const to = await movedFrom(page, from, 5000);
  await sleep(2000);
  const recordedTo = Date.now();
  const recording = await recorder.stop();
  await saveRecording(wav, recording);
  return { from, to, drainAt, recordedTo, before, after: await stats(page), recording };
}

/**
 * Freezes (SIGSTOP) the instance the page plays from for `freezeMs`, 1 s into a recording of
 * `sink`; the page must move before the thaw (200 ms to spare). Records 1.5 s after the thaw
 * (saved as `wav`). Resolves with { from, to, stopAt, thawAt, recordedTo, before, after,
 * recording }: the moments of SIGSTOP, SIGCONT and the recording's end, in ms since the epoch.
 */
export async function freezeWhilePlaying({ page, sink, servers, freezeMs, wav }) {
  const before = await stats(page);
  const from = before.instance;
  const recorder = record(sink);
  await sleep(1000);
  const stopAt = Date.now();
  servers[from].signal('SIGSTOP');
  let to;
  let thawAt;
  try {
    to = await movedFrom(page, from, freezeMs - 200);
  } finally {
    await sleep(Math.max(0, stopAt + freezeMs - Date.now()));
    servers[from].signal('SIGCONT');
    thawAt = Date.now();
  }
  await sleep(1500);
  const recordedTo = Date.now();
  const recording = await recorder.stop();
  await saveRecording(wav, recording);
  return { from, to, stopAt, thawAt, recordedTo, before, after: await stats(page), recording };
}
