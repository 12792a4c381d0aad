// The continuity monitor's rules for the interruption log, fed synthetic timelines: what each
// kind of loss is called, how long it was, how much audio it cost, and which instances it joined.

import assert from 'node:assert/strict';
import test from 'node:test';

import { CAUSE, ContinuityMonitor, LatencyTracker } from '../../www/monitor.js';

const CHUNK_MS = 20;
const hello = (instance, seq, extra = {}) => ({
  type: 'hello',
  version: 1,
  codec: 'pcm_s16le',
  sample_rate: 44100,
  channels: 2,
  chunk_frames: 882,
  instance,
  seq: BigInt(seq),
  server_time_ms: 0,
  ...extra,
});

/** Feeds chunks `from`..`to` (inclusive) of a stream that produced chunk 0 at `originMs`, each
 * arriving 5 ms after production; returns what the monitor said about the last one. */
function feed(monitor, from, to, originMs = 0) {
  let verdict;
  for (let seq = from; seq <= to; seq++) {
    const producedMs = originMs + seq * CHUNK_MS;
    verdict = monitor.chunk(BigInt(seq), BigInt(producedMs * 1000), producedMs + 5);
  }
  return verdict;
}

test('a steady stream logs nothing and counts its chunks', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 99);
  assert.equal(m.rows.length, 0);
  assert.equal(m.counters.chunks, 100);
  assert.equal(m.totalLostMs, 0);
});

test('a sequence gap inside a connection is logged with the audio it represents', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  const verdict = feed(m, 14, 20); // 11, 12, 13 never came
  assert.equal(verdict.play, true);
  assert.equal(m.rows.length, 1);
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.SEQUENCE_GAP);
  assert.equal(row.lostMs, 60);
  assert.equal(row.durationMs, 60);
  assert.equal(m.counters.gaps, 1);
  assert.equal(m.counters.gapMs, 60);
  assert.equal(m.totalLostMs, 60);
});

test('a server skip is logged once, as a skip, not again as a gap', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  m.skipped(11n, 61n, 300);
  feed(m, 61, 70);
  assert.deepEqual(m.rows.map((r) => [r.cause, r.lostMs]), [[CAUSE.SERVER_SKIP, 1000]]);
  assert.equal(m.counters.skips, 1);
  assert.equal(m.counters.gaps, 0);
});

test('repeated chunks are dropped, not played twice', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  assert.equal(feed(m, 9, 10).play, false);
  assert.equal(m.counters.duplicates, 2);
  assert.equal(feed(m, 11, 11).play, true);
  assert.equal(m.rows.length, 0);
});

test('a killed and restarted server is a socket-closed row timed by the clock', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 249); // 5 s of audio
  m.disconnected(5000, 'connection lost (1006)');
  assert.equal(m.rows[0].ongoing, true);
  m.disconnected(5100, 'connection failed'); // retries that fail are the same outage
  m.disconnected(5400, 'connection failed');
  assert.equal(m.rows.length, 1);
  // The restarted server counts from 0 again, produced 1.5 s later.
  m.connected(hello('A', 0), 6600);
  const verdict = feed(m, 0, 0, 6500);
  assert.equal(verdict.play, true);
  assert.equal(verdict.discontinuity, true);
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.SOCKET_CLOSED);
  assert.equal(row.ongoing, false);
  assert.equal(row.durationMs, 6505 - 5000);
  assert.equal(row.lostMs, row.durationMs);
  assert.equal(row.measuredBy, 'clock');
  assert.equal(m.counters.reconnects, 1);
});

test('a reconnect to the same stream measures the loss by sequence numbers, burst overlap excluded', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.disconnected(2030, 'connection lost (1006)');
  // Back 500 ms later; the 200 ms burst starts at chunk 116, so 101..115 (300 ms) were lost.
  m.connected(hello('A', 116), 2530);
  const first = feed(m, 116, 116);
  assert.equal(first.discontinuity, true);
  feed(m, 117, 126);
  const [row] = m.rows;
  assert.equal(row.measuredBy, 'sequence');
  assert.equal(row.lostMs, 15 * CHUNK_MS);
  assert.equal(m.counters.gaps, 1);
});

test('a reconnect within the burst loses nothing: overlap is dropped and the row shows 0 ms lost', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.disconnected(2030, 'connection lost (1006)');
  m.connected(hello('A', 92), 2100);
  assert.equal(feed(m, 92, 100).play, false, 'already played');
  const next = feed(m, 101, 101);
  assert.deepEqual(next, { play: true, discontinuity: false });
  assert.equal(m.rows[0].lostMs, 0);
  assert.equal(m.totalLostMs, 0);
});

test('switching to another instance shows both instances on the row', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 50);
  m.disconnected(1030, 'connection lost (1006)');
  m.connected(hello('B', 0), 1800);
  feed(m, 0, 0, 1700);
  const [row] = m.rows;
  assert.equal(row.instanceBefore, 'A');
  assert.equal(row.instanceAfter, 'B');
  assert.equal(m.instance, 'B');
});

test('an instance change without any loss is still logged, with 0 ms', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  m.stopped(300);
  m.connected(hello('B', 0), 400);
  assert.deepEqual(
    m.rows.map((r) => [r.cause, r.instanceBefore, r.instanceAfter, r.lostMs]),
    [[CAUSE.INSTANCE_CHANGE, 'A', 'B', 0]],
  );
});

test('an underrun while connected is its own row; during an outage it is part of the outage', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 50);
  m.underrunStarted(1100);
  m.underrunEnded(1180, 75);
  assert.deepEqual(m.rows.map((r) => [r.cause, r.lostMs]), [[CAUSE.BUFFER_UNDERRUN, 75]]);
  m.disconnected(2000, 'connection lost (1006)');
  m.underrunStarted(2080);
  m.underrunEnded(3000, 900);
  assert.equal(m.rows.length, 2);
  assert.equal(m.rows[1].cause, CAUSE.SOCKET_CLOSED);
});

test('source down then back is one row measured by the chunks the source did not make', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  m.source('down', 'device unplugged', 220);
  m.underrunStarted(300);
  m.source('live', null, 1200);
  feed(m, 60, 61);
  assert.equal(m.rows.length, 1);
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.SOURCE_DOWN);
  assert.equal(row.lostMs, 49 * CHUNK_MS);
  assert.match(row.detail, /device unplugged/);
});

test('a source back without missing chunks closes its row with 0 ms lost', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  m.source('down', 'retrying', 215);
  m.source('live', null, 218);
  feed(m, 11, 12);
  assert.deepEqual(m.rows.map((r) => [r.cause, r.ongoing, r.lostMs]), [[CAUSE.SOURCE_DOWN, false, 0]]);
});

test('Stop ends an outage in progress and nothing after it counts as lost', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  m.disconnected(300, 'connection lost (1006)');
  m.stopped(800);
  assert.equal(m.rows[0].ongoing, false);
  assert.equal(m.rows[0].durationMs, 500);
  assert.match(m.rows[0].detail, /Stop/);
  m.connected(hello('A', 500), 5000);
  feed(m, 500, 510, 0);
  assert.equal(m.rows.length, 1, 'a fresh start after Stop is not a gap');
});

test('latency uses the clock offset, skips the burst, and jitter follows RFC 3550', () => {
  const t = new LatencyTracker();
  t.reset(10_000);
  t.add(9_000_000n, 10_001, 0); // burst: produced before hello
  assert.equal(t.latencyMs, null);
  // Server clock 250 ms ahead of the page: arrival at page time 9_765 is server time 10_015.
  for (let i = 0; i < 50; i++) t.add(BigInt((10_000 + 20 * i) * 1000), 9_765 + 20 * i, 250);
  assert.ok(Math.abs(t.latencyMs - 15) < 0.01, `latency ${t.latencyMs}`);
  assert.ok(t.jitterMs < 0.01);
  for (let i = 50; i < 150; i++) t.add(BigInt((10_000 + 20 * i) * 1000), 9_765 + 20 * i + (i % 2 ? 4 : 0), 250);
  assert.ok(t.jitterMs > 3 && t.jitterMs < 4.5, `jitter ${t.jitterMs}`);
});

test('a move on goaway that continues at the next chunk is an instance change with 0 ms lost', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.connected(hello('B', 92), 2030, null, { reason: 'goaway', from: 'A', overlap: 9 });
  const verdict = feed(m, 101, 101);
  assert.deepEqual(verdict, { play: true, discontinuity: false }, 'joined without a fade');
  feed(m, 102, 110);
  assert.equal(m.rows.length, 1);
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.INSTANCE_CHANGE);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], ['A', 'B']);
  assert.equal(row.lostMs, 0);
  assert.equal(row.durationMs, 0);
  assert.equal(row.measuredBy, 'sequence');
  assert.deepEqual([row.seqBefore, row.seqAfter], ['100', '101']);
  assert.match(row.detail, /server draining \(goaway\); spliced in at seq 101, 9 repeated chunks dropped/);
  assert.equal(m.counters.handovers, 1);
  assert.equal(m.counters.reconnects, 0);
  assert.equal(m.totalLostMs, 0);
});

test('a move that could not meet the old stream logs the chunks it skipped', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.connected(hello('B', 104), 2030, null, { reason: 'goaway', from: 'A', overlap: 0 });
  assert.equal(feed(m, 104, 104).discontinuity, true);
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.INSTANCE_CHANGE);
  assert.equal(row.lostMs, 3 * CHUNK_MS);
  assert.match(row.detail, /3 chunks missing at the splice/);
  assert.equal(m.counters.gaps, 1);
});

test('a move back to the same instance without loss is no interruption', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.connected(hello('A', 92), 2030, null, { reason: 'stall', from: 'A', overlap: 0 });
  feed(m, 92, 110);
  assert.equal(m.rows.length, 0);
});

test('a stall swallows the underrun it caused and is measured by sequence numbers after the move', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100); // the last chunk arrived at 2005
  m.underrunStarted(2090); // the 80 ms buffer ran dry
  m.stalled(2005, 2160, 155, 150);
  assert.equal(m.rows.length, 1);
  assert.equal(m.rows[0].cause, CAUSE.STALL);
  assert.equal(m.rows[0].start, 2005);
  assert.equal(m.rows[0].ongoing, true);
  m.underrunEnded(2300, 210); // the player's resumption does not end the stall
  assert.equal(m.rows[0].ongoing, true);
  // The new connection, to B, starts its 200 ms burst at chunk 105: 101..104 were never received.
  m.connected(hello('B', 105), 2180, null, { reason: 'stall', from: 'A', overlap: 0 });
  feed(m, 105, 115, 0);
  const [row] = m.rows;
  assert.equal(row.ongoing, false);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], ['A', 'B']);
  assert.equal(row.measuredBy, 'sequence');
  assert.equal(row.lostMs, 4 * CHUNK_MS);
  assert.deepEqual([row.seqBefore, row.seqAfter], ['100', '105']);
  assert.match(row.detail, /no audio for 155 ms \(threshold 150 ms\)/);
  assert.equal(m.counters.underrunsLogged, 0);
});

test('a stalled server that wakes up on its own ends the stall with what its clock skipped', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.stalled(2005, 2160, 155, 150);
  feed(m, 201, 205); // frozen for 2 s; it resumes at the chunk the clock says
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.STALL);
  assert.equal(row.lostMs, 100 * CHUNK_MS);
  assert.equal(row.measuredBy, 'sequence');
});

test('a server held up between producing a chunk and sending it is one stall row, with what it did not produce', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.stalled(2005, 2160, 155, 150);
  // It wakes 2 s later and sends the chunk it had produced (101, late, nothing missing yet),
  // then the chunk its clock says: 102..201 were never produced.
  m.chunk(101n, BigInt(2020 * 1000), 4030);
  m.chunk(202n, BigInt(4040 * 1000), 4045);
  feed(m, 203, 210);
  assert.equal(m.rows.length, 1, JSON.stringify(m.rows));
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.STALL);
  assert.equal(row.durationMs, 4030 - 2005);
  assert.equal(row.lostMs, 100 * CHUNK_MS);
  assert.equal(m.totalLostMs, 100 * CHUNK_MS);
  assert.deepEqual([row.seqBefore, row.seqAfter], ['100', '202']);
  assert.match(row.detail, /audio came again on the same connection; then 100 chunks missing$/);
});

test('the same, when the connection the stall opened is spliced in with the chunk the clock says', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.stalled(2005, 2160, 155, 150);
  m.chunk(101n, BigInt(2020 * 1000), 4030); // the old connection, late
  // The new connection (opened at the stall; the same instance) is spliced in: its burst cannot
  // reach back to 102 before the splice deadline, so it starts at the live edge.
  m.connected(hello('A', 202), 4040, null, { reason: 'stall', from: 'A', overlap: 0 });
  feed(m, 202, 210);
  assert.equal(m.rows.length, 1, JSON.stringify(m.rows));
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.STALL);
  assert.equal(row.lostMs, 100 * CHUNK_MS);
  assert.equal(m.counters.gaps, 1);
  assert.match(row.detail, /; then after a stall, 100 chunks missing at the splice$/);
});

test('a burst that repeats chunks is known by their stamps even when the capture clock moved away from the numbers', () => {
  // A capture device's chunks are stamped when they were captured, and a software device on a
  // busy machine delivers late now and then: from chunk 95 on, each is stamped 80 ms later than
  // its number says, more than the tolerance for telling a restarted stream.
  const m = new ContinuityMonitor();
  const producedUs = (seq) => BigInt((seq * CHUNK_MS + (seq >= 95 ? 80 : 0)) * 1000);
  m.connected(hello('A', 0), 0);
  for (let seq = 0; seq <= 100; seq++) m.chunk(BigInt(seq), producedUs(seq), seq * CHUNK_MS + 85);
  m.stalled(2085, 2240, 155, 150);
  // The producer is held up; the connection the stall opened gets the same instance's 200 ms
  // burst, 91..100, already played and stamped as before.
  m.connected(hello('A', 91), 2290, null, { reason: 'stall', from: 'A', overlap: 0 });
  for (let seq = 91; seq <= 100; seq++) {
    assert.equal(m.chunk(BigInt(seq), producedUs(seq), 2295).play, false, `chunk ${seq} again`);
  }
  assert.equal(m.rows.length, 1);
  assert.equal(m.rows[0].ongoing, true, 'the repeats do not end the stall');
  // The device overran meanwhile: the server numbers the next chunk by the time it lost.
  const verdict = m.chunk(201n, producedUs(201), 4100);
  assert.equal(verdict.play, true);
  assert.equal(m.rows.length, 1, JSON.stringify(m.rows));
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.STALL);
  assert.equal(row.measuredBy, 'sequence');
  assert.equal(row.lostMs, 100 * CHUNK_MS);
  assert.deepEqual([row.seqBefore, row.seqAfter], ['100', '201']);
  assert.equal(m.counters.duplicates, 10);
});

test('a chunk with a known number but another stamp is not taken for a repeat', () => {
  // A restarted server whose numbers run through the same values: its chunks are new audio.
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.disconnected(2030, 'connection lost (1006)');
  m.connected(hello('A', 95), 9000);
  const verdict = m.chunk(95n, BigInt(8900 * 1000), 9005);
  assert.equal(verdict.play, true);
  const [row] = m.rows;
  assert.equal(row.measuredBy, 'clock');
  assert.equal(m.counters.duplicates, 0);
});

test('a gap after the stall has played on is a row of its own', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.stalled(2005, 2160, 155, 150);
  feed(m, 101, 120); // late, not lost, and it plays on
  feed(m, 125, 130);
  assert.deepEqual(m.rows.map((r) => [r.cause, r.lostMs]), [[CAUSE.STALL, 0], [CAUSE.SEQUENCE_GAP, 4 * CHUNK_MS]]);
});

test('a stall whose move failed goes on as the outage until a reconnect brings audio', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 100);
  m.stalled(2005, 2160, 155, 150);
  m.disconnected(2200, 'stalled; new connection failed: no hello within 5 s');
  m.disconnected(2300, 'connection failed');
  assert.equal(m.rows.length, 1);
  m.connected(hello('B', 120), 2600, 2);
  feed(m, 120, 125, 0);
  const [row] = m.rows;
  assert.equal(row.cause, CAUSE.STALL);
  assert.equal(row.lostMs, 19 * CHUNK_MS);
  assert.match(row.detail, /then stalled; new connection failed/);
  assert.equal(m.counters.reconnects, 1);
});

test('no stall row while the source is down: that interruption already explains the quiet', () => {
  const m = new ContinuityMonitor();
  m.connected(hello('A', 0), 0);
  feed(m, 0, 10);
  m.source('down', 'device unplugged', 220);
  m.stalled(205, 400, 195, 150);
  assert.deepEqual(m.rows.map((r) => r.cause), [CAUSE.SOURCE_DOWN]);
});
