// A server whose producer is held up for 2 s while its connections stay up, in real Chromium:
// what a listener lives through when a capture device overruns or a decoder stalls on a busy
// machine. Audio stops, the page notices the stall and moves to a new connection, and audio
// comes back with a jump in sequence numbers. The page must log that as one interruption whose
// loss is what the sequence numbers skipped, not as two that count the same seconds twice.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, openPlaying } from './support/browser.js';
import { assertOneStallBySequence, holdUpProducer } from './support/held-up.js';
import { createSink } from './support/pulse.js';
import { startServer } from './support/server.js';

const FREEZE_MS = 2000;
const CHUNK_MS = 20;
const STAGE_MS = 200;

let sink;
let browser;
let page;
let server;

before(async () => {
  sink = await createSink('earshot_held_up');
  server = await startServer({ instance: 'A' });
  browser = await launchBrowser({ sink });
  page = await openPlaying(browser, server.url);
  await page.waitForTimeout(1000);
});

after(async () => {
  await browser?.close();
  await server?.kill();
  await sink?.remove();
});

test('a producer held up for 2 s is one stall row that lost what the sequence numbers skipped, and play goes on', async () => {
  const held = await holdUpProducer(page, server, FREEZE_MS);
  assert.ok(
    server.log.some((l) => /producer fell \d+ ms behind real time/.test(l.line)),
    server.log.map((l) => l.line).join('\n'),
  );
  // Measured by sequence numbers: the server's chunks kept their clock times.
  const row = await assertOneStallBySequence(page, held);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], ['A', 'A']);
  // The producer reads a file or tone: a stage ahead (src/producer.rs, STAGE), and what it had
  // read is sent on time while it is held up: between one stage less a chunk and two stages less
  // a chunk of the hold-up is not lost. 200 ms either side for the freezer's and the page's
  // timing.
  const { heldMs } = held;
  const [leastAhead, mostAhead] = [STAGE_MS - CHUNK_MS, 2 * STAGE_MS - CHUNK_MS];
  assert.ok(
    row.lostMs >= heldMs - mostAhead - 200 && row.lostMs <= heldMs - leastAhead + 200,
    `${row.lostMs} ms lost for a ${heldMs} ms hold-up: ${JSON.stringify(row)}`,
  );
  assert.ok(
    row.durationMs >= heldMs - mostAhead - 200,
    `${row.durationMs} ms without audio for a ${heldMs} ms hold-up`,
  );
});
