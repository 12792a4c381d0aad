// A mono stream at a rate other than the sound card's: the worklet resamples it to the context
// rate at the right pitch, and Web Audio sends the one channel to both speakers at full level.
// The page shows one meter and says mono.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { saveRecording } from './support/artifacts.js';
import { launchBrowser, stats, waitForState } from './support/browser.js';
import { createSink, recordFor } from './support/pulse.js';
import { startServer } from './support/server.js';
import { assertTone, part } from './support/tone.js';

const FREQ = 1000;

let sink;
let browser;
let server;
let page;

before(async () => {
  sink = await createSink('earshot_mono');
  browser = await launchBrowser({ sink });
  // Learn the context rate first, so the stream can be made to differ from it.
  page = await browser.newPage('about:blank');
  const contextRate = await page.evaluate(() => new AudioContext().sampleRate);
  const streamRate = contextRate === 48000 ? 44100 : 48000;
  server = await startServer({ source: `tone:?freq=${FREQ}&rate=${streamRate}&channels=1`, instance: 'mono' });
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Start' }).click();
  await waitForState(page, 'playing');
});

after(async () => {
  await browser?.close();
  await server?.kill();
  await sink?.remove();
});

test('a mono stream at another rate plays at its own pitch on both speakers, without holes', async (t) => {
  const s = await stats(page);
  assert.equal(s.format.channels, 1);
  assert.notEqual(s.format.sampleRate, s.output.sampleRate, 'the worklet has to resample');
  await page.waitForTimeout(500);
  const recording = await recordFor(sink, 4000);
  await saveRecording('plays-mono-resampled.wav', recording);
  const after = await stats(page);
  t.diagnostic(`worklet: ${after.underruns} underruns, ${after.silentMs.toFixed(0)} ms silence, ${after.trimmedMs.toFixed(0)} ms trimmed`);
  for (const c of recording.channels.keys()) {
    const what = `channel ${c} (worklet underruns: ${after.underruns})`;
    const { freq, level } = assertTone(part(recording, { channel: c }), what, { holes: false, hz: FREQ });
    t.diagnostic(`channel ${c}: ${freq.toFixed(2)} Hz at ${level.toFixed(2)} dBFS (stream ${s.format.sampleRate} Hz → context ${s.output.sampleRate} Hz)`);
  }
});

test('the page shows a mono stream as one meter and says so', async () => {
  const meters = page.getByRole('meter');
  assert.equal(await meters.count(), 1);
  assert.equal(await meters.first().getAttribute('aria-label'), 'Mono level');
  assert.match(await page.locator('#stats').innerText(), /kHz · mono ·/);
  assert.equal((await stats(page)).levels.rmsDb.length, 1);
});

test('no console errors', () => {
  assert.deepEqual(browser.problems(), []);
});
