// earshot connection: the WebSocket to /ws, hello and chunk parsing, ping/pong clock offset,
// reconnect with capped exponential backoff, and moving to a new connection before leaving the
// old one (make before break) when the server says `goaway` or the old one stalls. Knows nothing
// of audio or the page: it emits events ('state', 'hello', 'chunk', 'control', 'moving',
// 'stall', 'closed', 'retry'), so the player, the continuity monitor and the UI listen
// independently, and a move shows up as one more 'hello' with a `handover` note.

import { chunkDurationMs, parseChunk, parseControl, seqAfter, unplayableReason } from './wire.js';

export const BACKOFF = Object.freeze({ initialMs: 100, maxMs: 2000, jitter: 0.2 });

/**
 * Delay before reconnect attempt `attempt` (0 for the first): 100 ms doubling up to 2 s, each
 * spread by ±20% so that many listeners dropped by one failed backend do not return in step.
 */
export function backoffDelay(attempt, random = Math.random, backoff = BACKOFF) {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (1 - backoff.jitter + 2 * backoff.jitter * random()));
}

/**
 * A connection that stays open but brings no audio for this long is stalled (a VM being live
 * migrated, a frozen process, a dead path that TCP will take minutes to give up on): five chunk
 * durations, and never less than 150 ms. The server sends a chunk every chunk duration, at most
 * three at once (60 ms) when it is very busy, so a healthy connection never goes this quiet.
 */
export const STALL = Object.freeze({ chunks: 5, minMs: 150 });

export function stallThresholdMs(hello) {
  return Math.max(STALL.minMs, STALL.chunks * chunkDurationMs(hello));
}

/**
 * Clock offset between this page and the server from ping/pong (PROTOCOL.md): offset ≈
 * server_time_ms − (t_send + rtt/2), taken from the recent ping with the smallest round trip,
 * whose midpoint guess is the tightest.
 */
export class ClockOffset {
  constructor(window = 16) {
    this.window = window;
    this.samples = [];
  }

  reset() {
    this.samples = [];
  }

  add(sentMs, receivedMs, serverTimeMs) {
    const rttMs = receivedMs - sentMs;
    if (!(rttMs >= 0) || !Number.isFinite(serverTimeMs)) return;
    this.samples.push({ rttMs, offsetMs: serverTimeMs - (sentMs + rttMs / 2) });
    if (this.samples.length > this.window) this.samples.shift();
  }

  best() {
    let best = null;
    for (const s of this.samples) if (!best || s.rttMs < best.rttMs) best = s;
    return best;
  }

  /** Server clock minus page clock in ms, or null before the first pong. */
  get offsetMs() {
    return this.best()?.offsetMs ?? null;
  }

  get rttMs() {
    return this.best()?.rttMs ?? null;
  }
}

/** Wall-clock ms with sub-ms resolution; timeOrigin + now() does not jump with NTP steps. */
export const nowMs = () => performance.timeOrigin + performance.now();

/** The stream's WebSocket URL for a page served at `location`. */
export function streamUrl(location) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

const PING_EARLY_MS = [0, 150, 400]; // a few quick pings, so latency is right within a second
const PING_INTERVAL_MS = 2000;
const CONNECT_TIMEOUT_MS = 5000; // a SYN to a vanished host can hang far longer than this
/** How often the stall watchdog looks, and how late a look may be before the page itself is
 * judged to have been busy (a long task, a suspended tab): audio that arrived meanwhile may
 * still be queued behind the look, so the quiet is counted again from there. */
const WATCH_EVERY_MS = 25;
const WATCH_LATE_MS = 100;
/**
 * How long a new connection may wait for the old one to reach the sequence number it can be
 * spliced at. Instances whose clocks agree meet at once (the new one's 200 ms burst reaches back
 * past what the old one delivered); one whose clock is ahead waits here while the old one plays
 * on, and after this the move happens anyway and the sequence numbers measure what it cost.
 */
const SPLICE_DEADLINE_MS = 1000;

/** One WebSocket to the stream, with its hello and what it received before it was played. */
class Link {
  constructor(ws) {
    this.ws = ws;
    this.hello = null;
    this.byeReason = null;
    this.held = []; // a successor's messages while the old connection still plays
    this.timers = new Timers();
  }

  /** Closes with 1000 and forgets the socket: nothing it does later reaches the page. */
  drop(reason) {
    this.timers.clear();
    detach(this.ws);
    closeQuietly(this.ws, reason);
  }

  /** Gives up on a socket that may still be connecting (a SYN to a vanished host). */
  abort() {
    this.timers.clear();
    detach(this.ws);
    this.ws?.close();
  }
}

export class StreamConnection extends EventTarget {
  constructor(url, { WebSocketImpl = globalThis.WebSocket, random = Math.random, now = nowMs } = {}) {
    super();
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.random = random;
    this.now = now;
    this.clock = new ClockOffset();
    this.state = 'idle'; // idle | connecting | open | waiting | stopped
    this.link = null; // the connection being played
    this.next = null; // the connection being moved to (make before break), until spliced in
    this.moving = null; // { reason, t, detail } while a move is under way
    this.stalled = false; // the played connection went quiet past the stall threshold
    this.sourceLive = true; // a source that is down sends no audio, and that is no stall
    this.lastSeq = null; // sequence number of the newest chunk passed on, for splicing
    this.watch = { lastAudioAt: 0, quietFrom: 0, lastLook: null, armed: false };
    this.attempt = 0;
    this.connections = 0;
    this.timers = new Timers(); // the played connection's pings and watchdog, or the retry wait
    this.pingId = 0;
    this.pending = new Map();
  }

  /** The played connection's hello, or null while there is none. */
  get hello() {
    return this.link?.hello ?? null;
  }

  start() {
    if (this.state === 'connecting' || this.state === 'open') return;
    this.attempt = 0;
    this.connect();
  }

  /** Stop means stop: the sockets are closed and no reconnect is scheduled. */
  stop() {
    this.timers.clear();
    this.link?.drop('stopped by user');
    this.next?.drop('stopped by user');
    this.link = this.next = this.moving = null;
    this.stalled = false;
    this.setState('stopped');
  }

  connect() {
    this.timers.clear();
    this.pending.clear();
    this.clock.reset();
    this.sourceLive = true;
    this.setState('connecting');
    this.link = this.open();
  }

  /** Opens a socket; a failure to even construct one arrives as a close on the next turn. */
  open() {
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      const link = new Link(null);
      link.timers.later(0, () => this.closed(link, { code: 0, reason: String(err?.message ?? err) }));
      return link;
    }
    ws.binaryType = 'arraybuffer';
    const link = new Link(ws);
    link.timers.later(CONNECT_TIMEOUT_MS, () => {
      if (link.hello) return;
      link.abort();
      this.closed(link, { code: 0, reason: 'no hello within 5 s' });
    });
    ws.onmessage = (event) => this.received(link, event.data, this.now());
    ws.onclose = (event) => this.closed(link, { code: event.code, reason: event.reason });
    // A failed connect fires 'error' then 'close'; the close carries everything we need.
    ws.onerror = () => {};
    return link;
  }

  received(link, data, t) {
    if (typeof data !== 'string') {
      if (link === this.link) this.onAudio(link, data, t);
      else if (link === this.next) this.hold(link, data, t);
      return;
    }
    const message = parseControl(data);
    if (!message || typeof message.type !== 'string') return;
    if (message.type === 'bye') link.byeReason = message.reason ?? null;
    if (link === this.link) this.onControl(link, message, t);
    else if (link === this.next) {
      if (message.type === 'hello') this.onSuccessorHello(link, message, t);
      else if (message.type !== 'pong') link.held.push({ message, t });
    }
  }

  onControl(link, message, t) {
    if (message.type === 'hello') {
      const problem = unplayableReason(message);
      if (problem) {
        this.fail(problem);
        return;
      }
      link.hello = message;
      link.timers.clear();
      this.opened(link, t, null);
      return;
    }
    if (message.type === 'pong') {
      const sentMs = this.pending.get(JSON.stringify(message.id));
      if (sentMs !== undefined) {
        this.pending.delete(JSON.stringify(message.id));
        this.clock.add(sentMs, t, message.server_time_ms);
      }
      return;
    }
    if (message.type === 'source') this.sourceLive = message.state === 'live';
    // skipped, source, goaway, bye, and anything newer: listeners pick what they know.
    this.dispatchEvent(new CustomEvent('control', { detail: { message, t } }));
    if (message.type === 'goaway') this.move('goaway', t, message.reason ?? null);
  }

  /** `link` is now the one played: its hello goes out, with `handover` when it replaced one. */
  opened(link, t, handover) {
    this.connections += 1;
    // A reconnect starts a fresh count; after a move the new stream continues the old one.
    if (!handover) this.lastSeq = null;
    this.timers.clear();
    this.pending.clear();
    this.clock.reset();
    this.sourceLive = true;
    this.watch = { lastAudioAt: t, quietFrom: t, lastLook: null, armed: false };
    this.setState('open');
    this.dispatchEvent(new CustomEvent('hello', { detail: { hello: link.hello, t, handover } }));
    PING_EARLY_MS.forEach((ms) => this.timers.later(ms, () => this.ping()));
    this.timers.every(PING_INTERVAL_MS, () => this.ping());
    this.timers.every(WATCH_EVERY_MS, () => this.look(this.now()));
  }

  onAudio(link, buffer, t) {
    if (!link.hello) return; // audio before hello breaks the protocol; it cannot be placed
    const chunk = parseChunk(buffer, link.hello.channels);
    if (!chunk) return;
    // Audio flowing again is what makes a reconnect successful, so the backoff restarts.
    this.attempt = 0;
    if (this.lastSeq === null || seqAfter(this.lastSeq, chunk.seq) > 0n) {
      // Only new audio is progress: a burst repeating what was played is no sign of life.
      this.lastSeq = chunk.seq;
      this.watch.lastAudioAt = t;
      this.watch.armed = true;
      this.stalled = false;
    }
    this.dispatchEvent(new CustomEvent('chunk', { detail: { ...chunk, buffer, t } }));
    if (this.next?.hello) this.trySplice(t);
  }

  /**
   * The stall watchdog. It fires once per quiet spell (audio re-arms it), so a source that
   * simply has nothing to send makes at most one needless move, never a loop of them.
   */
  look(now) {
    const w = this.watch;
    if (w.lastLook !== null && now - w.lastLook > WATCH_LATE_MS) w.quietFrom = now;
    w.lastLook = now;
    if (!w.armed || this.stalled || !this.sourceLive || !this.link?.hello) return;
    const thresholdMs = stallThresholdMs(this.link.hello);
    if (now - Math.max(w.lastAudioAt, w.quietFrom) < thresholdMs) return;
    w.armed = false;
    this.stalled = true;
    const detail = { since: w.lastAudioAt, t: now, silentMs: now - w.lastAudioAt, thresholdMs };
    this.dispatchEvent(new CustomEvent('stall', { detail }));
    if (this.next?.hello) this.trySplice(now);
    else this.move('stall', now, null);
  }

  /** Make before break: open a new connection (through a balancer, another instance) and keep
   * playing the old one until the new one can be spliced in. */
  move(reason, t, detail) {
    if (this.next || !this.link?.hello) return;
    this.moving = { reason, t, detail };
    this.next = this.open();
    this.dispatchEvent(new CustomEvent('moving', { detail: { reason, t, detail } }));
  }

  /** Keeps a successor's chunk until the splice; its sequence number decides where that is. */
  hold(link, buffer, t) {
    const chunk = link.hello && parseChunk(buffer, link.hello.channels);
    if (!chunk) return;
    link.held.push({ buffer, seq: chunk.seq, t });
    this.trySplice(t);
  }

  onSuccessorHello(link, message, t) {
    const problem = unplayableReason(message);
    if (problem) {
      link.drop('unsupported stream');
      this.closed(link, { code: 0, reason: problem });
      return;
    }
    link.hello = message;
    link.timers.clear();
    if (!sameFormat(this.link?.hello, message)) {
      // Audio in another format cannot continue the old stream sample for sample.
      this.splice(link, t);
      return;
    }
    link.timers.later(SPLICE_DEADLINE_MS, () => this.next === link && this.splice(link, this.now()));
    this.trySplice(t);
  }

  /**
   * Splices the new connection in once its chunks meet the old stream: they reach back to the
   * chunk after the last one played, and forward at least to that last one, so the next chunk
   * either holds continues it. At once when the old connection is stalled or there is nothing
   * to continue from.
   */
  trySplice(t) {
    const next = this.next;
    if (!next?.hello) return;
    if (this.stalled || this.lastSeq === null) {
      this.splice(next, t);
      return;
    }
    const chunks = next.held.filter((item) => item.buffer);
    if (chunks.length === 0) return;
    const reachesBack = seqAfter(this.lastSeq, chunks[0].seq) <= 1n;
    const reachesNow = seqAfter(this.lastSeq, chunks.at(-1).seq) >= 0n;
    if (reachesBack && reachesNow) this.splice(next, t);
  }

  /** The new connection becomes the played one; the old one is closed only now. */
  splice(link, t) {
    const old = this.link;
    const handover = {
      reason: this.moving?.reason ?? 'moved',
      detail: this.moving?.detail ?? null,
      from: old?.hello?.instance ?? null,
      stalled: this.stalled,
      overlap: 0, // chunks the new connection repeated, dropped here
    };
    const held = link.held;
    link.held = [];
    if (this.lastSeq !== null) {
      handover.overlap = held.filter((item) => item.buffer && seqAfter(this.lastSeq, item.seq) <= 0n).length;
    }
    this.link = link;
    this.next = null;
    this.moving = null;
    this.stalled = false;
    link.timers.clear();
    old?.drop('moved to another connection');
    this.opened(link, t, handover);
    for (const item of held) {
      if (this.link !== link) return; // the replay itself ended this connection (a bye)
      if (!item.buffer) this.onControl(link, item.message, item.t);
      else if (this.lastSeq === null || seqAfter(this.lastSeq, item.seq) > 0n) this.onAudio(link, item.buffer, item.t);
    }
  }

  ping() {
    const ws = this.link?.ws;
    if (!ws || ws.readyState !== 1) return;
    const id = ++this.pingId;
    this.pending.set(JSON.stringify(id), this.now());
    if (this.pending.size > 32) this.pending.delete(this.pending.keys().next().value);
    ws.send(JSON.stringify({ type: 'ping', id }));
  }

  /** A stream this page cannot play: say why and do not hammer the server with retries. */
  fail(reason) {
    this.timers.clear();
    this.link?.drop('unsupported stream');
    this.next?.drop('unsupported stream');
    this.link = this.next = this.moving = null;
    this.setState('stopped');
    this.dispatchEvent(new CustomEvent('closed', { detail: { code: 0, reason, fatal: true, t: this.now() } }));
  }

  /** A socket closed, or never opened, or never said hello. */
  closed(link, { code, reason }) {
    link.timers.clear();
    if (link === this.next) this.successorFailed(link, reason);
    else if (link === this.link) this.playedLost(link, { code, reason, byeReason: link.byeReason });
  }

  /**
   * The new connection failed. After `goaway` the old one plays on until the server closes it,
   * then the usual reconnect follows; a stalled old one is given up on now.
   */
  successorFailed(link, reason) {
    this.next = null;
    const moving = this.moving;
    this.moving = null;
    this.dispatchEvent(new CustomEvent('moving', { detail: { reason: null, failed: reason, t: this.now() } }));
    if (this.stalled && this.link) {
      const old = this.link;
      old.drop('stalled');
      this.playedLost(old, { code: 0, reason: `stalled; new connection failed: ${reason}`, byeReason: null, stalled: true });
    } else if (moving?.reason === 'stall') {
      this.watch.armed = true; // the old one recovered meanwhile; watch it again
    }
  }

  /** The played connection ended: a waiting successor takes over, or the reconnects begin. */
  playedLost(link, { code, reason, byeReason, stalled = false }) {
    const wasOpen = link.hello !== null;
    const t = this.now();
    this.timers.clear();
    const next = this.next;
    if (next?.hello) {
      // The new connection is ready: it continues from where the old one stopped.
      this.splice(next, t);
      return;
    }
    this.link = null;
    this.stalled = false;
    this.dispatchEvent(new CustomEvent('closed', { detail: { code, reason, byeReason, wasOpen, stalled, t } }));
    if (next) {
      // Still connecting: it is the first reconnect attempt already under way.
      this.link = next;
      this.next = null;
      this.moving = null;
      this.setState('connecting');
      return;
    }
    this.moving = null;
    const delayMs = backoffDelay(this.attempt, this.random);
    this.attempt += 1;
    this.setState('waiting');
    this.dispatchEvent(new CustomEvent('retry', { detail: { delayMs, attempt: this.attempt, at: t + delayMs } }));
    this.timers.later(delayMs, () => this.connect());
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
  }
}

/** Whether two hellos describe audio that can be joined sample for sample. */
function sameFormat(a, b) {
  return (
    !!a &&
    a.codec === b.codec &&
    a.sample_rate === b.sample_rate &&
    a.channels === b.channels &&
    a.chunk_frames === b.chunk_frames
  );
}

/** setTimeout and setInterval ids kept together, so one call cancels them all. */
class Timers {
  constructor() {
    this.timeouts = new Set();
    this.intervals = new Set();
  }

  later(ms, fn) {
    const id = setTimeout(() => {
      this.timeouts.delete(id);
      fn();
    }, ms);
    this.timeouts.add(id);
  }

  every(ms, fn) {
    this.intervals.add(setInterval(fn, ms));
  }

  clear() {
    this.timeouts.forEach(clearTimeout);
    this.intervals.forEach(clearInterval);
    this.timeouts.clear();
    this.intervals.clear();
  }
}

/** Closes with 1000. A socket still connecting is closed once it opens: closing it earlier
 * makes browsers log an error for what is a normal decision of the page. */
function closeQuietly(ws, reason) {
  if (!ws) return;
  if (ws.readyState === 0) ws.onopen = () => ws.close(1000, reason);
  else if (ws.readyState === 1) ws.close(1000, reason);
}

function detach(ws) {
  if (!ws) return;
  ws.onmessage = ws.onclose = null;
  // A socket closed during its handshake still reports an error; it is expected, not news.
  ws.onerror = () => {};
}
