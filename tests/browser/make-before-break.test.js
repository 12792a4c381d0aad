// The connection's moves, with a scripted WebSocket and mocked clocks: on `goaway` a new
// connection opens first and is spliced in at the next sequence number before the old one is
// closed; a connection that goes quiet is noticed within the stall threshold (and not during a
// server's bunched sends, a source outage or a busy page) and left the same way; and when the new
// connection fails, the old one plays on until it closes, then the usual reconnect follows.

import assert from 'node:assert/strict';
import { mock, test } from 'node:test';

import { STALL, StreamConnection, stallThresholdMs } from '../../www/connection.js';
import { ScriptedSocket } from './support/scripted-socket.js';

const CHUNK_MS = 20;
const GOAWAY = { type: 'goaway', reason: 'draining', grace_ms: 10000 };

function setup(t) {
  ScriptedSocket.all = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 });
  t.after(() => mock.timers.reset());
  const c = new StreamConnection('ws://test/ws', { WebSocketImpl: ScriptedSocket, random: () => 0.5, now: () => Date.now() });
  const events = [];
  for (const type of ['hello', 'chunk', 'closed', 'retry', 'control', 'moving', 'stall']) {
    c.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  }
  const played = () => events.filter((e) => e.type === 'chunk').map((e) => Number(e.seq));
  return { c, events, sockets: ScriptedSocket.all, played };
}

/** Advances the clock in small steps, as the browser would run the timers. */
function advance(ms, step = 5) {
  for (let done = 0; done < ms; done += step) mock.timers.tick(Math.min(step, ms - done));
}

/** Live chunks from `sockets` (all of them, as identical aligned instances send them), one
 * every 20 ms: chunk `seq` goes to every socket given, then the clock moves on. */
function live(sockets, from, to) {
  for (let seq = from; seq <= to; seq++) {
    for (const s of sockets) if (s.readyState === 1 && s.onmessage) s.audio(seq);
    advance(CHUNK_MS);
  }
}

/** A connection playing instance A up to chunk 110. */
function playing(t) {
  const env = setup(t);
  env.c.start();
  env.sockets[0].accept('A');
  for (let seq = 101; seq <= 110; seq++) env.sockets[0].audio(seq); // the burst
  live([env.sockets[0]], 111, 120);
  return env;
}

test('on goaway a second connection opens at once, and the old one plays on meanwhile', (t) => {
  const { events, sockets, played } = playing(t);
  sockets[0].control(GOAWAY);
  assert.equal(sockets.length, 2, 'a new connection is opened before anything is closed');
  assert.equal(sockets[0].closedByPage, null);
  assert.equal(events.at(-1).type, 'moving');
  assert.equal(events.at(-1).reason, 'goaway');
  live([sockets[0]], 121, 125);
  assert.deepEqual(played().slice(-5), [121, 122, 123, 124, 125]);
});

test('the new stream is spliced in at the next sequence number, repeats dropped, and only then is the old one closed', (t) => {
  const { events, sockets, played } = playing(t);
  sockets[0].control(GOAWAY);
  live([sockets[0]], 121, 123);
  sockets[1].accept('B');
  // B's burst reaches back 200 ms, past what A already delivered; until it reaches A's newest
  // chunk, A goes on.
  for (let seq = 114; seq <= 122; seq++) sockets[1].audio(seq);
  assert.equal(sockets[0].closedByPage, null, 'the old connection is still open until the splice');
  sockets[1].audio(123);
  assert.deepEqual(sockets[0].closedByPage, { code: 1000, reason: 'moved to another connection' });
  live([sockets[0], sockets[1]], 124, 130);
  const seqs = played();
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => 101 + i), 'every chunk once, in order');
  assert.equal(seqs.at(-1), 130);
  const hello = events.filter((e) => e.type === 'hello').at(-1);
  assert.equal(hello.hello.instance, 'B');
  assert.deepEqual({ ...hello.handover }, { reason: 'goaway', detail: 'draining', from: 'A', stalled: false, overlap: 10 });
});

test('a new instance whose stream is ahead waits for the old one to catch up, and nothing is skipped', (t) => {
  const { sockets, played } = playing(t);
  sockets[0].control(GOAWAY);
  sockets[1].accept('B');
  for (let seq = 126; seq <= 128; seq++) sockets[1].audio(seq); // B's clock 100 ms ahead
  live([sockets[0]], 121, 125);
  assert.equal(sockets[0].closedByPage?.reason, 'moved to another connection');
  const seqs = played();
  assert.deepEqual(seqs.slice(-8), [121, 122, 123, 124, 125, 126, 127, 128]);
});

test('when the new connection is refused, the old one plays until the server closes it, then reconnects as usual', (t) => {
  const { events, sockets, played } = playing(t);
  sockets[0].control(GOAWAY);
  sockets[1].drop(1006); // e.g. a lone server answering 503 while it drains
  assert.equal(events.at(-1).type, 'moving');
  assert.equal(events.at(-1).failed !== undefined, true);
  live([sockets[0]], 121, 140);
  assert.equal(played().at(-1), 140);
  assert.equal(sockets.length, 2, 'no second try while the old connection plays');
  sockets[0].control({ type: 'bye', reason: 'drained' });
  sockets[0].drop(1001);
  const closed = events.find((e) => e.type === 'closed');
  assert.equal(closed.byeReason, 'drained');
  const retry = events.find((e) => e.type === 'retry');
  assert.equal(retry.delayMs, 100);
  advance(100);
  assert.equal(sockets.length, 3);
});

test('when the old connection closes while the new one is still connecting, that one is the reconnect', (t) => {
  const { c, events, sockets } = playing(t);
  sockets[0].control(GOAWAY);
  sockets[0].drop(1001);
  assert.equal(events.filter((e) => e.type === 'closed').length, 1);
  assert.equal(events.filter((e) => e.type === 'retry').length, 0);
  assert.equal(c.state, 'connecting');
  sockets[1].accept('B');
  assert.equal(c.state, 'open');
  assert.equal(events.filter((e) => e.type === 'hello').at(-1).handover, null, 'an ordinary reconnect');
  assert.equal(sockets.length, 2);
});

test('when the old connection closes after the new one said hello, the new one continues at once', (t) => {
  const { events, sockets, played } = playing(t);
  sockets[0].control(GOAWAY);
  sockets[1].accept('B');
  sockets[1].audio(122); // B is ahead; A would have reached it in 20 ms
  sockets[0].drop(1001);
  assert.equal(events.filter((e) => e.type === 'closed').length, 0, 'not an outage');
  assert.equal(events.filter((e) => e.type === 'hello').at(-1).handover.from, 'A');
  assert.equal(played().at(-1), 122);
});

test('a connection that goes quiet is found stalled within the threshold and left for a new one', (t) => {
  const { c, events, sockets, played } = playing(t);
  const lastAudioAt = Date.now() - CHUNK_MS;
  const threshold = stallThresholdMs(c.hello);
  assert.equal(threshold, Math.max(STALL.minMs, STALL.chunks * CHUNK_MS));
  advance(threshold - 30);
  assert.equal(events.filter((e) => e.type === 'stall').length, 0);
  advance(60);
  const stall = events.find((e) => e.type === 'stall');
  assert.ok(stall, 'stall noticed');
  assert.equal(stall.since, lastAudioAt);
  assert.ok(stall.silentMs >= threshold && stall.silentMs <= threshold + 30, `noticed after ${stall.silentMs} ms`);
  assert.equal(sockets.length, 2, 'a new connection opened');
  assert.equal(sockets[0].closedByPage, null, 'the old one is kept until the new one is ready');
  sockets[1].accept('B');
  assert.ok(sockets[0].closedByPage, 'a stalled connection is left as soon as the new one says hello');
  const hello = events.filter((e) => e.type === 'hello').at(-1);
  assert.equal(hello.handover.reason, 'stall');
  assert.equal(hello.handover.stalled, true);
  for (let seq = 119; seq <= 130; seq++) sockets[1].audio(seq);
  // Repeats of what A delivered are passed on for the monitor to drop; what is new follows.
  assert.equal(played().at(-1), 130);
});

test('the stalled connection delivering again before the new one is ready loses nothing', (t) => {
  const { events, sockets, played } = playing(t);
  advance(200);
  assert.equal(events.filter((e) => e.type === 'stall').length, 1);
  live([sockets[0]], 121, 125); // the late audio, then it flows again
  sockets[1].accept('B');
  for (let seq = 117; seq <= 126; seq++) sockets[1].audio(seq);
  assert.ok(sockets[0].closedByPage, 'spliced once the new stream met the old');
  const seqs = played();
  assert.deepEqual(seqs.slice(-7), [120, 121, 122, 123, 124, 125, 126]);
});

test('a stall whose new connection fails ends the old one and reconnects', (t) => {
  const { events, sockets } = playing(t);
  advance(200);
  sockets[1].drop(1006);
  assert.ok(sockets[0].closedByPage, 'the stalled connection is given up');
  const closed = events.find((e) => e.type === 'closed');
  assert.equal(closed.stalled, true);
  assert.match(closed.reason, /stalled/);
  assert.ok(events.find((e) => e.type === 'retry'));
});

test('no stall during normal delivery: three chunks at once every 60 ms, with 40 ms of jitter', (t) => {
  const { events, sockets } = playing(t);
  let seq = 121;
  for (let i = 0; i < 150; i++) {
    advance(i % 2 ? 20 : 100); // 60 ms apart on average, one bunch 40 ms late, the next early
    for (let k = 0; k < 3; k++) sockets[0].audio(seq++);
  }
  assert.equal(events.filter((e) => e.type === 'stall').length, 0);
  assert.equal(sockets.length, 1);
});

test('no stall while the source is down: the server said why no audio comes', (t) => {
  const { events, sockets } = playing(t);
  sockets[0].control({ type: 'source', state: 'down', reason: 'device unplugged' });
  advance(3000);
  assert.equal(events.filter((e) => e.type === 'stall').length, 0);
  sockets[0].control({ type: 'source', state: 'live' });
  live([sockets[0]], 270, 275);
  assert.equal(events.filter((e) => e.type === 'stall').length, 0);
});

test('a page too busy to look is not a stall: the quiet is counted from when it could look again', (t) => {
  const { c, events, sockets } = playing(t);
  const now = Date.now();
  c.watch.lastLook = now;
  c.look(now + 400); // the page's own thread was blocked for 400 ms; audio may be queued
  assert.equal(events.filter((e) => e.type === 'stall').length, 0);
  sockets[0].audio(121);
  c.look(now + 425);
  assert.equal(events.filter((e) => e.type === 'stall').length, 0);
});

test('one move per quiet spell: a server with nothing new to send is not left again and again', (t) => {
  const { events, sockets } = playing(t);
  advance(200);
  sockets[1].accept('A');
  for (let seq = 111; seq <= 120; seq++) sockets[1].audio(seq); // only what was already played
  advance(3000);
  assert.equal(events.filter((e) => e.type === 'stall').length, 1);
  assert.equal(sockets.length, 2);
  live([sockets[1]], 121, 125);
  advance(300);
  assert.equal(events.filter((e) => e.type === 'stall').length, 2, 'audio re-arms the watchdog');
});

test('Stop during a move closes both connections and nothing reconnects', (t) => {
  const { c, sockets } = playing(t);
  sockets[0].control(GOAWAY);
  c.stop();
  assert.ok(sockets[0].closedByPage);
  sockets[1].readyState = 1;
  sockets[1].onopen?.();
  assert.ok(sockets[1].closedByPage, 'the new one is closed as soon as it opens');
  advance(5000, 50);
  assert.equal(sockets.length, 2);
});
