// What a listener lives through when the server's producer is held up while its connections stay
// up (a thread frozen on a busy machine, a capture device that overruns meanwhile): shared by
// held-up-producer.test.js and capture-overrun.test.js.

import assert from 'node:assert/strict';

import { interruptions, stats } from './browser.js';
import { freezeThread } from './cgroup.js';

const CHUNK_MS = 20;

/** Freezes the producer thread of `server` for `ms` while `page` plays, then lets the page
 * notice for 2 s. Returns the page's stats before, when it began (test clock) and how long the
 * thread was held. */
export async function holdUpProducer(page, server, ms) {
  const before = await stats(page);
  const since = Date.now();
  const { frozenAt, thawedAt } = await freezeThread(server.pid, 'producer', ms);
  await page.waitForTimeout(2000);
  return { before, since, heldMs: thawedAt - frozenAt };
}

/**
 * Asserts that the page logged the hold-up as one interruption: a stall on the same instance,
 * over, measured by sequence numbers (the chunks either side were stamped as far apart as their
 * numbers say, so the page could tell the stream went on), whose loss is what they skipped;
 * that the counters, the total and the log table agree with that one row; and that audio flows
 * again. `context` goes into the row's failure messages. Returns the row.
 */
export async function assertOneStallBySequence(page, { before, since }, context = '') {
  const all = await interruptions(page);
  const rows = all.filter((row) => row.start >= since - 100);
  assert.equal(rows.length, 1, JSON.stringify(all));
  const [row] = rows;
  const what = `the page's row: ${JSON.stringify(row)}${context ? `\n${context}` : ''}`;
  assert.equal(row.cause, 'stall', what);
  assert.equal(row.ongoing, false, what);
  assert.equal(row.instanceAfter, row.instanceBefore, what);
  assert.equal(row.measuredBy, 'sequence', what);
  assert.equal(row.lostMs, Number(BigInt(row.seqAfter) - BigInt(row.seqBefore) - 1n) * CHUNK_MS, what);

  const s = await stats(page);
  // Differences of running float sums (a CI run had 2040.0000000000002 for 2040): equal to well
  // under a microsecond.
  const sameMs = (a, b, label) => assert.ok(Math.abs(a - b) < 1e-6, `${label}: ${a} ms, the row ${b} ms`);
  sameMs(s.totalLostMs - before.totalLostMs, row.lostMs, 'lost since');
  assert.equal(s.gaps - before.gaps, 1);
  sameMs(s.gapMs - before.gapMs, row.lostMs, 'gap time since');
  const total = await page.locator('#lost-total').textContent();
  assert.match(total, new RegExp(`Audio lost: ${Math.round(s.totalLostMs)} ms in \\d+ interruptions?\\.`));
  assert.equal(await page.locator('#log tbody tr[data-cause="stall"]').count(), 1);

  assert.equal(s.state, 'playing');
  await page.waitForTimeout(500);
  assert.ok((await stats(page)).chunks >= s.chunks + 15, 'chunks arrive again after the hold-up');
  return row;
}
