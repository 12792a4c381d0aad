// earshot connection: one WebSocket to /ws at a time, hello and chunk parsing, ping/pong clock
// offset, and automatic reconnect with capped exponential backoff. Knows nothing of audio or the
// page: it emits events ('state', 'hello', 'chunk', 'control', 'closed', 'retry'), so the player,
// the continuity monitor and the UI listen independently, and a second connection (make before
// break on `goaway`) can be added here without touching them.

import { parseChunk, parseControl, unplayableReason } from './wire.js';

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

export class StreamConnection extends EventTarget {
  constructor(url, { WebSocketImpl = globalThis.WebSocket, random = Math.random } = {}) {
    super();
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.random = random;
    this.clock = new ClockOffset();
    this.state = 'idle'; // idle | connecting | open | waiting | stopped
    this.ws = null;
    this.hello = null;
    this.attempt = 0;
    this.connections = 0;
    this.timeouts = new Set();
    this.intervals = new Set();
    this.pingId = 0;
    this.pending = new Map();
  }

  start() {
    if (this.state === 'connecting' || this.state === 'open') return;
    this.attempt = 0;
    this.connect();
  }

  /** Stop means stop: the socket is closed and no reconnect is scheduled. */
  stop() {
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      closeQuietly(ws, 'stopped by user');
    }
    this.setState('stopped');
  }

  connect() {
    this.clearTimers();
    this.hello = null;
    this.pending.clear();
    this.clock.reset();
    this.setState('connecting');
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      this.lost({ code: 0, reason: String(err?.message ?? err), byeReason: null });
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let byeReason = null;
    this.later(CONNECT_TIMEOUT_MS, () => {
      if (this.ws === ws && !this.hello) {
        detach(ws);
        ws.close();
        this.lost({ code: 0, reason: 'no hello within 5 s', byeReason });
      }
    });
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      const arrivalMs = nowMs();
      if (typeof event.data === 'string') {
        const message = parseControl(event.data);
        if (message?.type === 'bye') byeReason = message.reason ?? null;
        this.onControl(message, arrivalMs);
      } else {
        this.onAudio(event.data, arrivalMs);
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.lost({ code: event.code, reason: event.reason, byeReason });
    };
    // A failed connect fires 'error' then 'close'; the close carries everything we need.
    ws.onerror = () => {};
  }

  onControl(message, arrivalMs) {
    if (!message || typeof message.type !== 'string') return;
    if (message.type === 'hello') {
      const problem = unplayableReason(message);
      if (problem) {
        this.fail(problem);
        return;
      }
      this.hello = message;
      this.connections += 1;
      this.setState('open');
      this.dispatchEvent(new CustomEvent('hello', { detail: { hello: message, t: arrivalMs } }));
      PING_EARLY_MS.forEach((ms) => this.later(ms, () => this.ping()));
      this.every(PING_INTERVAL_MS, () => this.ping());
      return;
    }
    if (message.type === 'pong') {
      const sentMs = this.pending.get(JSON.stringify(message.id));
      if (sentMs !== undefined) {
        this.pending.delete(JSON.stringify(message.id));
        this.clock.add(sentMs, arrivalMs, message.server_time_ms);
      }
      return;
    }
    // skipped, source, bye, and anything newer: listeners pick what they know.
    this.dispatchEvent(new CustomEvent('control', { detail: { message, t: arrivalMs } }));
  }

  onAudio(buffer, arrivalMs) {
    if (!this.hello) return; // audio before hello breaks the protocol; it cannot be placed
    const chunk = parseChunk(buffer, this.hello.channels);
    if (!chunk) return;
    // Audio flowing again is what makes a reconnect successful, so the backoff restarts.
    this.attempt = 0;
    this.dispatchEvent(new CustomEvent('chunk', { detail: { ...chunk, buffer, t: arrivalMs } }));
  }

  ping() {
    if (!this.ws || this.ws.readyState !== 1) return;
    const id = ++this.pingId;
    this.pending.set(JSON.stringify(id), nowMs());
    if (this.pending.size > 32) this.pending.delete(this.pending.keys().next().value);
    this.ws.send(JSON.stringify({ type: 'ping', id }));
  }

  /** A stream this page cannot play: say why and do not hammer the server with retries. */
  fail(reason) {
    const ws = this.ws;
    this.ws = null;
    this.clearTimers();
    if (ws) {
      detach(ws);
      closeQuietly(ws, 'unsupported stream');
    }
    this.setState('stopped');
    this.dispatchEvent(new CustomEvent('closed', { detail: { code: 0, reason, fatal: true, t: nowMs() } }));
  }

  lost({ code, reason, byeReason }) {
    const wasOpen = this.hello !== null;
    this.ws = null;
    this.hello = null;
    this.clearTimers();
    const t = nowMs();
    this.dispatchEvent(new CustomEvent('closed', { detail: { code, reason, byeReason, wasOpen, t } }));
    const delayMs = backoffDelay(this.attempt, this.random);
    this.attempt += 1;
    this.setState('waiting');
    this.dispatchEvent(new CustomEvent('retry', { detail: { delayMs, attempt: this.attempt, at: t + delayMs } }));
    this.later(delayMs, () => this.connect());
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
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

  clearTimers() {
    this.timeouts.forEach(clearTimeout);
    this.intervals.forEach(clearInterval);
    this.timeouts.clear();
    this.intervals.clear();
  }
}

/** Closes with 1000. A socket still connecting is closed once it opens: closing it earlier
 * makes browsers log an error for what is a normal decision of the page. */
function closeQuietly(ws, reason) {
  if (ws.readyState === 0) ws.onopen = () => ws.close(1000, reason);
  else if (ws.readyState === 1) ws.close(1000, reason);
}

function detach(ws) {
  ws.onmessage = ws.onclose = null;
  // A socket closed during its handshake still reports an error; it is expected, not news.
  ws.onerror = () => {};
}
