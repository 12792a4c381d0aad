// The page really plays, in real Chromium through a real PulseAudio sink: the recorded sound is
// the test tone at the right pitch and level with no holes; what the page shows agrees; volume,
// mute and Stop change what comes out of the sound card; the page is usable from the keyboard.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { artifactPath, saveRecording } from './support/artifacts.js';
import { assertBufferHeld, interruptions, launchBrowser, stats, statusText, waitForState } from './support/browser.js';
import { assertLongTaskRecovered, longTaskWhilePlaying } from './support/long-task.js';
import { createSink, freezeHold, record, recordFor } from './support/pulse.js';
import { assertStopStops } from './support/restart.js';
import { startServer } from './support/server.js';
import { TONE_RMS_DB, assertNoClick, assertTone, holesIn, levelOf, part } from './support/tone.js';

let server;
let sink;
let browser;
let page;

before(async () => {
  sink = await createSink('earshot_plays_audio');
  server = await startServer({ source: 'tone:', instance: 'A' });
  browser = await launchBrowser({ sink });
  page = await browser.newPage(server.url);
});

after(async () => {
  await browser?.close();
  await server?.kill();
  await sink?.remove();
});

/** How long the output-gap test stops Chromium's audio service. */
const FROZEN_MS = 100;

/** Runs of at least `min` exact zeros, as { start, end } sample indices. */
function zeroRuns(samples, min) {
  const runs = [];
  let start = -1;
  for (let i = 0; i <= samples.length; i++) {
    if (i < samples.length && samples[i] === 0) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      if (i - start >= min) runs.push({ start, end: i });
      start = -1;
    }
  }
  return runs;
}

test('Start is a real button reachable from the keyboard, and Enter starts playback', async () => {
  const start = page.getByRole('button', { name: 'Start' });
  await start.waitFor();
  for (let i = 0; i < 5 && !(await start.evaluate((el) => el === document.activeElement)); i++) {
    await page.keyboard.press('Tab');
  }
  assert.equal(await start.evaluate((el) => el === document.activeElement), true, 'Start takes keyboard focus');
  await page.keyboard.press('Enter');
  await waitForState(page, 'playing');
  await page.getByRole('button', { name: 'Stop' }).waitFor();
  await page.locator('#status[role=status]', { hasText: 'Playing from A' }).waitFor({ timeout: 2000 });
});

test('the sound card receives the tone: 440 Hz at −15 dBFS RMS on both channels, no silent 20 ms block, no click', async (t) => {
  await page.waitForTimeout(500); // past the fade-in and the first drift-correction steps
  const recording = await recordFor(sink, 5000);
  await saveRecording('plays-audio-tone.wav', recording);
  const { underruns, output } = await stats(page); // tells a player fault from an output-path one
  assert.ok(recording.channels[0].length >= 4.5 * recording.rate, 'recorded 5 s');
  for (const c of recording.channels.keys()) {
    const what = `channel ${c} (player underruns: ${underruns}; audio thread held up ${output.holds} times)`;
    const channel = part(recording, { channel: c });
    const { freq, level, blocks } = assertTone(channel, what, { holes: false });
    t.diagnostic(`channel ${c}: ${freq.toFixed(2)} Hz, median ${level.toFixed(2)} dBFS over ${blocks} blocks`);
    assertNoClick(channel, what);
  }
});

test('the page shows what it plays: levels, format, instance, latency and a full buffer', async (t) => {
  const s = await stats(page);
  assert.equal(s.instance, 'A');
  assert.deepEqual(s.format, { codec: 'pcm_s16le', sampleRate: 44100, channels: 2, chunkMs: 20 });
  assert.equal(s.levels.rmsDb.length, 2);
  for (const db of s.levels.rmsDb) assert.ok(Math.abs(db - TONE_RMS_DB) <= 1, `meter RMS ${db}`);
  // The meter holds the peak of the last second, which includes a marker beep on top of the tone.
  for (const db of s.levels.peakDb) assert.ok(db > -12.5 && db < -5, `meter peak ${db}`);
  assert.ok(s.latencyMs !== null && s.latencyMs >= 0 && s.latencyMs < 100, `network latency ${s.latencyMs} ms`);
  assert.ok(Math.abs(s.clockOffsetMs) < 50, `clock offset ${s.clockOffsetMs} ms on one machine`);
  assert.ok(s.jitterMs < 25, `jitter ${s.jitterMs} ms`);
  t.diagnostic(await assertBufferHeld(s, 'Chromium', () => stats(page)));
  assert.equal(s.underruns, 0);
  assert.equal(s.gaps, 0);
  // Chromium reports the sound card's part of the output latency, so the latency to the speaker
  // is the whole of it.
  t.diagnostic(`Chromium through PulseAudio: output latency ${s.output.outputLatencyMs.toFixed(1)} ms, base ${s.output.baseLatencyMs.toFixed(1)} ms`);
  assert.ok(s.output.outputLatencyMs > 0, `output latency ${s.output.outputLatencyMs} ms`);
  assert.equal(s.output.outputLatencyUnknown, null);
  assert.equal(s.endToEndComplete, true);
  // What a person reads: the same facts in the stats panel and meters.
  const panel = await page.locator('#stats').innerText();
  assert.match(panel, /Instance\s+A/);
  assert.match(panel, /pcm_s16le · 44\.1 kHz · stereo · 20 ms chunks/);
  assert.match(panel, /Chunks received\s+\d{3,}/);
  const meters = page.getByRole('meter');
  assert.equal(await meters.count(), 2);
  assert.match(await meters.first().getAttribute('aria-valuetext'), /RMS −1[45]\.\d dBFS/);
  assert.equal(await page.locator('#lost-total').innerText(), 'No audio lost.');
  assert.match(panel, /\d+ ms output latency \(running\)/);
  assert.doesNotMatch(panel, /at least|sound card's/);
});

test('chunks arrive and the worklet renders at real-time rates over 4 s', async (t) => {
  const a = await stats(page);
  const t0 = Date.now();
  await page.waitForTimeout(4000);
  const b = await stats(page);
  const seconds = (Date.now() - t0) / 1000;
  const chunksPerS = (b.chunks - a.chunks) / seconds;
  const framesPerS = (b.renderedFrames - a.renderedFrames) / seconds;
  assert.ok(Math.abs(chunksPerS - 50) <= 5, `${chunksPerS.toFixed(1)} chunks/s`);
  const rate = b.output.sampleRate;
  t.diagnostic(`${chunksPerS.toFixed(1)} chunks/s, ${framesPerS.toFixed(0)} frames/s rendered at ${rate} Hz`);
  assert.ok(Math.abs(framesPerS - rate) <= rate * 0.1, `${framesPerS.toFixed(0)} frames/s at ${rate} Hz`);
  assert.equal(b.underruns, 0);
});

test('a screenshot of the playing page is saved and is not blank', async (t) => {
  const file = await artifactPath('playing-page.png');
  const png = await page.screenshot({ path: file, fullPage: true });
  // Decode it in a blank page of its own (its own renderer process, so the player's main thread,
  // which feeds its 80 ms buffer, is not held up by it): count colours, and how much of the
  // image the commonest covers, at a quarter of the size without smoothing (no new colours).
  const scratch = await browser.newPage();
  t.after(() => scratch.close());
  const { colours, commonest } = await scratch.evaluate(async (b64) => {
    const image = await (await fetch(`data:image/png;base64,${b64}`)).blob();
    const full = await createImageBitmap(image);
    const bitmap = await createImageBitmap(image, {
      resizeWidth: Math.ceil(full.width / 4),
      resizeHeight: Math.ceil(full.height / 4),
      resizeQuality: 'pixelated',
    });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const g = canvas.getContext('2d');
    g.drawImage(bitmap, 0, 0);
    const data = g.getImageData(0, 0, bitmap.width, bitmap.height).data;
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return { colours: counts.size, commonest: Math.max(...counts.values()) / (data.length / 4) };
  }, png.toString('base64'));
  assert.ok(colours > 50, `${colours} colours`);
  assert.ok(commonest < 0.9, `one colour covers ${(commonest * 100).toFixed(1)}%`);
});

test('volume at 50% lowers the output by 12 dB, mute silences it, unmute restores it', async () => {
  // Count from a settled page: the worklet reports its counters every few render quanta, so an
  // underrun the previous test caused reaches the page's stats shortly after it.
  await page.waitForTimeout(250);
  const since = Date.now();
  const { underruns } = await stats(page);
  const level = async () => {
    await page.waitForTimeout(300); // the gain glides over ~10 ms; settle well past it
    return levelOf(part(await recordFor(sink, 1200))).level;
  };
  await page.getByRole('slider', { name: 'Volume' }).fill('50');
  const half = await level();
  assert.ok(Math.abs(half - (TONE_RMS_DB - 12.04)) <= 1.5, `at 50%: ${half.toFixed(2)} dBFS`);
  const mute = page.getByRole('button', { name: 'Mute' });
  await mute.click();
  assert.equal(await mute.getAttribute('aria-pressed'), 'true');
  const muted = await level();
  assert.ok(muted < -80, `muted: ${muted} dBFS`);
  await mute.click();
  await page.getByRole('slider', { name: 'Volume' }).fill('100');
  const full = await level();
  assert.ok(Math.abs(full - TONE_RMS_DB) <= 1.5, `restored: ${full.toFixed(2)} dBFS`);
  const s = await stats(page);
  // On a failure, when each underrun began (ms from this test's start; before it if negative)
  // and what held up the audio thread meanwhile.
  const rows = (await interruptions(page)).map((r) => [r.cause, Math.round(r.start - since), Math.round(r.durationMs)]);
  const holds = s.output.recentHolds.map((h) => [Math.round(h.atMs - since), Math.round(h.ms)]);
  assert.equal(s.underruns - underruns, 0, `volume changes never disturb the stream; log ${JSON.stringify(rows)}, audio thread holds ${JSON.stringify(holds)}`);
});

test('a main thread held up 300 ms, past the 80 ms buffer, is one logged underrun, not a stall, and play resumes by itself without a click', async (t) => {
  const result = await longTaskWhilePlaying({ page, sink, stats: () => stats(page) });
  t.diagnostic(assertLongTaskRecovered(result, 'Chromium'));
  assertNoClick(part(result.recording), 'Chromium, across a long task');
});

test('a browser too busy to feed the sound card shows its own glitches, apart from the stream', async () => {
  const before = (await stats(page)).output;
  assert.equal(typeof before.glitches, 'number', 'Chromium reports playbackStats');
  const recorder = record(sink);
  await page.waitForTimeout(300);
  const frozenAt = Date.now();
  await browser.freeze('renderer', 150);
  await page.waitForTimeout(1500);
  const recording = await recorder.stop();
  const s = await stats(page);
  assert.ok(s.output.glitches > before.glitches, `browser glitches ${before.glitches} → ${s.output.glitches}`);
  assert.ok(s.output.glitchMs > before.glitchMs, `browser glitch time ${before.glitchMs} → ${s.output.glitchMs} ms`);
  // The page's own count of the same: its audio thread, in the renderer, was held up too.
  assert.ok(s.output.holds > before.holds, `audio thread holds ${before.holds} → ${s.output.holds}`);
  const { hold, seen } = freezeHold(s.output.recentHolds, frozenAt);
  assert.ok(hold && hold.ms >= 140 && hold.ms <= 500, `no hold of 140–500 ms began at the 150 ms freeze; holds (start after it, ms): ${seen}`);
  // A recording of the sink leaves the hold out of its checks (the sound server need not run
  // dry: the audio service goes on feeding it the browser's silence), and the rest passes them.
  assert.ok(
    (recording.heldOut ?? []).some((h) => h.atMs === hold.atMs),
    `the recording left out the holds ${JSON.stringify(recording.heldOut)}, not the freeze's ${JSON.stringify(hold)}`,
  );
  const { rate, startMs, outputGaps } = recording;
  const at = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  const gaps = JSON.stringify(outputGaps.map((g) => [g.start, g.end].map((i) => Math.round(startMs + (i * 1000) / rate - hold.atMs))));
  assert.ok(
    outputGaps.some((g) => g.start <= at(hold.atMs - hold.ms) && at(hold.atMs) <= g.end),
    `a ${Math.round(hold.ms)} ms hold outside the gaps ${gaps} (ms from its end)`,
  );
  assertNoClick(part(recording), 'Chromium, its renderer frozen 150 ms');
  assert.match(
    await page.locator('[data-stat=output]').innerText(),
    /, audio thread held up (once|\d+ times) \(\d+ ms\), \d+ browser glitches \(\d+ ms\)$/,
  );
  assert.equal(s.gaps, 0, 'the stream itself lost nothing');
});

test('a browser too late to feed the sound server leaves output gaps where the recording has its silence, and nowhere else', async () => {
  // The audio checks leave out the moments the sound server logged that the browser's stream
  // ran dry (see support/tone.js). This pins that the log is read right and put in the right
  // place: stop Chromium's audio service, the process that feeds the sound server, for 100 ms.
  // Only the sound server's log: the page's audio thread, which the service drives, is held up
  // too, and the holds it reports would cover the freeze by themselves.
  const recorder = record(sink, { holds: false });
  await page.waitForTimeout(1000);
  const frozenAt = Date.now();
  await browser.freeze('audio', FROZEN_MS);
  await page.waitForTimeout(1000);
  const recording = await recorder.stop();
  await saveRecording('output-gap.wav', recording);
  const { rate, startMs, outputGaps } = recording;
  const wall = (i) => Math.round(startMs + (i * 1000) / rate - frozenAt);
  const gaps = JSON.stringify(outputGaps.map((g) => [wall(g.start), wall(g.end)]));
  // The freeze is in a gap (the sound server runs dry once its buffer has played).
  assert.ok(outputGaps.some((g) => wall(g.start) <= FROZEN_MS && wall(g.end) >= FROZEN_MS), `gaps ${gaps} ms after the freeze`);
  // The sound server's silence (exact zeros in the middle of the tone) is there, and only in gaps.
  const zeros = zeroRuns(recording.channels[0], Math.round(rate * 0.005));
  assert.ok(zeros.length > 0, 'the recording has the silence the sound server played');
  for (const run of zeros) {
    assert.ok(
      outputGaps.some((g) => g.start <= run.start && run.end <= g.end),
      `silence at ${wall(run.start)}–${wall(run.end)} ms after the freeze outside the gaps ${gaps}`,
    );
  }
  // The freeze leaves out little more than itself, so the checks still judge the rest of the
  // recording; and they pass. Counted for the freeze's own gap: a busy machine's sound server
  // may run dry elsewhere too, each time in its log (a CI run left out 0.579 s of 2.1 s in all).
  const leftOut = outputGaps.reduce((sum, g) => sum + g.end - g.start, 0) / rate;
  const own = outputGaps.filter((g) => wall(g.end) >= 0 && wall(g.start) <= FROZEN_MS);
  const ownMs = Math.round((own.reduce((sum, g) => sum + g.end - g.start, 0) * 1000) / rate);
  assert.ok(
    ownMs < FROZEN_MS + 300,
    `${ownMs} ms left out around a ${FROZEN_MS} ms freeze (${leftOut.toFixed(3)} s of ${(recording.channels[0].length / rate).toFixed(1)} s in all; gaps ${gaps} ms after it)`,
  );
  const whole = part(recording);
  assertTone(whole, 'around an output gap', { holes: false });
  assertNoClick(whole, 'around an output gap', { since: 'the freeze', sinceMs: startMs - frozenAt });
});

test('a silence longer than a busy machine explains stays in the checks', async () => {
  // Leaving out every underrun would hide a page that stops playing altogether: those last
  // longer than a scheduling hiccup (over 500 ms), and stay in.
  const recorder = record(sink, { holds: false });
  await page.waitForTimeout(500);
  const frozenAt = Date.now();
  await browser.freeze('audio', 900);
  await page.waitForTimeout(800);
  const recording = await recorder.stop();
  const { rate, startMs, outputGaps } = recording;
  const wall = (i) => Math.round(startMs + (i * 1000) / rate - frozenAt);
  const gaps = JSON.stringify(outputGaps.map((g) => [wall(g.start), wall(g.end)]));
  assert.ok(!outputGaps.some((g) => wall(g.start) <= 500 && wall(g.end) >= 500), `the freeze was left out: ${gaps}`);
  assert.ok(holesIn(part(recording)).length > 0, `no hole found for a 900 ms freeze; gaps ${gaps}`);
});

test('Stop, held down as a person presses it, stops: the button says Start, the sound card goes silent, and nothing reconnects', async () => {
  await page.getByRole('button', { name: 'Stop' }).waitFor();
  await assertStopStops({ server, browser, page, sink });
  await page.getByRole('button', { name: 'Start' }).waitFor();
  assert.equal(await statusText(page), 'Stopped');
});

test('normal operation logs no console errors or warnings', () => {
  assert.deepEqual(browser.problems(), []);
});
