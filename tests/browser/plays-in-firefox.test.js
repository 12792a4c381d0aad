// The page in Firefox (Debian's ESR, over WebDriver BiDi): Start plays the tone through a real
// PulseAudio sink at its pitch and level with no hole and no click, the page shows what it plays,
// a killed server is logged and reconnected to by itself, Stop silences it and nothing
// reconnects, and the console has only the refused connections. The rest of the browser suite
// runs in Chromium; this file is where a Firefox difference in AudioWorklet, WebSocket or
// autoplay handling would show.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { saveRecording } from './support/artifacts.js';
import { assertBufferHeld } from './support/browser.js';
import { launchFirefox } from './support/firefox.js';
import { assertLongTaskRecovered, longTaskWhilePlaying, watchMainThread } from './support/long-task.js';
import { createSink, recordFor } from './support/pulse.js';
import { assertRestartRow, assertStopStops, killAndRestart } from './support/restart.js';
import { startServer } from './support/server.js';
import { BLOCK_MS, assertNoClick, assertTone, holesIn, part } from './support/tone.js';

let sink;
let server; // whichever server currently holds the port
let firefox;
let page;

before(async () => {
  sink = await createSink('earshot_firefox');
  server = await startServer({ source: 'tone:', instance: 'A' });
  firefox = await launchFirefox({ sink });
  page = await firefox.newPage(server.url);
});

after(async () => {
  await firefox?.close();
  await server?.kill();
  await sink?.remove();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const stats = () => page.evaluate(() => window.earshot.stats());

test('in Firefox, Start plays the tone: 440 Hz at −15 dBFS on both channels, no silent block, no click', async (t) => {
  await page.click('#toggle');
  await firefox.waitForState(page, 'playing');
  await sleep(1000); // past the fade-in and the first drift-correction steps
  const watch = await watchMainThread(page);
  const recording = await recordFor(sink, 4000);
  const longest = await watch.stop();
  await saveRecording('plays-in-firefox.wav', recording);
  const { underruns, output } = await stats();
  assert.ok(recording.channels[0].length >= 3.5 * recording.rate, 'recorded 4 s');
  for (const c of recording.channels.keys()) {
    // A silence the page counted as an underrun, with no hold of its audio thread, is audio that
    // came late: the network, the server, or Firefox's main thread, which delivers it.
    const what = `Firefox, channel ${c} (player underruns: ${underruns}; audio thread held up ${output.holds} times; main thread held up at most ${longest.join(', ')} ms)`;
    const channel = part(recording, { channel: c });
    const { freq, level, blocks } = assertTone(channel, what, { holes: false });
    t.diagnostic(`channel ${c}: ${freq.toFixed(2)} Hz, median ${level.toFixed(2)} dBFS over ${blocks} blocks`);
    assertNoClick(channel, what);
  }
});

test('in Firefox, a main thread held up 300 ms is one logged underrun, not a stall, and play resumes by itself without a click', async (t) => {
  const result = await longTaskWhilePlaying({ page, sink, stats });
  t.diagnostic(assertLongTaskRecovered(result, 'Firefox'));
  assertNoClick(part(result.recording), 'Firefox, across a long task');
});

test('the page shows what it plays in Firefox: instance, format, latency and a full buffer', async (t) => {
  const s = await stats();
  t.diagnostic(`Firefox: context ${s.output.sampleRate} Hz, base latency ${s.output.baseLatencyMs} ms`);
  assert.equal(s.state, 'playing');
  assert.equal(s.instance, 'A');
  assert.deepEqual(s.format, { codec: 'pcm_s16le', sampleRate: 44100, channels: 2, chunkMs: 20 });
  assert.ok(s.latencyMs !== null && s.latencyMs >= 0 && s.latencyMs < 100, `latency ${s.latencyMs} ms`);
  t.diagnostic(await assertBufferHeld(s, 'Firefox', stats));
  assert.equal(s.output.state, 'running');
  // Firefox has no AudioContext.playbackStats: the page says nothing rather than 0. Nor is it
  // asked for its output latency, which can freeze the tab (www/player.js): the page says the
  // sound card's part is unknown, and the latency to the speaker is a lower bound.
  assert.equal(s.output.glitches, null);
  assert.equal(s.output.outputLatencyMs, null);
  assert.equal(s.output.outputLatencyUnknown, 'not asked of this browser');
  assert.equal(s.endToEndComplete, false);
  const output = await page.$eval('[data-stat=output]', (el) => el.textContent);
  assert.match(output, /output latency and the sound card's, not asked of this browser/);
  const latency = await page.$eval('[data-stat=latency]', (el) => el.textContent);
  assert.match(latency, /at least \d+ ms to the speaker/);
  assert.equal(s.gaps + s.skips + s.reconnects, 0);
  const status = await page.$eval('#status', (el) => el.textContent);
  assert.match(status, /Playing from A/);
});

test('in Firefox, a killed server is logged as socket closed for as long as the page was without it, and play resumes by itself without clicks', async () => {
  const restart = await killAndRestart({ server, browser: firefox, page, sink, wav: 'restart-in-firefox.wav' });
  server = restart.server;
  const { recording, since, killedAt, joinedAt } = restart;

  const rows = await page.evaluate(() => window.earshot.log());
  const row = assertRestartRow(rows, { since, instance: 'A', killedAt, joinedAt });
  assert.equal(row.measuredBy, 'sequence');
  const s = await stats();
  assert.equal(s.reconnects, 1);

  // The recording: the tone, one hole about as long as the outage, the tone again, no click.
  const { rate, startMs } = recording;
  const whole = part(recording);
  const holes = holesIn(whole);
  const why = `player underruns: ${s.underruns}`;
  assert.equal(holes.length, 1, `one hole expected: ${JSON.stringify(holes)}; ${why}`);
  const holeMs = holes[0].length * BLOCK_MS;
  assert.ok(Math.abs(holeMs - row.durationMs) <= 300, `hole of ${holeMs} ms for a logged ${row.durationMs} ms`);
  assertNoClick(whole, `Firefox, across the restart (${why})`, { since: 'the kill', sinceMs: startMs - killedAt });
  const at = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  assertTone(part(recording, { to: at(killedAt) }), 'Firefox, before the kill', { holes: false });
  assertTone(part(recording, { from: at(joinedAt + 500) }), 'Firefox, after recovery', { holes: false });
});

test('Stop, held down as a person presses it, silences the sound card in Firefox and nothing reconnects', async () => {
  await assertStopStops({ server, browser: firefox, page, sink });
});

test('the only console errors in Firefox are its reports of refused connections while no server ran', () => {
  assert.deepEqual(firefox.problems([/^Error: Firefox can’t establish a connection to the server at ws:\/\/127\.0\.0\.1:\d+\/ws\.$/]), []);
});
