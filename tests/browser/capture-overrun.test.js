// A real capture overrun, in real Chromium: earshot captures `alsa:mic` (ALSA's jack plugin on
// a JACK server with its dummy backend, support/jack.js), and its producer thread is frozen for
// 2 s while the device's clock runs on past its 500 ms buffer. The page must log one
// interruption whose loss is the chunks the overrun cost, and the server's log must name the
// same chunks, so a gap a listener reports can be traced to its cause.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { interruptions, launchBrowser, openPlaying, stats } from './support/browser.js';
import { freezeThread } from './support/cgroup.js';
import { startJackMic } from './support/jack.js';
import { createSink } from './support/pulse.js';
import { startServer } from './support/server.js';

const FREEZE_MS = 2000;
const CHUNK_MS = 20;

let mic;
let sink;
let browser;
let page;
let server;

before(async () => {
  mic = await startJackMic('overrun');
  sink = await createSink('earshot_overrun');
  server = await startServer({ source: 'alsa:mic', instance: 'A', env: mic.env });
  browser = await launchBrowser({ sink });
  page = await openPlaying(browser, server.url);
  await page.waitForTimeout(1000);
});

after(async () => {
  await browser?.close();
  // Cleanly, so earshot's JACK client leaves and jackd can end (support/jack.js).
  await server?.kill('SIGTERM');
  await sink?.remove();
  await mic?.stop();
});

test('a capture overrun is one stall row on the page whose chunks are those the server logs as lost to it', async () => {
  const before = await stats(page);
  const since = Date.now();
  const { frozenAt, thawedAt } = await freezeThread(server.pid, 'producer', FREEZE_MS);
  await page.waitForTimeout(2000);

  const log = server.log.map((l) => l.line).join('\n');
  assert.match(log, /alsa:mic: overrun \(xrun 1\)/);
  const cost = /alsa:mic: the overrun cost chunks (\d+) to (\d+) \((\d+) ms\)/.exec(log);
  assert.ok(cost, log);
  const [, first, last, ms] = cost;
  // About the whole hold-up: what the device kept until it overran is dropped when the
  // overrun is recovered. Never more than it, whatever the device's clock did meanwhile.
  const heldMs = thawedAt - frozenAt;
  assert.ok(Number(ms) >= heldMs - 1000 && Number(ms) <= heldMs + 200, `${ms} ms lost for a ${heldMs} ms hold-up: ${log}`);

  const all = await interruptions(page);
  const rows = all.filter((row) => row.start >= since - 100);
  assert.equal(rows.length, 1, JSON.stringify(all));
  const [row] = rows;
  const what = `the page's row: ${JSON.stringify(row)}\nthe server's log:\n${log}`;
  assert.equal(row.cause, 'stall', what);
  // The chunks either side of the gap are stamped as far apart as their sequence numbers say,
  // so the page could tell the stream went on (it measures by the clock otherwise).
  assert.equal(row.measuredBy, 'sequence', what);
  assert.equal(row.ongoing, false, what);
  assert.deepEqual(
    [BigInt(row.seqBefore) + 1n, BigInt(row.seqAfter) - 1n],
    [BigInt(first), BigInt(last)],
    `the page lost ${row.seqBefore} → ${row.seqAfter}; the server logged chunks ${first} to ${last}`,
  );
  assert.equal(row.lostMs, Number(ms), what);
  assert.equal(row.lostMs, (Number(last) - Number(first) + 1) * CHUNK_MS, what);

  const s = await stats(page);
  assert.equal(s.gaps - before.gaps, 1);
  assert.equal(s.totalLostMs - before.totalLostMs, row.lostMs);
  // And the capture streams on.
  assert.equal(s.state, 'playing');
  await page.waitForTimeout(500);
  assert.ok((await stats(page)).chunks >= s.chunks + 15, 'chunks arrive again after the overrun');
});
