// A real capture overrun, in real Chromium: earshot captures `alsa:mic` (ALSA's jack plugin on
// a JACK server with its dummy backend, support/jack.js), and its producer thread is frozen for
// 2 s while the device's clock runs on past its 500 ms buffer. The page must log one
// interruption whose loss is the chunks the overrun cost, and the server's log must name the
// same chunks, so a gap a listener reports can be traced to its cause.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, openPlaying } from './support/browser.js';
import { assertOneStallBySequence, holdUpProducer } from './support/held-up.js';
import { startJackMic } from './support/jack.js';
import { createSink } from './support/pulse.js';
import { startServer } from './support/server.js';

const FREEZE_MS = 2000;

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
  const held = await holdUpProducer(page, server, FREEZE_MS);
  const log = server.log.map((l) => l.line).join('\n');
  assert.match(log, /alsa:mic: overrun \(xrun 1\)/);
  const cost = /alsa:mic: the overrun cost chunks (\d+) to (\d+) \((\d+) ms\)/.exec(log);
  assert.ok(cost, log);
  const [, first, last, ms] = cost;
  // About the whole hold-up: what the device kept until it overran is dropped when the
  // overrun is recovered. Never more than it, whatever the device's clock did meanwhile.
  const { heldMs } = held;
  assert.ok(Number(ms) >= heldMs - 1000 && Number(ms) <= heldMs + 200, `${ms} ms lost for a ${heldMs} ms hold-up: ${log}`);

  // By sequence numbers only if the overrun's gap holds none of the device clock's drift.
  const row = await assertOneStallBySequence(page, held, `the server's log:\n${log}`);
  assert.deepEqual(
    [BigInt(row.seqBefore) + 1n, BigInt(row.seqAfter) - 1n],
    [BigInt(first), BigInt(last)],
    `the page lost ${row.seqBefore} → ${row.seqAfter}; the server logged chunks ${first} to ${last}`,
  );
  assert.equal(row.lostMs, Number(ms));
});
