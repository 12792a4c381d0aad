// A server killed and started again on the same address under a playing page, and Stop: what
// the page's interruption log must say after the restart (the checks the Chromium, Firefox and
// WebKit restart tests share), and the scenarios the Firefox and WebKit tests run alike.

import assert from 'node:assert/strict';

import { blockLevels } from './audio.js';
import { saveRecording } from './artifacts.js';
import { HELD_PRESS_MS } from './browser.js';
import { record, recordFor } from './pulse.js';
import { getJson, startServer } from './server.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Records `sink` while the page plays from `server`: 1.5 s, then the server killed (SIGKILL),
 * 1.5 s without it, the same server started again on its port, and 2.5 s after the page
 * `browser` drives joined it by itself. The recording is saved as `wav`. Returns the new server,
 * the recording, and the times the checks need (wall clock, ms).
 */
export async function killAndRestart({ server, browser, page, sink, wav }) {
  const since = Date.now();
  const recorder = record(sink);
  await sleep(1500);
  const killedAt = Date.now();
  await server.kill('SIGKILL');
  await sleep(1500);
  const upAt = Date.now();
  const restarted = await startServer({ source: 'tone:', instance: 'A', listen: `127.0.0.1:${server.port}` });
  await browser.waitForState(page, 'playing', 8000);
  const joinedAt = restarted.joinedAfter(upAt - 1000);
  assert.ok(joinedAt, 'the page connected to the restarted server by itself');
  await sleep(2500);
  const recording = await recorder.stop();
  await saveRecording(wav, recording);
  return { server: restarted, recording, since, killedAt, joinedAt };
}

/** Stop, held down as a person presses it (`HELD_PRESS_MS`): the page stops, `sink` records
 * silence, and the server sees its listener leave and no new connection. */
export async function assertStopStops({ server, browser, page, sink }) {
  const before = await getJson(server, '/api/status');
  assert.equal(before.listeners.current, 1);
  await page.click('#toggle', { delay: HELD_PRESS_MS });
  await browser.waitForState(page, 'stopped', 5000).catch(async (e) => {
    // Tells a click the page never saw from a Stop followed by a new Start (one more listener).
    const now = await getJson(server, '/api/status');
    throw new Error(`${e.message}; server: ${now.listeners.current} listener(s) now, ${now.listeners.total - before.listeners.total} joined since the click`, { cause: e });
  });
  await sleep(300);
  const r = await recordFor(sink, 2000);
  assert.ok(Math.max(...blockLevels(r.channels[0], r.rate)) < -80, 'silent after Stop');
  const status = await getJson(server, '/api/status');
  assert.equal(status.listeners.current, 0);
  assert.equal(status.listeners.total, before.listeners.total, 'no new connection after Stop');
}

/** Of the rows that began since `since` (the test's start: the log keeps what earlier tests
 * lived through, such as a player underrun on a busy machine), one row, `socket closed`, over,
 * on `instance` before and after, lasting the time the page was without a server (from the
 * kill until it joined the restarted one, ±250 ms). */
export function assertRestartRow(all, { since, instance, killedAt, joinedAt }) {
  const rows = all.filter((row) => row.start >= since);
  assert.equal(rows.length, 1, JSON.stringify(all));
  const [row] = rows;
  assert.equal(row.cause, 'socket closed');
  assert.equal(row.ongoing, false);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], [instance, instance]);
  const outageMs = joinedAt - killedAt;
  assert.ok(Math.abs(row.durationMs - outageMs) <= 250, `${row.durationMs} ms logged, ${outageMs} ms without a server`);
  return row;
}
