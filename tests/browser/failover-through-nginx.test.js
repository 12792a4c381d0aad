// Failover in real Chromium through Debian's nginx with deploy/nginx.conf in front of three
// earshot instances: the page, its upgrade and its Origin check through the shipped site, then
// the instance the page plays from is drained (the page moves before leaving it, with nothing to
// hear) and the instance it moved to is frozen for longer than nginx's 3 s read timeout (the page
// plays from a third one within a second, not after that timeout or the thaw). nginx has no
// health checks: it knows of neither failure, and the page's own moves are what recover.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { interruptions, launchBrowser, openPlaying, stats } from './support/browser.js';
import { drainWhilePlaying, freezeWhilePlaying, glitches, placed } from './support/failover.js';
import { startNginx } from './support/nginx.js';
import { createSink } from './support/pulse.js';
import { assertNoClick, assertTone, part } from './support/tone.js';

const GRACE_MS = 3000;
/** Longer than deploy/nginx.conf's proxy_read_timeout, so that an upgrade nginx sent to the
 * frozen instance would show as a wait of that length. */
const FREEZE_MS = 5000;
const NGINX_READ_TIMEOUT_MS = 3000;

let sink;
let proxy;
let browser;
let page;

before(async () => {
  sink = await createSink('earshot_nginx');
  proxy = await startNginx({ serverArgs: ['--drain-grace-ms', String(GRACE_MS)] });
  browser = await launchBrowser({ sink });
  page = await openPlaying(browser, proxy.url);
  await page.waitForTimeout(1000);
});

after(async () => {
  await browser?.close();
  await proxy?.stop();
  await sink?.remove();
});

test('a drained instance hands the page to another through nginx: instance change, 0 ms lost, nothing to hear', async (t) => {
  const { from, to, drainAt, recordedTo, before, after: s, recording } = await drainWhilePlaying({
    page,
    sink,
    servers: proxy.servers,
    wav: 'drain-through-nginx.wav',
  });

  const rows = await interruptions(page);
  assert.equal(rows.length, 1, `${placed(rows, { drain: drainAt, recordedTo })} (${glitches(before, s)})`);
  const [row] = rows;
  assert.equal(row.cause, 'instance change');
  assert.deepEqual([row.instanceBefore, row.instanceAfter], [from, to]);
  assert.equal(row.lostMs, 0);
  assert.equal(row.measuredBy, 'sequence');
  assert.equal(BigInt(row.seqAfter) - BigInt(row.seqBefore), 1n, `spliced at ${row.seqBefore} → ${row.seqAfter}`);
  assert.ok(row.start - drainAt < 1000, `moved ${Math.round(row.start - drainAt)} ms after the drain began`);
  t.diagnostic(`${from} → ${to} ${Math.round(row.start - drainAt)} ms after SIGUSR1: ${row.detail}`);
  assert.equal(s.reconnects, 0);
  assert.equal(s.gaps, 0);

  const why = glitches(before, s);
  const whole = part(recording);
  assertTone(whole, `across the drain (${why})`, { holes: false });
  assertNoClick(whole, why, { since: 'the drain', sinceMs: recording.startMs - drainAt });
  // The drained instance ends after its grace; the next test has the other two.
  assert.deepEqual(await proxy.servers[from].exited, { code: 0, signal: null });
});

test('a frozen instance behind nginx is left within a second, not after nginx\'s read timeout or the thaw', async (t) => {
  const { from, to, stopAt, thawAt, recordedTo, before, after: s, recording } = await freezeWhilePlaying({
    page,
    sink,
    servers: proxy.servers,
    freezeMs: FREEZE_MS,
    wav: 'stall-through-nginx.wav',
  });

  const rows = (await interruptions(page)).slice(1);
  assert.equal(rows.length, 1, `${placed(rows, { freeze: stopAt, thaw: thawAt, recordedTo })} (${glitches(before, s)})`);
  const [row] = rows;
  assert.equal(row.cause, 'stall');
  assert.equal(row.ongoing, false);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], [from, to]);
  assert.equal(row.measuredBy, 'sequence');
  // An upgrade sent to the frozen instance would have waited out the read timeout first.
  assert.ok(row.durationMs < 1000, `${Math.round(row.durationMs)} ms without new audio (nginx's read timeout is ${NGINX_READ_TIMEOUT_MS} ms, the freeze ${FREEZE_MS} ms)`);
  t.diagnostic(`${from} → ${to}: audio again after ${Math.round(row.durationMs)} ms, ${row.lostMs} ms lost: ${row.detail}`);

  const why = glitches(before, s);
  const { rate, startMs } = recording;
  const at = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  assertNoClick(part(recording), why, { since: 'the freeze', sinceMs: startMs - stopAt });
  assertTone(part(recording, { to: at(stopAt) }), 'before the freeze');
  assertTone(part(recording, { from: at(stopAt + 1000) }), `after the move (${why})`);
  // The thawed instance gets nothing back: the page stays where it went.
  assert.equal((await stats(page)).instance, to);
});

test('no console errors or warnings through the drain and the freeze behind nginx', () => {
  assert.deepEqual(browser.problems(), []);
});
