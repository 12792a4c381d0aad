// earshot page: wires the connection, the continuity monitor and the player to the page's
// controls, stats panel and interruption log (with its CSV export), and exposes the same numbers
// to scripts as `window.earshot` (what the browser tests read). Levels and waveform drawing live
// in levels.js.

import { StreamConnection, nowMs, streamUrl } from './connection.js';
import { LevelsView } from './levels.js';
import { ContinuityMonitor, LatencyTracker } from './monitor.js';
import { Player, unsupportedReason } from './player.js';
import { csvFileName, interruptionsCsv } from './report.js';
import { HEADER_BYTES, chunkDurationMs } from './wire.js';

const $ = (id) => document.getElementById(id);
const ui = {
  toggle: $('toggle'),
  status: $('status'),
  volume: $('volume'),
  volumeValue: $('volume-value'),
  mute: $('mute'),
  target: $('target'),
  notice: $('notice'),
  stats: Object.fromEntries([...document.querySelectorAll('[data-stat]')].map((el) => [el.dataset.stat, el])),
  total: $('lost-total'),
  logBody: document.querySelector('#log tbody'),
  logEmpty: $('log-empty'),
  exportCsv: $('export-csv'),
};

const TARGET_MIN_MS = 20;
const TARGET_MAX_MS = 2000;
const LOG_ROWS_SHOWN = 200;

const settings = loadSettings();
const player = new Player({ targetMs: settings.targetMs, volume: settings.volume, muted: settings.muted });
const connection = new StreamConnection(streamUrl(location));
const monitor = new ContinuityMonitor();
const latency = new LatencyTracker();
const levels = new LevelsView($('meters'), $('waveform'));

let listening = false; // what the user asked for: only Start and Stop change it
let hello = null;
let source = { state: 'live', reason: null };
let retry = null;
let fatal = null;

// ---- controls -----------------------------------------------------------------------------

ui.toggle.addEventListener('click', () => (listening ? stop() : start()));

function start() {
  fatal = null;
  hideNotice();
  listening = true;
  // Inside the click: the only moment every browser lets an AudioContext start.
  let unlocked;
  try {
    unlocked = player.unlock();
  } catch (err) {
    unlocked = Promise.reject(err);
  }
  render();
  // login.js (when the server has a password) resolves `ready` once the browser holds a token.
  unlocked.then(() => window.earshotAuth?.ready).then(
    () => listening && connection.start(),
    (err) => {
      stop();
      showNotice(`Audio could not start: ${err?.message ?? err}.`);
    },
  );
}

function stop() {
  listening = false;
  connection.stop();
  monitor.stopped(nowMs());
  player.stop();
  levels.reset();
  retry = null;
  render();
}

ui.volume.addEventListener('input', () => {
  settings.volume = Number(ui.volume.value) / 100;
  player.setVolume(settings.volume);
  saveSettings();
  renderControls();
});

ui.mute.addEventListener('click', () => {
  settings.muted = !settings.muted;
  player.setMuted(settings.muted);
  saveSettings();
  renderControls();
});

ui.target.addEventListener('change', () => {
  const ms = clamp(Math.round(Number(ui.target.value)), TARGET_MIN_MS, TARGET_MAX_MS);
  if (!Number.isFinite(ms)) return renderControls();
  settings.targetMs = ms;
  player.setTarget(ms);
  saveSettings();
  renderControls();
});

// ---- stream events ------------------------------------------------------------------------

connection.addEventListener('hello', ({ detail }) => {
  hello = detail.hello;
  source = { state: 'live', reason: null };
  monitor.connected(hello, detail.t, retry?.attempt ?? null, detail.handover);
  retry = null;
  latency.reset(hello.server_time_ms);
  player.configure(hello).catch((err) => showNotice(`Audio could not start: ${err?.message ?? err}.`));
  levels.setChannels(hello.channels);
  render();
});

connection.addEventListener('chunk', ({ detail }) => {
  const { play, discontinuity } = monitor.chunk(detail.seq, detail.producedUs, detail.t);
  latency.add(detail.producedUs, detail.t, connection.clock.offsetMs);
  if (play) player.push(detail.buffer, HEADER_BYTES, detail.frames * hello.channels, discontinuity);
});

connection.addEventListener('control', ({ detail: { message, t } }) => {
  if (message.type === 'skipped') monitor.skipped(message.from, message.to, t);
  if (message.type === 'source') {
    source = { state: message.state, reason: message.reason ?? null };
    monitor.source(message.state, message.reason, t);
  }
  render();
});

connection.addEventListener('closed', ({ detail }) => {
  if (detail.fatal) {
    fatal = detail.reason;
    listening = false;
    monitor.stopped(detail.t);
    player.stop();
    showNotice(`This stream cannot be played here: ${detail.reason}.`);
  } else {
    monitor.disconnected(detail.t, closeDetail(detail));
    // A refused upgrade (401 after a login expired) is invisible to WebSocket code: a socket
    // that never opened is the sign; login.js asks the server and shows its form if needed.
    if (!detail.wasOpen) window.earshotAuth?.check();
  }
  render();
});

connection.addEventListener('stall', ({ detail }) => {
  monitor.stalled(detail.since, detail.t, detail.silentMs, detail.thresholdMs);
  render();
});

connection.addEventListener('moving', render);

// Logging out stops playing, as pressing Stop would.
window.addEventListener('earshot:logout', () => listening && stop());

connection.addEventListener('retry', ({ detail }) => {
  retry = detail;
  render();
});

connection.addEventListener('state', render);

// At the times the audio thread saw them, not when the main thread (maybe after a long task)
// got the news: the log's underrun rows begin when the silence began.
player.addEventListener('underrun', ({ detail }) => monitor.underrunStarted(detail.at));
player.addEventListener('resumed', ({ detail }) => monitor.underrunEnded(detail.at, detail.silentMs));
player.addEventListener('stats', ({ detail }) => levels.update(detail.levels));
player.addEventListener('context', ({ detail }) => {
  // A phone call or another app can suspend audio (iOS reports 'interrupted'); try to go on.
  if (listening && detail.state !== 'running' && detail.state !== 'closed') {
    player.ctx.resume().catch(() => {});
  }
  render();
});

function closeDetail({ code, reason, byeReason, wasOpen, stalled }) {
  if (stalled) return reason;
  if (byeReason) return `server said bye: ${byeReason}`;
  if (!wasOpen) return 'connection failed';
  if (code === 1006) return 'connection lost (1006)';
  return `closed ${code}${reason ? `: ${reason}` : ''}`;
}

// ---- state for scripts and tests ----------------------------------------------------------

/** One word for what the page is doing, as the status line says it. */
function pageState() {
  if (fatal) return 'failed';
  if (!listening) return 'stopped';
  if (connection.state === 'open') {
    if (source.state !== 'live') return 'source-down';
    return player.stats?.playing ? 'playing' : 'buffering';
  }
  return connection.connections > 0 ? 'reconnecting' : 'connecting';
}

function statsSnapshot() {
  const worklet = player.stats;
  const output = player.output;
  const bufferMs = worklet?.fillMs ?? null;
  const networkMs = latency.latencyMs;
  return {
    state: pageState(),
    connection: connection.state,
    instance: monitor.instance,
    format: hello && {
      codec: hello.codec,
      sampleRate: hello.sample_rate,
      channels: hello.channels,
      chunkMs: chunkDurationMs(hello),
    },
    latencyMs: networkMs,
    // Without the sound card's part where the browser is not asked for it (Firefox) or does not
    // report it (WebKit): then at least.
    endToEndMs:
      networkMs !== null && bufferMs !== null && output
        ? networkMs + bufferMs + output.baseLatencyMs + (output.outputLatencyMs ?? 0)
        : null,
    endToEndComplete: output?.outputLatencyMs != null,
    clockOffsetMs: connection.clock.offsetMs,
    rttMs: connection.clock.rttMs,
    jitterMs: latency.jitterMs,
    bufferMs,
    // The fill averaged over ~2 s, which drift correction steers to the target: the instant
    // fill saws by a chunk, and by more when arrivals bunch.
    bufferAverageMs: worklet?.averageFillMs ?? null,
    targetMs: settings.targetMs,
    speed: worklet?.speed ?? 1,
    chunks: monitor.counters.chunks,
    duplicates: monitor.counters.duplicates,
    underruns: worklet?.underruns ?? 0,
    silentMs: worklet?.silentMs ?? 0,
    trimmedMs: worklet?.trimmedMs ?? 0,
    staleDroppedMs: worklet?.staleDroppedMs ?? 0,
    gaps: monitor.counters.gaps,
    gapMs: monitor.counters.gapMs,
    skips: monitor.counters.skips,
    skipMs: monitor.counters.skipMs,
    reconnects: monitor.counters.reconnects,
    handovers: monitor.counters.handovers,
    moving: connection.moving?.reason ?? null,
    connections: connection.connections,
    source: { ...source },
    // The times the browser held up the page's audio thread while it played (every browser;
    // worklet.js, HoldWatch), beside the output facts and Chromium's own glitch count.
    output: output && { ...output, holds: worklet?.holds ?? 0, heldMs: worklet?.heldMs ?? 0, recentHolds: worklet?.recentHolds ?? [] },
    renderedFrames: worklet?.renderedFrames ?? 0,
    playedFrames: worklet?.playedFrames ?? 0,
    levels: levels.readout(),
    totalLostMs: monitor.totalLostMs,
  };
}

window.earshot = Object.freeze({
  get state() {
    return pageState();
  },
  stats: statsSnapshot,
  log: () => monitor.rows.map((row) => ({ ...row })),
  csv: () => interruptionsCsv(monitor.rows),
  get totalLostMs() {
    return monitor.totalLostMs;
  },
});

// ---- rendering ----------------------------------------------------------------------------

const STATUS_TEXT = {
  stopped: () => 'Stopped',
  failed: () => 'Cannot play this stream',
  connecting: () => 'Connecting…',
  buffering: () => 'Buffering…',
  playing: () => `Playing from ${monitor.instance}${connection.moving ? ` (moving: ${MOVING_TEXT[connection.moving.reason]})` : ''}`,
  'source-down': () => `Source ${source.state}${source.reason ? `: ${source.reason}` : ''}`,
  reconnecting: () => `Reconnecting${retry ? ` (attempt ${retry.attempt})` : ''}…`,
};

const MOVING_TEXT = { goaway: 'server draining', stall: 'connection stalled' };

/**
 * Sets an element's text only when it changes. Everything here is rendered four times a second,
 * and a write replaces the element's text node even when the text is the same: a live region is
 * read out again, and WebKit drops a click whose press and release land on different nodes (a
 * Stop held down across a render did nothing).
 */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function render() {
  const state = pageState();
  setText(ui.toggle, listening ? 'Stop' : 'Start');
  ui.status.dataset.state = state;
  setText(ui.status, STATUS_TEXT[state]()); // a live region, read out on every write
  renderControls();
  renderStats();
  renderLog();
}

function renderControls() {
  const percent = Math.round(settings.volume * 100);
  ui.volume.value = String(percent);
  ui.volume.setAttribute('aria-valuetext', `${percent}%`);
  setText(ui.volumeValue, `${percent}%`);
  ui.mute.setAttribute('aria-pressed', String(settings.muted));
  ui.mute.classList.toggle('on', settings.muted);
  if (document.activeElement !== ui.target) ui.target.value = String(settings.targetMs);
}

const ms = (value, digits = 0) => (value === null || value === undefined ? '–' : `${value.toFixed(digits)} ms`);

function renderStats() {
  const s = statsSnapshot();
  const set = (key, text) => setText(ui.stats[key], text);
  set('connection', connectionText(s));
  set('instance', s.instance ?? '–');
  set(
    'format',
    s.format
      ? `${s.format.codec} · ${(s.format.sampleRate / 1000).toFixed(1)} kHz · ${s.format.channels === 1 ? 'mono' : 'stereo'} · ${s.format.chunkMs.toFixed(0)} ms chunks`
      : '–',
  );
  set(
    'latency',
    s.latencyMs === null || s.connection !== 'open'
      ? '–'
      : `${ms(s.latencyMs, 1)} network${s.endToEndMs !== null ? ` · ${s.endToEndComplete ? '' : 'at least '}${ms(s.endToEndMs)} to the speaker` : ''}` +
          (s.rttMs !== null ? ` (RTT ${ms(s.rttMs, 1)}, clock offset ${ms(s.clockOffsetMs, 1)})` : ''),
  );
  set('jitter', s.connection === 'open' ? ms(s.jitterMs, 1) : '–');
  set(
    'buffer',
    s.bufferMs === null
      ? `– (target ${s.targetMs} ms)`
      : `${ms(s.bufferMs)} (target ${s.targetMs} ms, speed ${formatSpeed(s.speed)}${s.trimmedMs ? `, ${ms(s.trimmedMs)} trimmed` : ''})`,
  );
  set('chunks', `${s.chunks}${s.duplicates ? ` (${s.duplicates} repeats dropped)` : ''}`);
  set('underruns', `${s.underruns}${s.silentMs ? ` (${ms(s.silentMs)} of silence)` : ''}`);
  set('gaps', `${s.gaps}${s.gapMs ? ` (${ms(s.gapMs)} of audio)` : ''}`);
  set('skips', `${s.skips}${s.skipMs ? ` (${ms(s.skipMs)} of audio)` : ''}`);
  set('reconnects', String(s.reconnects));
  set('handovers', String(s.handovers));
  set(
    'output',
    s.output
      ? `${(s.output.sampleRate / 1000).toFixed(1)} kHz, ${outputLatencyText(s.output)} (${s.output.state})` +
          (s.output.holds ? `, audio thread held up ${s.output.holds === 1 ? 'once' : `${s.output.holds} times`} (${ms(s.output.heldMs)})` : '') +
          (s.output.glitches ? `, ${s.output.glitches} browser glitches (${ms(s.output.glitchMs)})` : '')
      : '–',
  );
}

/** The output latency, or what is known of it where the browser is not asked (Firefox) or does
 * not say (WebKit). */
function outputLatencyText({ baseLatencyMs, outputLatencyMs, outputLatencyUnknown }) {
  if (outputLatencyMs === null) return `${ms(baseLatencyMs)} output latency and the sound card's, ${outputLatencyUnknown}`;
  return `${ms(baseLatencyMs + outputLatencyMs)} output latency`;
}

function connectionText(s) {
  if (s.state !== 'reconnecting') return s.state;
  if (connection.state === 'waiting' && retry) {
    return `reconnecting: attempt ${retry.attempt} in ${Math.max(0, (retry.at - nowMs()) / 1000).toFixed(1)} s`;
  }
  return `reconnecting: attempt ${retry?.attempt ?? 1} under way`;
}

function formatSpeed(speed) {
  const percent = (speed - 1) * 100;
  return `${percent >= 0 ? '+' : '−'}${Math.abs(percent).toFixed(2)}%`;
}

let renderedLogVersion = -1;

function renderLog() {
  const rows = monitor.rows;
  const now = nowMs();
  const ongoing = rows.find((row) => row.ongoing);
  const lost = monitor.totalLostMs;
  const count = rows.filter((row) => row.lostMs > 0 || row.ongoing).length;
  const finished = count - (ongoing ? 1 : 0);
  setText(
    ui.total,
    (lost > 0 ? `Audio lost: ${Math.round(lost)} ms in ${finished} ${finished === 1 ? 'interruption' : 'interruptions'}.` : 'No audio lost.') +
      (ongoing ? ` In progress: ${ongoing.cause}, ${Math.round(now - ongoing.start)} ms so far.` : ''),
  );
  if (monitor.version === renderedLogVersion) {
    // Only the running duration of an interruption in progress changes between redraws.
    const cell = ui.logBody.querySelector('tr.ongoing td[data-label="Duration"]');
    if (cell && ongoing) setText(cell, `${Math.round(now - ongoing.start)} ms…`);
    return;
  }
  renderedLogVersion = monitor.version;
  ui.logEmpty.hidden = rows.length > 0;
  ui.logBody.closest('.table-wrap').hidden = rows.length === 0;
  const shown = rows.slice(-LOG_ROWS_SHOWN).reverse(); // newest first
  ui.logBody.replaceChildren(...shown.map((row) => logRow(row, now)));
}

function logRow(row, now) {
  const tr = document.createElement('tr');
  tr.dataset.cause = row.cause;
  if (row.ongoing) tr.classList.add('ongoing');
  const duration = row.ongoing ? `${Math.round(now - row.start)} ms…` : `${Math.round(row.durationMs)} ms`;
  const lost = row.ongoing ? '…' : `${Math.round(row.lostMs)} ms`;
  const changed = row.instanceAfter !== row.instanceBefore;
  const cells = [
    [formatClock(row.start), 'time', 'Start'],
    [duration, 'num', 'Duration'],
    [lost, 'num', 'Audio lost'],
    [row.cause, 'cause', 'Cause'],
    [changed ? `${row.instanceBefore} → ${row.instanceAfter}` : (row.instanceBefore ?? '–'), changed ? 'instance changed' : 'instance', 'Instance'],
  ];
  for (const [text, className, label] of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    td.className = className;
    td.dataset.label = label; // the narrow layout shows each cell with its column name
    tr.append(td);
  }
  if (row.detail) {
    const small = document.createElement('small');
    small.textContent = row.detail;
    tr.children[3].append(document.createElement('br'), small);
  }
  return tr;
}

function formatClock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// ---- CSV export ---------------------------------------------------------------------------

ui.exportCsv.addEventListener('click', () => {
  const blob = new Blob([interruptionsCsv(monitor.rows)], { type: 'text/csv;charset=utf-8' });
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = csvFileName(Date.now());
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has taken its copy once the click's task is over.
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
});

// ---- notices and settings -----------------------------------------------------------------

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = '';
}

function explainUnsupported(reason) {
  if (reason === 'insecure-origin') {
    const port = location.port ? `:${location.port}` : '';
    ui.notice.replaceChildren(
      strong('Playback is blocked on this address.'),
      ` Browsers allow the audio engine this page needs (AudioWorklet) only on secure origins, and ${location.origin} is not one. `,
      'To fix it, open the page over HTTPS (put earshot behind a reverse proxy that terminates TLS, such as nginx or HAProxy), ',
      `or as http://localhost${port}/ on the machine itself (from elsewhere, through an SSH tunnel: `,
      code(`ssh -L ${location.port || '8080'}:localhost:${location.port || '8080'} ${location.hostname}`),
      ').',
    );
  } else {
    ui.notice.replaceChildren(
      strong('This browser cannot play the stream.'),
      reason === 'no-webaudio'
        ? ' It has no Web Audio support.'
        : ' It has no AudioWorklet support; use a current Chrome, Edge, Firefox or Safari.',
    );
  }
  ui.notice.hidden = false;
  ui.toggle.disabled = true;
  ui.toggle.setAttribute('aria-describedby', 'notice');
}

function strong(text) {
  const el = document.createElement('strong');
  el.textContent = text;
  return el;
}

function code(text) {
  const el = document.createElement('code');
  el.textContent = text;
  return el;
}

function loadSettings() {
  const stored = (key) => {
    try {
      return localStorage.getItem(`earshot.${key}`);
    } catch {
      return null; // storage can be off (private mode, policies); defaults are fine
    }
  };
  const number = (text, fallback, lo, hi) => {
    const n = Number(text);
    return text !== null && text !== '' && Number.isFinite(n) ? clamp(n, lo, hi) : fallback;
  };
  // ?target=MS in the address wins, so a link can carry a buffer size for a test.
  const query = new URLSearchParams(location.search).get('target');
  return {
    volume: number(stored('volume'), 1, 0, 1),
    muted: stored('muted') === 'true',
    targetMs: Math.round(number(query ?? stored('targetMs'), 80, TARGET_MIN_MS, TARGET_MAX_MS)),
  };
}

function saveSettings() {
  try {
    localStorage.setItem('earshot.volume', String(settings.volume));
    localStorage.setItem('earshot.muted', String(settings.muted));
    localStorage.setItem('earshot.targetMs', String(settings.targetMs));
  } catch {
    // Not remembered across visits; everything else works.
  }
}

function clamp(value, lo, hi) {
  return Math.min(hi, Math.max(lo, value));
}

// ---- start --------------------------------------------------------------------------------

const unsupported = unsupportedReason(window);
if (unsupported) explainUnsupported(unsupported);
render();
setInterval(render, 250);
levels.start(() => (listening ? player.analyser : null));
