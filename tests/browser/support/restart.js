// What the page's interruption log must say after its server was killed and started again on
// the same address: the checks the Chromium and the Firefox restart tests share.

import assert from 'node:assert/strict';

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
