// A long task on the page's main thread while it plays (a heavy script, a slow layout or paint,
// as on a slow phone), and what the page must make of it, in every browser alike.
//
// The page's WebSocket delivers on the main thread, so a task longer than the buffer leaves the
// player without audio: one underrun, which the page must log as such, not as a stall of the
// connection (its watchdog does not count time the page itself could not run), and from which
// it must resume by itself, losing nothing of the stream. Moving the WebSocket into a worker
// did not avoid the underrun in Firefox or WebKit when tried: neither handed the worker a
// message until the page's task had ended (README, "Troubleshooting").

import assert from 'node:assert/strict';

import { record } from './pulse.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Holds the main thread of `page` (playing, recorded from `sink`) for `ms`; returns the stats
 * before and after, the page's log rows from then on, when the task ran, and the recording. */
export async function longTaskWhilePlaying({ page, sink, stats, ms = 300 }) {
  const before = await stats();
  const recorder = record(sink);
  await sleep(500);
  const { startMs, heldMs } = await page.evaluate((forMs) => {
    const clock = () => performance.timeOrigin + performance.now(); // the page's log's clock
    const start = clock();
    while (clock() - start < forMs); // the long task
    return { startMs: start, heldMs: clock() - start };
  }, ms);
  await sleep(1500);
  const recording = await recorder.stop();
  const after = await stats();
  const rows = (await page.evaluate(() => window.earshot.log())).filter((r) => r.start >= startMs - 100);
  return { before, after, startMs, heldMs, rows, recording };
}

/** Starts timing `page`'s main thread with a 5 ms timer: a late tick is a hold. `stop()`
 * resolves to the three longest waits between ticks, in ms. */
export async function watchMainThread(page) {
  await page.evaluate(() => {
    const watch = { gaps: [], last: performance.now() };
    watch.timer = setInterval(() => {
      const now = performance.now();
      watch.gaps.push(now - watch.last);
      watch.last = now;
    }, 5);
    window.__earshotMainThread = watch;
  });
  return {
    stop: () =>
      page.evaluate(() => {
        const watch = window.__earshotMainThread;
        clearInterval(watch.timer);
        return watch.gaps.sort((a, b) => b - a).slice(0, 3).map(Math.round);
      }),
  };
}

/** The checks on `longTaskWhilePlaying`'s result, short of the recording's (each browser's test
 * checks that as it checks its others). Returns a line for a diagnostic. */
export function assertLongTaskRecovered({ before, after, startMs, heldMs, rows }, browser) {
  const what = `${browser}: main thread held up ${Math.round(heldMs)} ms; rows ${JSON.stringify(rows.map((r) => [r.cause, Math.round(r.start - startMs), r.durationMs]))}`;
  assert.deepEqual(
    rows.filter((r) => r.cause !== 'buffer underrun'),
    [],
    `${what}: the page's own hold is no stall, gap or reconnect`,
  );
  const underrun = rows.find((r) => r.start <= startMs + heldMs + 100);
  assert.ok(underrun, `${what}: no underrun logged for it`);
  // Dated by the audio thread, which the task does not hold: the silence began when the buffer
  // ran dry during the task, not when the main thread got the news after it.
  assert.ok(underrun.start > startMs && underrun.start < startMs + heldMs, `${what}: the underrun's row begins during the task`);
  assert.equal(underrun.ongoing, false, `${what}: play resumed by itself`);
  assert.ok(underrun.durationMs <= heldMs + 300, `${what}: the silence is about the hold, not a reconnect`);
  assert.equal(after.state, 'playing', what);
  assert.deepEqual(
    [after.gaps, after.skips, after.reconnects],
    [before.gaps, before.skips, before.reconnects],
    `${what}: nothing of the stream lost`,
  );
  return `${what}; player underruns ${before.underruns} → ${after.underruns}`;
}
