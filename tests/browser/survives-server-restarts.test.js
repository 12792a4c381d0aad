// Interruptions in real Chromium against real servers: a server killed mid-stream and restarted
// on the same port is logged as "socket closed" with the duration the page really went without a
// server, the recording shows the hole and the tone coming back; another instance taking over the
// address is shown as an instance change; after Stop nothing reconnects, whatever the server does.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { blockLevels } from './support/audio.js';
import { saveRecording } from './support/artifacts.js';
import { interruptions, launchBrowser, openPlaying, stats, statusText, waitForState } from './support/browser.js';
import { createSink, record } from './support/pulse.js';
import { assertRestartRow } from './support/restart.js';
import { getJson, startServer } from './support/server.js';
import { BLOCK_MS, assertNoClick, assertTone, holesIn, part } from './support/tone.js';

/** Most the page may wait between reconnect attempts: the 2 s cap plus 20% jitter. */
const MAX_RETRY_MS = 2400;

let sink;
let browser;
let page;
let server; // whichever server currently holds the port
let port;

before(async () => {
  sink = await createSink('earshot_restarts');
  server = await startServer({ instance: 'A' });
  port = server.port;
  browser = await launchBrowser({ sink });
  page = await openPlaying(browser, server.url);
  await page.waitForTimeout(1000);
});

after(async () => {
  await browser?.close();
  await server?.kill();
  await sink?.remove();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Ends the server holding the port (SIGKILL: a crash; SIGTERM: a clean shutdown, which says
 * bye) and starts `instance` there after `downtimeMs`. */
async function replaceServer(instance, downtimeMs, signal = 'SIGKILL') {
  const killedAt = Date.now();
  await server.kill(signal);
  await sleep(downtimeMs);
  server = await startServer({ instance, listen: `127.0.0.1:${port}` });
  return { killedAt, upAt: Date.now() };
}

test('a killed server is logged as socket closed, as long as the page was without it, and play resumes without clicks', async (t) => {
  const since = Date.now();
  const recorder = record(sink);
  await sleep(1500);
  const { killedAt, upAt } = await replaceServer('A', 1500);
  await waitForState(page, 'playing', 8000);
  const joinedAt = server.joinedAfter(upAt - 1000);
  assert.ok(joinedAt, 'the page connected to the restarted server by itself');
  await sleep(2500);
  const recording = await recorder.stop();
  await saveRecording('restart-gap-and-recovery.wav', recording);

  // The outage as the page lived it: from the kill until it was connected again, which is the
  // 1.5 s downtime plus the wait for its next retry.
  const rows = await interruptions(page);
  const row = assertRestartRow(rows, { since, instance: 'A', killedAt, joinedAt });
  const outageMs = joinedAt - killedAt;
  assert.ok(row.durationMs >= upAt - killedAt - 100, `${row.durationMs} ms for a ${upAt - killedAt} ms downtime`);
  assert.ok(row.durationMs <= upAt - killedAt + MAX_RETRY_MS + 300, 'reconnected within one capped retry');
  // Sequence numbers follow the clock across restarts, so the loss is measured from them: the
  // time without a server, less the burst the restarted server sent at once. That is 200 ms,
  // or less when the page connected within 200 ms of the server starting: a server has no more
  // audio than it has produced.
  assert.equal(row.measuredBy, 'sequence');
  assert.equal(row.lostMs, Number(BigInt(row.seqAfter) - BigInt(row.seqBefore) - 1n) * 20);
  const burstMs = Math.min(200, Math.max(0, joinedAt - upAt));
  assert.ok(
    Math.abs(row.lostMs - (row.durationMs - burstMs)) <= 150,
    `${row.lostMs} ms lost in a ${row.durationMs} ms outage, burst up to ${burstMs} ms`,
  );
  const s = await stats(page);
  assert.equal(s.reconnects, 1);

  // The recording: tone, one hole about as long as the outage, then tone again.
  const { rate, startMs } = recording;
  const whole = part(recording);
  const holes = holesIn(whole);
  // Says whether the player itself ran dry (outside the outage) or the output path dropped audio.
  const why = `player underruns: ${s.underruns}, rows: ${JSON.stringify(rows.map((r) => r.cause))}`;
  assert.equal(holes.length, 1, `one hole expected: ${JSON.stringify(holes)}; ${why}`);
  const hole = { startMs: startMs + holes[0].start * BLOCK_MS, ms: holes[0].length * BLOCK_MS };
  // It starts once the ~80 ms in the buffer (and the sound card's own) have played out.
  assert.ok(hole.startMs >= killedAt && hole.startMs - killedAt <= 400, `hole starts ${hole.startMs - killedAt} ms after the kill`);
  t.diagnostic(
    `down ${upAt - killedAt} ms, page reconnected after ${outageMs} ms, logged ${Math.round(row.durationMs)} ms, ` +
      `recorded hole ${hole.ms} ms starting ${hole.startMs - killedAt} ms after the kill`,
  );
  assert.ok(Math.abs(hole.ms - row.durationMs) <= 300, `hole of ${hole.ms} ms for a logged ${row.durationMs} ms`);
  const at = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  // Both edges of the hole are faded: no sample jumps further than the tone itself can.
  assertNoClick(whole, `across the restart (${why})`, { since: 'the kill', sinceMs: startMs - killedAt });
  assertTone(part(recording, { to: at(killedAt) }), `before the kill (${why})`, { holes: false });
  assertTone(part(recording, { from: at(hole.startMs + hole.ms + 300) }), `after recovery (${why})`, { holes: false });

  // What a person sees.
  const firstRow = page.locator('#log tbody tr').first();
  assert.match(await firstRow.innerText(), /socket closed/);
  // The total counts every row of the log, this test's and any earlier one's (a player underrun
  // on a busy machine).
  const lost = rows.filter((r) => r.lostMs > 0);
  const lostMs = Math.round(lost.reduce((sum, r) => sum + r.lostMs, 0));
  const n = lost.length;
  assert.equal(await page.locator('#lost-total').innerText(), `Audio lost: ${lostMs} ms in ${n} ${n === 1 ? 'interruption' : 'interruptions'}.`);
});

test('another instance taking over the address is logged as an instance change', async () => {
  const since = Date.now();
  await replaceServer('B', 300, 'SIGTERM');
  await page.locator('#status[role=status]', { hasText: 'Playing from B' }).waitFor({ timeout: 8000 });
  const all = await interruptions(page);
  const rows = all.filter((r) => r.start >= since);
  assert.equal(rows.length, 1, JSON.stringify(all));
  const [row] = rows;
  assert.equal(row.cause, 'socket closed');
  assert.deepEqual([row.instanceBefore, row.instanceAfter], ['A', 'B']);
  assert.match(row.detail, /server said bye: server shutting down/);
  assert.equal((await stats(page)).instance, 'B');
  const cell = page.locator('#log tbody tr').first().locator('td.instance');
  assert.equal(await cell.innerText(), 'A → B');
  assert.match(await cell.getAttribute('class'), /changed/);
  assert.match(await page.locator('#stats').innerText(), /Instance\s+B/);
});

test('after Stop nothing reconnects, even when a server comes back on the address', async () => {
  const rowsBefore = (await interruptions(page)).length;
  await page.getByRole('button', { name: 'Stop' }).click();
  assert.equal(await page.evaluate(() => window.earshot.state), 'stopped');
  const { upAt } = await replaceServer('C', 200);
  const recorder = record(sink);
  await sleep(3000);
  const recording = await recorder.stop();
  assert.equal(server.joinedAfter(upAt - 1000), null, 'no connection to the new server');
  assert.equal((await getJson(server, '/api/status')).listeners.total, 0);
  assert.equal(await page.evaluate(() => window.earshot.state), 'stopped');
  assert.equal(await statusText(page), 'Stopped');
  assert.equal((await interruptions(page)).length, rowsBefore, 'Stop is not an interruption');
  assert.ok(Math.max(...blockLevels(recording.channels[0], recording.rate)) < -80, 'silent');
});

test('the only console errors are the browser reporting refused connections while no server ran', () => {
  assert.deepEqual(browser.problems([/^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/ws' failed/]), []);
});
