// PulseAudio for browser tests: a null sink per test file (so nothing else can sound in its
// recording) and `parec` recordings of its monitor, returned as float samples with the wall
// clock time of their first sample. run.sh starts the daemon and exports PULSE_SERVER.

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SINK_RATE = 48000;
export const SINK_CHANNELS = 2;

/** How far an output gap's place in a recording may be off: the sink renders a block ahead, and
 * the log's clock is pinned to the wall clock by one pactl round trip. */
const GAP_MARGIN_MS = 50;
/** The longest underrun a busy machine explains. A longer one is the browser not playing at
 * all (a suspended context, a frozen tab): the page's business, so it stays in the checks. */
const MAX_EXCUSED_MS = 500;

/** The daemon's log (run.sh starts it at debug level, with times): each line's time in seconds
 * since the daemon started, and its text. */
async function daemonLog() {
  const file = process.env.EARSHOT_PULSE_LOG;
  if (!file) throw new Error('EARSHOT_PULSE_LOG is not set: run the browser tests through tests/browser/run.sh');
  const lines = [];
  for (const line of (await fs.readFile(file, 'utf8')).split('\n')) {
    const m = /^\(\s*(\d+\.\d+)\|\s*\d+\.\d+\) \w: \[[^\]]*\] (.*)$/.exec(line);
    if (m) lines.push({ s: Number(m[1]), text: m[2] });
  }
  return lines;
}

/**
 * When the sound server had no audio from a stream (the browser's, on a machine too busy to
 * feed it in time) and played silence instead, as wall-clock intervals. The daemon logs each
 * such underrun and its end; `clock` maps its log times to the wall clock.
 */
async function underruns(clock) {
  const wall = (s) => clock.wallMs + (s - clock.logS) * 1000;
  const gaps = [];
  let open = null;
  for (const { s, text } of await daemonLog()) {
    if (s < clock.logS) continue;
    if (open === null && /^protocol-native\.c: \w+ underrun of '/.test(text)) open = wall(s);
    else if (open !== null && text.startsWith('protocol-native.c: Requesting rewind due to end of underrun')) {
      gaps.push({ fromMs: open, toMs: wall(s) });
      open = null;
    }
  }
  if (open !== null) gaps.push({ fromMs: open, toMs: Infinity });
  return gaps;
}

export async function createSink(name) {
  if (!process.env.PULSE_SERVER) throw new Error('PULSE_SERVER is not set: run the browser tests through tests/browser/run.sh');
  const before = Date.now();
  const { stdout } = await run('pactl', [
    'load-module',
    'module-null-sink',
    `sink_name=${name}`,
    `rate=${SINK_RATE}`,
    `channels=${SINK_CHANNELS}`,
    `sink_properties=device.description=${name}`,
  ]);
  const after = Date.now();
  const module = stdout.trim();
  // The daemon logged the load between `before` and `after`: that pins its log's clock.
  const loaded = (await daemonLog()).findLast((l) => l.text.includes(`Loaded "module-null-sink" (index: #${module};`));
  if (!loaded) throw new Error(`the sound server's log does not show sink ${name} (module ${module}) loading`);
  const clock = { wallMs: (before + after) / 2, logS: loaded.s };
  const holdSources = new Set();
  return {
    name,
    /** Wall-clock intervals in which the sound server played silence for want of audio. */
    underruns: () => underruns(clock),
    /** Has every recording of this sink leave out the holds `read()` resolves to (a browser's
     * pages' `output.recentHolds`, see leaveOutHolds), told apart as `label`; returns a
     * function that stops it. */
    holdsFrom(label, read) {
      const source = { label, read };
      holdSources.add(source);
      return () => holdSources.delete(source);
    },
    /** The holds of every source, as [{ label, holds }]; a source that fails gives none. */
    async holds() {
      return Promise.all([...holdSources].map(async ({ label, read }) => ({ label, holds: await read().catch(() => []) })));
    },
    async remove() {
      await run('pactl', ['unload-module', module]).catch(() => {});
    },
  };
}

/** Where a hold of the browser's audio thread (the page's `output.recentHolds`) shows in a
 * recording. With WebKit's web process stopped for 150 ms (plays-in-webkit.test.js does it and
 * prints where the silence fell), the silence began 68–87 ms after the hold did, once the
 * browser's own output buffer had played, and the audio came back, abruptly, 10 to 80 ms after
 * the hold ended. These margins take in both ends with room to spare. */
const HOLD_BEFORE_MS = 50;
const HOLD_AFTER_MS = 100;

/**
 * `recording` with the stretches in which the browser held up the page's audio thread (`holds`,
 * as the page reports them: { atMs, ms }) added to its output gaps, so the checks leave them out
 * as they leave out the sound server's underruns: the page could not play there, and the browser
 * filled in silence. Only holds up to MAX_EXCUSED_MS; prints what it left out.
 */
export function leaveOutHolds(recording, holds, label = 'the browser') {
  const { rate, startMs, outputGaps, channels } = recording;
  const frames = channels[0].length;
  const toIndex = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  const left = holds
    .filter((h) => h.ms <= MAX_EXCUSED_MS)
    .map((h) => ({ hold: h, start: Math.max(0, toIndex(h.atMs - h.ms - HOLD_BEFORE_MS)), end: Math.min(frames, toIndex(h.atMs + HOLD_AFTER_MS)) }))
    .filter(({ start, end }) => start < end);
  if (left.length > 0) {
    const ms = Math.round((left.reduce((sum, g) => sum + g.end - g.start, 0) * 1000) / rate);
    console.log(`# ${label} held up its audio thread ${left.length} times; ${ms} ms of the recording left out of the checks`);
  }
  // `heldOut`: the holds left out, so a test can tell them from the sound server's gaps.
  return {
    ...recording,
    outputGaps: merged([...outputGaps, ...left]),
    heldOut: [...(recording.heldOut ?? []), ...left.map((g) => g.hold)],
  };
}

/** The holds every page in `pages` reports (`output.recentHolds`), as a browser's launcher gives
 * them to `sink.holdsFrom`; a page without the player, or closed meanwhile, gives none. */
export async function holdsOfPages(pages) {
  const each = await Promise.all(pages.map((p) => p.evaluate(() => window.earshot?.stats().output?.recentHolds ?? []).catch(() => [])));
  return each.flat();
}

/** How far from a freeze (ms) its hold may begin: the signal goes out only once the process has
 * been found, some ms after the test noted the time. */
const FREEZE_HOLD_WITHIN_MS = 100;

/** Of a page's `holds`, the one a freeze at `frozenAt` (ms) caused: the longest that began near
 * it, as a browser may hold its audio thread on its own just before (a CI run found a 76 ms one
 * first), and the list keeps earlier holds too. Also `seen`: every hold as [start after the
 * freeze, length] in ms, for a failure message. */
export function freezeHold(holds, frozenAt) {
  const began = (h) => h.atMs - h.ms - frozenAt;
  const near = holds.filter((h) => Math.abs(began(h)) <= FREEZE_HOLD_WITHIN_MS);
  const hold = near.reduce((longest, h) => (longest && longest.ms >= h.ms ? longest : h), undefined);
  return { hold, seen: JSON.stringify(holds.map((h) => [Math.round(began(h)), Math.round(h.ms)])) };
}

/** `gaps` ({ start, end }) in order, those that overlap or touch joined into one: a silence that
 * two of them cover between them is covered. */
export function merged(gaps) {
  const out = [];
  for (const g of [...gaps].sort((a, b) => a.start - b.start)) {
    const last = out.at(-1);
    if (last && g.start <= last.end) last.end = Math.max(last.end, g.end);
    else out.push({ start: g.start, end: g.end });
  }
  return out;
}

/** Records `sink` for `ms` and returns the recording (see `record`). One more than half of which
 * is output gaps (the sound server's, and unless `holds` is false the browsers' holds) says
 * little of the page (the machine was too busy to judge it by), and is made again, up to twice,
 * saying so; the last is returned whatever it holds. */
export async function recordFor(sink, ms, options) {
  for (let attempt = 1; ; attempt++) {
    const recorder = record(sink, options);
    await new Promise((resolve) => setTimeout(resolve, ms));
    const recording = await recorder.stop();
    const frames = recording.channels[0].length;
    const share = frames ? recording.outputGaps.reduce((sum, g) => sum + g.end - g.start, 0) / frames : 0;
    if (share <= 0.5 || attempt === 3) return recording;
    console.log(`# ${sink.name}: ${Math.round(share * 100)}% of the recording left out of the checks; recording it again`);
  }
}

/**
 * Starts recording `sink`. `stop()` returns { channels: [Float32Array…], rate, startMs,
 * outputGaps }, where startMs is the wall-clock time of the first sample (the arrival of the
 * first data, less what that data holds), good to a few ms since the null sink runs on the
 * system clock, and outputGaps are where the sound server ran dry and, unless `holds` is false,
 * where a browser playing to the sink held up its audio thread (see `holdsFrom`).
 */
export function record(sink, { holds = true } = {}) {
  const child = spawn('parec', [
    '-d',
    `${sink.name}.monitor`,
    '--format=s16le',
    `--rate=${SINK_RATE}`,
    `--channels=${SINK_CHANNELS}`,
    '--latency-msec=10',
  ]);
  const chunks = [];
  let startMs = null;
  let bytes = 0;
  child.stdout.on('data', (data) => {
    if (startMs === null) startMs = Date.now() - (1000 * data.length) / (2 * SINK_CHANNELS * SINK_RATE);
    chunks.push(data);
    bytes += data.length;
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    /** Seconds recorded so far. */
    get seconds() {
      return bytes / (2 * SINK_CHANNELS * SINK_RATE);
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      const raw = Buffer.concat(chunks);
      const frames = Math.floor(raw.length / (2 * SINK_CHANNELS));
      const channels = Array.from({ length: SINK_CHANNELS }, () => new Float32Array(frames));
      for (let f = 0; f < frames; f++) {
        for (let c = 0; c < SINK_CHANNELS; c++) channels[c][f] = raw.readInt16LE(2 * (f * SINK_CHANNELS + c)) / 32768;
      }
      // Where in the recording the sound server played silence for want of audio: gaps that
      // are the machine's, not the page's (see tone.js).
      const toIndex = (ms) => Math.round(((ms - startMs) * SINK_RATE) / 1000);
      const endMs = startMs + (1000 * frames) / SINK_RATE;
      const during = (await sink.underruns()).filter((g) => g.fromMs - GAP_MARGIN_MS < endMs && g.toMs + GAP_MARGIN_MS > startMs);
      const long = during.filter((g) => g.toMs - g.fromMs > MAX_EXCUSED_MS);
      const outputGaps = during
        .filter((g) => g.toMs - g.fromMs <= MAX_EXCUSED_MS)
        .map(({ fromMs, toMs }) => ({ start: Math.max(0, toIndex(fromMs - GAP_MARGIN_MS)), end: Math.min(frames, toIndex(toMs + GAP_MARGIN_MS)) }))
        .filter(({ start, end }) => start < end);
      if (during.length > 0) {
        const ms = Math.round((outputGaps.reduce((sum, g) => sum + g.end - g.start, 0) * 1000) / SINK_RATE);
        const kept = long.length ? `; ${long.length} longer than ${MAX_EXCUSED_MS} ms kept in them` : '';
        console.log(`# ${sink.name}: the sound server ran dry ${during.length} times; ${ms} ms of the recording left out of the checks${kept}`);
      }
      let recording = { channels, rate: SINK_RATE, startMs, outputGaps: merged(outputGaps) };
      if (!holds) return recording;
      for (const source of await sink.holds()) recording = leaveOutHolds(recording, source.holds, source.label);
      return recording;
    },
  };
}
