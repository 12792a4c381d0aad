// Failover in real Chromium through a real HAProxy in front of three earshot instances: the
// instance the page plays from is drained, and the page moves to another before leaving it, so
// the sound card never hears the switch (no silent 20 ms block, no click) and the log shows an
// instance change with 0 ms lost; then the instance it moved to is frozen (SIGSTOP, as a VM live
// migration looks from the network), and the page notices within the stall threshold, moves
// again without waiting for the server or TCP, and logs what it lost from sequence numbers; and
// the log exports as CSV with those rows.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { after, before, test } from 'node:test';

import { interruptions, launchBrowser, openPlaying, stats } from './support/browser.js';
import { drainWhilePlaying, freezeWhilePlaying, glitches, placed } from './support/failover.js';
import { startBalancer, waitFor } from './support/haproxy.js';
import { createSink } from './support/pulse.js';
import { BLOCK_MS, assertNoClick, assertTone, holesIn, part } from './support/tone.js';

const CHUNK_MS = 20;
const GRACE_MS = 3000;
const FREEZE_MS = 2000;
/** Half the default burst, so that the freeze costs audio the sequence numbers must account for:
 * with 200 ms the new instance's burst usually covers the whole quiet and the loss is 0 ms. */
const BURST_MS = 100;
/** The page's stall threshold for 20 ms chunks (www/connection.js STALL), and how late its
 * 25 ms watchdog may see it on a loaded machine. */
const STALL_THRESHOLD_MS = 150;
const STALL_SLACK_MS = 150;

let sink;
let balancer;
let browser;
let page;

before(async () => {
  sink = await createSink('earshot_failover');
  balancer = await startBalancer({
    instances: ['A', 'B', 'C'],
    serverArgs: ['--drain-grace-ms', String(GRACE_MS), '--burst-ms', String(BURST_MS)],
  });
  browser = await launchBrowser({ sink });
  page = await openPlaying(browser, balancer.url);
  await page.waitForTimeout(1000);
});

after(async () => {
  await browser?.close();
  await balancer?.stop();
  await sink?.remove();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('a drained instance hands the page to another through HAProxy: instance change, 0 ms lost, nothing to hear', async (t) => {
  const { from, to, drainAt, recordedTo, before, after: s, recording } = await drainWhilePlaying({
    page,
    sink,
    servers: balancer.servers,
    wav: 'drain-through-haproxy.wav',
  });
  const drained = balancer.servers[from];
  const why = glitches(before, s);

  // The log: one row, an instance change that cost nothing, measured by sequence numbers.
  const rows = await interruptions(page);
  assert.equal(rows.length, 1, `${placed(rows, { drain: drainAt, recordedTo })} (${glitches(before, s)})`);
  const [row] = rows;
  assert.equal(row.cause, 'instance change');
  assert.deepEqual([row.instanceBefore, row.instanceAfter], [from, to]);
  assert.equal(row.lostMs, 0);
  assert.equal(row.durationMs, 0);
  assert.equal(row.measuredBy, 'sequence');
  assert.equal(BigInt(row.seqAfter) - BigInt(row.seqBefore), 1n, `spliced at ${row.seqBefore} → ${row.seqAfter}`);
  assert.match(row.detail, /server draining \(goaway\); spliced in at seq \d+/);
  assert.ok(row.start - drainAt < 1000, `moved ${Math.round(row.start - drainAt)} ms after the drain began (grace ${GRACE_MS} ms)`);
  t.diagnostic(`${from} → ${to} ${Math.round(row.start - drainAt)} ms after SIGUSR1: ${row.detail}`);
  assert.equal(s.handovers, 1);
  assert.equal(s.reconnects, 0);
  assert.equal(s.gaps, 0);
  assert.equal(s.underruns, before.underruns, 'the player never ran dry');

  // The sound card: the tone all through, no silent block and no click at the switch.
  const whole = part(recording);
  assertTone(whole, `across the drain (${why})`, { holes: false });
  assertNoClick(whole, why, { since: 'the drain', sinceMs: recording.startMs - drainAt });

  // What a person sees.
  const cell = page.locator('#log tbody tr').first().locator('td.instance');
  assert.equal(await cell.innerText(), `${from} → ${to}`);
  assert.match(await page.locator('#log tbody tr').first().innerText(), /instance change/);
  assert.equal(await page.locator('#lost-total').innerText(), 'No audio lost.');

  // The drained instance left by itself once its grace was over, with exit status 0.
  const exit = await Promise.race([drained.exited, sleep(GRACE_MS + 3000).then(() => null)]);
  assert.deepEqual(exit, { code: 0, signal: null }, `${from} exits 0 after the drain`);
  assert.ok(Date.now() - drainAt >= GRACE_MS - 100, 'not before its grace period');
});

test('a frozen instance is noticed as a stall within the threshold, left at once, and the loss is measured by sequence numbers', async (t) => {
  const { from, to, stopAt, thawAt, recordedTo, before, after: s, recording } = await freezeWhilePlaying({
    page,
    sink,
    servers: balancer.servers,
    freezeMs: FREEZE_MS,
    wav: 'stall-through-haproxy.wav',
  });

  const rows = (await interruptions(page)).slice(1);
  assert.equal(rows.length, 1, `${placed(rows, { freeze: stopAt, thaw: thawAt, recordedTo })} (${glitches(before, s)})`);
  const [row] = rows;
  assert.equal(row.cause, 'stall');
  assert.equal(row.ongoing, false);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], [from, to]);
  // Noticed within the threshold (plus the watchdog's step on a busy machine), counted from the
  // last audio that arrived, which was just before the freeze.
  const silentMs = Number(/no audio for (\d+) ms \(threshold (\d+) ms\)/.exec(row.detail)?.[1]);
  assert.match(row.detail, new RegExp(`threshold ${STALL_THRESHOLD_MS} ms`));
  assert.ok(silentMs >= STALL_THRESHOLD_MS && silentMs <= STALL_THRESHOLD_MS + STALL_SLACK_MS, `noticed after ${silentMs} ms`);
  assert.ok(row.start >= stopAt - 100 && row.start <= stopAt + 50, `last audio ${Math.round(row.start - stopAt)} ms from the freeze`);
  // Recovered long before the frozen server came back: the move did not wait for it.
  assert.ok(row.durationMs < FREEZE_MS / 2, `${Math.round(row.durationMs)} ms without new audio for a ${FREEZE_MS} ms freeze`);
  // The loss is exactly the chunks between the last one from the frozen instance and the first
  // from the new one: the time without new audio, less the new one's burst, to within a chunk
  // or two of arrival timing.
  assert.equal(row.measuredBy, 'sequence');
  const missing = BigInt(row.seqAfter) - BigInt(row.seqBefore) - 1n;
  assert.ok(missing > 0n, `${row.seqBefore} → ${row.seqAfter}`);
  assert.equal(row.lostMs, Number(missing) * CHUNK_MS);
  assert.ok(
    Math.abs(row.lostMs - (row.durationMs - BURST_MS)) <= 3 * CHUNK_MS,
    `${row.lostMs} ms lost in ${Math.round(row.durationMs)} ms without new audio, burst ${BURST_MS} ms`,
  );
  t.diagnostic(
    `${from} → ${to}: no audio for ${silentMs} ms when noticed, audio again after ${Math.round(row.durationMs)} ms, ` +
      `${row.lostMs} ms lost (seq ${row.seqBefore} → ${row.seqAfter})`,
  );
  assert.equal(s.handovers, 2);

  // The sound card: the quiet the page lived through, not the 2 s the server was frozen.
  const { rate, startMs } = recording;
  const whole = part(recording);
  const holes = holesIn(whole);
  const longest = Math.max(0, ...holes.map((h) => h.length * BLOCK_MS));
  assert.ok(longest <= row.durationMs + 300, `a ${longest} ms hole for ${Math.round(row.durationMs)} ms without audio`);
  const why = glitches(before, s);
  assertNoClick(whole, why, { since: 'the freeze', sinceMs: startMs - stopAt });
  const at = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  assertTone(part(recording, { to: at(stopAt) }), 'before the freeze');
  assertTone(part(recording, { from: at(stopAt + 1000) }), 'after the move');

  // The thawed instance is healthy again, and the page stays where it went.
  await waitFor(async () => (await balancer.serverStates())[from] === 'UP', 3000, `${from} UP again`);
  assert.equal((await stats(page)).instance, to);
});

test('Export CSV downloads the interruption log with a header and one record per row', async () => {
  // The log can grow while the file is made (a busy machine's underrun is logged too), so the
  // file holds at least the rows logged before the click and at most those logged after it.
  const logged = await interruptions(page);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Export CSV' }).click(),
  ]);
  const rows = await interruptions(page);
  assert.match(download.suggestedFilename(), /^earshot-interruptions-\d{8}T\d{6}Z\.csv$/);
  const text = await fs.readFile(await download.path(), 'utf8');
  const lines = text.split('\r\n');
  assert.equal(lines.at(-1), '', 'ends with a line break');
  assert.equal(
    lines[0],
    'start_utc,end_utc,duration_ms,lost_ms,measured_by,cause,instance_before,instance_after,seq_before,seq_after,detail',
  );
  const records = lines.slice(1, -1).map((line) => line.split(','));
  const causes = rows.map((r) => r.cause);
  assert.ok(
    records.length >= logged.length && records.length <= rows.length,
    `${records.length} records for ${logged.length} rows before the click and ${rows.length} after (${causes.join(', ')})`,
  );
  for (const [i, record] of records.entries()) {
    const row = rows[i];
    assert.equal(record[0], new Date(row.start).toISOString());
    assert.equal(record[5], row.cause);
    if (record[1] === '') continue; // still going at the click: the rest was filled in later
    assert.equal(Number(record[3]), Math.round(row.lostMs * 10) / 10);
    const fields = [row.measuredBy, row.cause, row.instanceBefore, row.instanceAfter, row.seqBefore, row.seqAfter];
    assert.deepEqual(record.slice(4, 10), fields.map((v) => v ?? ''));
  }
  // The drain's and the freeze's rows, first and in that order, whatever a busy machine added.
  assert.deepEqual(records.slice(0, 2).map((r) => r[5]), ['instance change', 'stall'], `log: ${causes.join(', ')}`);
});

test('no console errors or warnings through the drain and the freeze', () => {
  assert.deepEqual(browser.problems(), []);
});
