// The connection's rules, with a scripted WebSocket and mocked timers: backoff from ~100 ms to a
// ~2 s cap with jitter, a fresh backoff once audio flows again, Stop means no reconnect, ping/pong
// clock offset from the fastest round trip, and a stream it cannot play is not retried.

import assert from 'node:assert/strict';
import { mock, test } from 'node:test';

import { BACKOFF, ClockOffset, StreamConnection, backoffDelay } from '../../www/connection.js';
import { ScriptedSocket } from './support/scripted-socket.js';

function connectionWithTimers() {
  ScriptedSocket.all = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const c = new StreamConnection('ws://test/ws', { WebSocketImpl: ScriptedSocket, random: () => 0.5 });
  const events = [];
  for (const type of ['hello', 'chunk', 'closed', 'retry', 'control']) {
    c.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  }
  return { c, events, sockets: ScriptedSocket.all };
}

test('backoff starts near 100 ms, doubles, and is capped near 2 s, with ±20% jitter', () => {
  const mid = Array.from({ length: 8 }, (_, i) => backoffDelay(i, () => 0.5));
  assert.deepEqual(mid, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
  assert.equal(backoffDelay(0, () => 0), 80);
  assert.equal(backoffDelay(0, () => 1), 120);
  assert.equal(backoffDelay(50, () => 1), BACKOFF.maxMs * 1.2);
});

test('a lost connection is retried with growing delays until the server answers', (t) => {
  const { c, events, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].accept();
  sockets[0].audio(7);
  sockets[0].drop();
  assert.equal(c.state, 'waiting');
  const delays = [];
  for (let i = 1; i <= 6; i++) {
    const retry = events.filter((e) => e.type === 'retry').at(-1);
    delays.push(retry.delayMs);
    mock.timers.tick(retry.delayMs);
    assert.equal(sockets.length, i + 1, `attempt ${i} opened a socket`);
    if (i < 6) sockets[i].drop(); // refused
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600, 2000]);
  sockets[6].accept('B');
  assert.equal(c.state, 'open');
  assert.equal(events.filter((e) => e.type === 'hello').at(-1).hello.instance, 'B');
});

test('once audio flows again the next outage starts from the shortest delay', (t) => {
  const { c, events, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].accept();
  sockets[0].drop();
  mock.timers.tick(100);
  sockets[1].drop();
  mock.timers.tick(200);
  sockets[2].accept();
  sockets[2].audio(8);
  sockets[2].drop();
  assert.equal(events.filter((e) => e.type === 'retry').at(-1).delayMs, 100);
});

test('Stop closes the socket and nothing reconnects afterwards', (t) => {
  const { c, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].accept();
  c.stop();
  assert.deepEqual(sockets[0].closedByPage, { code: 1000, reason: 'stopped by user' });
  sockets[0].drop(1000); // the close handshake finishing must not count as a loss
  mock.timers.tick(60_000);
  assert.equal(sockets.length, 1);
  assert.equal(c.state, 'stopped');
});

test('Stop while waiting to retry cancels the retry', (t) => {
  const { c, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].drop();
  c.stop();
  mock.timers.tick(60_000);
  assert.equal(sockets.length, 1);
});

test('Stop while still connecting closes the socket as soon as it opens, without a browser error', (t) => {
  const { c, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  c.stop();
  assert.equal(sockets[0].closedByPage, null, 'not closed while connecting');
  sockets[0].readyState = 1;
  sockets[0].onopen();
  assert.deepEqual(sockets[0].closedByPage, { code: 1000, reason: 'stopped by user' });
  mock.timers.tick(60_000);
  assert.equal(sockets.length, 1);
});

test('pings go out at once and every 2 s, and pongs set the clock offset', (t) => {
  const { c, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].accept();
  mock.timers.tick(0);
  assert.equal(sockets[0].sent.length, 1);
  assert.deepEqual(Object.keys(sockets[0].sent[0]), ['type', 'id']);
  mock.timers.tick(4000);
  assert.ok(sockets[0].sent.length >= 5, `${sockets[0].sent.length} pings`);
  const { id } = sockets[0].sent.at(-1);
  sockets[0].onmessage({ data: JSON.stringify({ type: 'pong', id, server_time_ms: Date.now() + 1000 }) });
  assert.ok(Math.abs(c.clock.offsetMs - 1000) < 50, `offset ${c.clock.offsetMs}`);
});

test('the clock offset comes from the fastest round trip', () => {
  const clock = new ClockOffset();
  clock.add(0, 100, 1050); // rtt 100: offset 1000
  clock.add(200, 204, 1202); // rtt 4: offset 1000
  clock.add(300, 380, 1400); // rtt 80: offset 1060, less trustworthy
  assert.equal(clock.rttMs, 4);
  assert.equal(clock.offsetMs, 1000);
});

test('a stream the page cannot play is reported once and not retried', (t) => {
  const { c, events, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].readyState = 1;
  sockets[0].onmessage({ data: JSON.stringify({ type: 'hello', version: 1, codec: 'opus', sample_rate: 48000, channels: 2, chunk_frames: 960 }) });
  mock.timers.tick(60_000);
  assert.equal(sockets.length, 1);
  assert.equal(c.state, 'stopped');
  const closed = events.find((e) => e.type === 'closed');
  assert.equal(closed.fatal, true);
  assert.match(closed.reason, /codec opus/);
});

test('a server that never says hello is given up on after 5 s and retried', (t) => {
  const { sockets, c } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  mock.timers.tick(4999);
  assert.equal(sockets.length, 1);
  mock.timers.tick(1);
  mock.timers.tick(100);
  assert.equal(sockets.length, 2);
  assert.ok(sockets[0].closedByPage);
});

test('control messages of unknown types are passed on, never fatal', (t) => {
  const { c, events, sockets } = connectionWithTimers();
  t.after(() => mock.timers.reset());
  c.start();
  sockets[0].accept();
  sockets[0].onmessage({ data: '{"type":"goaway","future":true}' });
  sockets[0].onmessage({ data: 'not json' });
  assert.equal(c.state, 'open');
  assert.equal(events.filter((e) => e.type === 'control').length, 1);
});
