// The page in Firefox (Debian's ESR, over WebDriver BiDi): Start plays the tone through a real
// PulseAudio sink at its pitch and level with no hole and no click, the page shows what it plays,
// Stop silences it and nothing reconnects, and nothing is logged to the console. The rest of the
// browser suite runs in Chromium; this file is where a Firefox difference in AudioWorklet,
// WebSocket or autoplay handling would show.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { blockLevels } from './support/audio.js';
import { saveRecording } from './support/artifacts.js';
import { launchFirefox } from './support/firefox.js';
import { createSink, record } from './support/pulse.js';
import { getJson, startServer } from './support/server.js';
import { assertNoClick, assertTone, part } from './support/tone.js';

let sink;
let server;
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

async function recordFor(ms) {
  const recorder = record(sink);
  await sleep(ms);
  return recorder.stop();
}

test('in Firefox, Start plays the tone: 440 Hz at −15 dBFS on both channels, no silent block, no click', async (t) => {
  await page.click('#toggle');
  await firefox.waitForState(page, 'playing');
  await sleep(1000); // past the fade-in and the first drift-correction steps
  const recording = await recordFor(4000);
  await saveRecording('plays-in-firefox.wav', recording);
  const { underruns } = await stats();
  assert.ok(recording.channels[0].length >= 3.5 * recording.rate, 'recorded 4 s');
  for (const c of recording.channels.keys()) {
    const what = `Firefox, channel ${c} (player underruns: ${underruns})`;
    const channel = part(recording, { channel: c });
    const { freq, level, blocks } = assertTone(channel, what, { holes: false });
    t.diagnostic(`channel ${c}: ${freq.toFixed(2)} Hz, median ${level.toFixed(2)} dBFS over ${blocks} blocks`);
    assertNoClick(channel, what);
  }
});

test('the page shows what it plays in Firefox: instance, format, latency and a full buffer', async (t) => {
  const s = await stats();
  t.diagnostic(`Firefox: context ${s.output.sampleRate} Hz, base latency ${s.output.baseLatencyMs} ms, buffer ${s.bufferMs?.toFixed(0)} ms`);
  assert.equal(s.state, 'playing');
  assert.equal(s.instance, 'A');
  assert.deepEqual(s.format, { codec: 'pcm_s16le', sampleRate: 44100, channels: 2, chunkMs: 20 });
  assert.ok(s.latencyMs !== null && s.latencyMs >= 0 && s.latencyMs < 100, `latency ${s.latencyMs} ms`);
  assert.ok(Math.abs(s.bufferMs - s.targetMs) <= 40, `buffer ${s.bufferMs} ms for a ${s.targetMs} ms target`);
  assert.equal(s.output.state, 'running');
  // Firefox has no AudioContext.playbackStats: the page says nothing rather than 0. Nor is it
  // asked for its output latency, which can freeze the tab (www/player.js): the page says the
  // sound card's part is unknown, and the latency to the speaker is a lower bound.
  assert.equal(s.output.glitches, null);
  assert.equal(s.output.outputLatencyMs, null);
  assert.equal(s.endToEndComplete, false);
  const output = await page.$eval('[data-stat=output]', (el) => el.textContent);
  assert.match(output, /output latency and the sound card's, not asked of this browser/);
  const latency = await page.$eval('[data-stat=latency]', (el) => el.textContent);
  assert.match(latency, /at least \d+ ms to the speaker/);
  assert.equal(s.gaps + s.skips + s.reconnects, 0);
  const status = await page.$eval('#status', (el) => el.textContent);
  assert.match(status, /Playing from A/);
});

test('Stop in Firefox silences the sound card and nothing reconnects', async () => {
  const before = await getJson(server, '/api/status');
  assert.equal(before.listeners.current, 1);
  await page.click('#toggle');
  await firefox.waitForState(page, 'stopped', 5000);
  await sleep(300);
  const r = await recordFor(2000);
  assert.ok(Math.max(...blockLevels(r.channels[0], r.rate)) < -80, 'silent after Stop');
  const status = await getJson(server, '/api/status');
  assert.equal(status.listeners.current, 0);
  assert.equal(status.listeners.total, before.listeners.total, 'no new connection after Stop');
});

test('Firefox logs no console errors or warnings', () => {
  assert.deepEqual(firefox.problems(), []);
});
