// The page in WebKit (Debian's WebKitGTK, Safari's engine, over WebDriver): Start plays the tone
// through a real PulseAudio sink at its pitch and level with no click, the page shows what it
// plays and what this browser does not report, volume and mute change the level, a frozen server
// is logged as a stall and left, a killed one is logged and reconnected to by itself, Stop
// silences it and nothing reconnects, the page logs no error, and the login form and
// its HttpOnly, SameSite=Strict cookie work against a server with a password. This is where a
// WebKit or JavaScriptCore difference in AudioWorklet, WebSocket or autoplay handling would show;
// Safari's own audio output (CoreAudio) is not WebKitGTK's (GStreamer), see README.
//
// Unlike the Chromium and Firefox tests, these do not fail on a silent block. WebKitGTK here runs
// without a GPU (Xvfb) and runs the page less evenly: the player underruns now and then where
// Chromium's does not, and the main thread, which carries the page's WebSocket, is held for tens
// of ms at a time, longer while it paints the waveform (the last test prints for how long, with
// the waveform drawn and hidden, and the underruns meanwhile). The sound server does not
// run dry, so its log cannot excuse those silences as it does for the other browsers. Each test
// prints the recording's silences beside the underruns the page counted; the page logs each
// underrun (README, "Troubleshooting"), and the interruption log's checks leave them out.
//
// Clicks are checked, with one exception that the page itself detects. When WebKit holds up the
// page's audio thread (the whole web process is late), its output plays a silence the page never
// made and the tone comes back abruptly: a click that is WebKit's, not the page's. The page
// counts each such hold with its time (worklet.js, HoldWatch), and every recording of WebKit's
// sink leaves those stretches out (webkit.js hands the sink the page's holds; pulse.js,
// leaveOutHolds), as it leaves out the sound server's underruns for the other browsers. A test
// below stops the web process to pin that the two line up.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { saveRecording } from './support/artifacts.js';
import { assertLongTaskRecovered, longTaskWhilePlaying, watchMainThread } from './support/long-task.js';
import { createSink, freezeHold, record, recordFor } from './support/pulse.js';
import { assertRestartRow, assertStopStops, killAndRestart } from './support/restart.js';
import { startServer } from './support/server.js';
import { BLOCK_MS, TONE_RMS_DB, assertNoClick, assertTone, holesIn, levelOf, part } from './support/tone.js';
import { launchWebKit } from './support/webkit.js';

let sink;
let server; // whichever server currently holds the port
let webkit;
let page;

before(async () => {
  sink = await createSink('earshot_webkit');
  server = await startServer({ source: 'tone:', instance: 'A' });
  webkit = await launchWebKit({ sink });
  page = await webkit.newPage(server.url);
});

after(async () => {
  await webkit?.close();
  await server?.kill();
  await sink?.remove();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const stats = () => page.evaluate(() => window.earshot.stats());

/** The recording's silent blocks beside the underruns the page counted meanwhile, for a
 * diagnostic (see the top of this file for why they are not asserted). */
function silences(recording, before, after) {
  const holes = holesIn(part(recording));
  const holeMs = holes.reduce((sum, h) => sum + h.length * BLOCK_MS, 0);
  const underruns = after.underruns - before.underruns;
  const silentMs = after.silentMs - before.silentMs;
  return `${holes.length} silent runs (${holeMs} ms) in the recording; the page counted ${underruns} underruns (${silentMs.toFixed(0)} ms)`;
}

/** The page's stats from a moment it was playing, not refilling after one of WebKit's
 * underruns (top of this file). The state comes in the same read as the figures: one read to
 * wait for 'playing' and another for the stats once let an underrun in between (CI, b62e023). */
async function statsWhilePlaying(timeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const s = await stats();
    if (s.state === 'playing') return s;
    assert.ok(Date.now() < deadline, `not playing after ${timeout} ms: ${s.state}`);
    await sleep(50);
  }
}

test('in WebKit, Start plays the tone: 440 Hz at −15 dBFS on both channels, no click', async (t) => {
  t.diagnostic(`WebKitGTK ${webkit.version}`);
  await page.click('#toggle');
  await webkit.waitForState(page, 'playing');
  await sleep(1000); // past the fade-in and the first drift-correction steps
  const before = await stats();
  const recording = await recordFor(sink, 4000);
  await saveRecording('plays-in-webkit.wav', recording);
  const after = await stats();
  assert.ok(recording.channels[0].length >= 3.5 * recording.rate, 'recorded 4 s');
  for (const c of recording.channels.keys()) {
    const what = `WebKit, channel ${c} (player underruns: ${after.underruns})`;
    const channel = part(recording, { channel: c });
    const { freq, level, blocks } = assertTone(channel, what);
    t.diagnostic(`channel ${c}: ${freq.toFixed(2)} Hz, median ${level.toFixed(2)} dBFS over ${blocks} blocks`);
    assertNoClick(channel, what);
  }
  t.diagnostic(silences(recording, before, after));
});

test('the page shows what it plays in WebKit: instance, format, latency and its buffer', async (t) => {
  const s = await statsWhilePlaying(2000);
  t.diagnostic(`WebKit: context ${s.output.sampleRate} Hz, base latency ${s.output.baseLatencyMs} ms, buffer ${s.bufferMs?.toFixed(0)} ms`);
  assert.equal(s.state, 'playing');
  assert.equal(s.instance, 'A');
  assert.deepEqual(s.format, { codec: 'pcm_s16le', sampleRate: 44100, channels: 2, chunkMs: 20 });
  assert.ok(s.latencyMs !== null && s.latencyMs >= 0 && s.latencyMs < 100, `latency ${s.latencyMs} ms`);
  // The fill swings wider in WebKit (top of this file): shown, and within reach of the target.
  assert.equal(s.targetMs, 80);
  assert.ok(s.bufferMs > 0 && s.bufferMs < s.targetMs + 150, `buffer ${s.bufferMs} ms for a ${s.targetMs} ms target`);
  assert.equal(s.output.state, 'running');
  // WebKit answers an output latency of 0 through PulseAudio (www/player.js, outputLatency): the
  // page says the sound card's part is not reported, and the latency to the speaker is a lower
  // bound, instead of presenting it as complete.
  assert.equal(s.output.outputLatencyMs, null);
  assert.equal(s.output.outputLatencyUnknown, 'not reported by this browser');
  assert.equal(s.endToEndComplete, false);
  const output = await page.$eval('[data-stat=output]', (el) => el.textContent);
  assert.match(output, /output latency and the sound card's, not reported by this browser/);
  const latency = await page.$eval('[data-stat=latency]', (el) => el.textContent);
  assert.match(latency, /at least \d+ ms to the speaker/);
  assert.equal(s.gaps + s.skips + s.reconnects, 0);
  // Read apart from the stats above, so an underrun in between may show "Buffering…" for a moment.
  await page.waitFor(() => /^Playing from A$/.test(document.querySelector('#status').textContent), 2000);
});

test('WebKitGTK answers an output latency of 0 from a context that plays through PulseAudio', async () => {
  // What www/player.js's outputLatency and README's troubleshooting row rest on: the attribute is
  // there, and 0 while sound flows. A WebKit that reports its real latency fails this, and the
  // page then shows it like Chromium's.
  const answer = await page.evaluate(async () => {
    const ctx = new AudioContext();
    new OscillatorNode(ctx, { frequency: 440 }).connect(new GainNode(ctx, { gain: 0 })).connect(ctx.destination);
    await ctx.resume();
    while (ctx.currentTime < 0.3) await new Promise((resolve) => setTimeout(resolve, 20));
    const seen = { has: 'outputLatency' in AudioContext.prototype, seconds: ctx.outputLatency, state: ctx.state };
    await ctx.close();
    return seen;
  });
  assert.deepEqual(answer, { has: true, seconds: 0, state: 'running' });
});

test('in WebKit, a web process held up 150 ms is counted as a hold of the audio thread, which covers the silence and click it leaves', async (t) => {
  const before = await stats();
  const recorder = record(sink);
  await sleep(1000);
  const frozenAt = Date.now();
  await webkit.freeze(150);
  await sleep(1500);
  const recording = await recorder.stop();
  await saveRecording('held-up-in-webkit.wav', recording);
  const s = await stats();
  assert.ok(s.output.holds > before.output.holds, `holds ${before.output.holds} → ${s.output.holds}`);
  const { hold, seen } = freezeHold(s.output.recentHolds, frozenAt);
  assert.ok(hold, `no hold starting at the freeze; holds (start after the freeze, ms): ${seen}`);
  assert.ok(hold.ms >= 140 && hold.ms <= 500, `a hold of ${hold.ms} ms for a 150 ms freeze; holds: ${seen}`);
  // The sink's recording left it out (webkit.js hands the sink the page's holds).
  assert.ok(
    (recording.heldOut ?? []).some((h) => h.atMs === hold.atMs),
    `the recording left out the holds ${JSON.stringify(recording.heldOut)}, not the freeze's ${JSON.stringify(hold)}`,
  );
  // WebKit's output ran dry meanwhile: the freeze is heard (every silence, nothing left out),
  // so leaving it out is needed...
  const { rate, startMs } = recording;
  const wall = (i) => Math.round(startMs + (i * 1000) / rate - frozenAt);
  const holes = holesIn(part({ ...recording, outputGaps: [] })).map((h) => ({ from: wall(h.start * rate * BLOCK_MS / 1000), to: wall((h.start + h.length) * rate * BLOCK_MS / 1000) }));
  t.diagnostic(`hold of ${hold.ms} ms; silences in the recording (ms after the freeze): ${JSON.stringify(holes)}; player underruns ${s.underruns - before.underruns}`);
  const heard = holes.find((h) => h.from >= 0 && h.from <= 300);
  assert.ok(heard, `no silence within 300 ms of the freeze: ${JSON.stringify(holes)}`);
  // ...and what is left out covers where that silence began (WebKit's output cut off there; it
  // may run on as the page's own underrun, faded, when the page's threads were frozen too), and
  // every click around it.
  const covered = recording.outputGaps.some((g) => wall(g.start) <= heard.from && wall(g.end) >= heard.from + BLOCK_MS);
  assert.ok(covered, `the start of the silence ${heard.from}–${heard.to} ms is outside ${JSON.stringify(recording.outputGaps.map((g) => [wall(g.start), wall(g.end)]))}`);
  assertNoClick(part(recording), `WebKit, around a held-up web process (player underruns: ${s.underruns})`, { since: 'the freeze', sinceMs: startMs - frozenAt });
  const output = await page.$eval('[data-stat=output]', (el) => el.textContent);
  assert.match(output, /, audio thread held up (once|\d+ times) \(\d+ ms\)/);
  assert.equal(s.gaps + s.skips, 0, 'the stream itself lost nothing');
});

test('in WebKit, a main thread held up 300 ms is one logged underrun, not a stall, and play resumes by itself without a click', async (t) => {
  const result = await longTaskWhilePlaying({ page, sink, stats });
  t.diagnostic(assertLongTaskRecovered(result, 'WebKit'));
  assertNoClick(part(result.recording), 'WebKit, across a long task');
});

test('in WebKit, volume at 50% lowers the output by 12 dB, mute silences it, unmute restores it', async () => {
  const level = async () => {
    await sleep(300); // the gain glides over ~10 ms; settle well past it
    return levelOf(part(await recordFor(sink, 1200))).level;
  };
  // WebDriver cannot drag a range input; the page reads the slider on its input event.
  const setVolume = (value) =>
    page.evaluate((v) => {
      const slider = document.querySelector('#volume');
      slider.value = v;
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    }, value);
  await setVolume('50');
  const half = await level();
  assert.ok(Math.abs(half - (TONE_RMS_DB - 12.04)) <= 1.5, `at 50%: ${half.toFixed(2)} dBFS`);
  await page.click('#mute');
  assert.equal(await page.$eval('#mute', (el) => el.getAttribute('aria-pressed')), 'true');
  const muted = await level();
  assert.ok(muted < -80, `muted: ${muted} dBFS`);
  await page.click('#mute');
  await setVolume('100');
  const full = await level();
  assert.ok(Math.abs(full - TONE_RMS_DB) <= 1.5, `restored: ${full.toFixed(2)} dBFS`);
});

test('in WebKit, a server frozen for 2 s is logged as one stall of about 2 s, and play goes on from it', async () => {
  const since = Date.now();
  server.signal('SIGSTOP');
  await sleep(2000);
  server.signal('SIGCONT');
  await sleep(2500);
  await webkit.waitForState(page, 'playing', 3000);
  // A stall starts where audio last came, up to a chunk before the freeze. WebKit's underruns
  // (top of this file) are rows of their own.
  const rows = (await page.evaluate(() => window.earshot.log())).filter((r) => r.start >= since - 100 && r.cause !== 'buffer underrun');
  assert.equal(rows.length, 1, JSON.stringify(rows));
  const [row] = rows;
  assert.equal(row.cause, 'stall');
  assert.equal(row.ongoing, false);
  assert.deepEqual([row.instanceBefore, row.instanceAfter], ['A', 'A']);
  assert.ok(Math.abs(row.durationMs - 2000) <= 300, `${row.durationMs} ms logged for a 2000 ms freeze`);
  await page.waitFor(() => /^Playing from A$/.test(document.querySelector('#status').textContent), 2000);
});

test('in WebKit, a killed server is logged as socket closed for as long as the page was without it, and play resumes by itself without clicks', async (t) => {
  const before = await stats();
  const restart = await killAndRestart({ server, browser: webkit, page, sink, wav: 'restart-in-webkit.wav' });
  server = restart.server;
  const { since, killedAt, joinedAt } = restart;

  // WebKit's underruns (top of this file) are rows of their own, left out of the restart's checks.
  const rows = (await page.evaluate(() => window.earshot.log())).filter((r) => r.cause !== 'buffer underrun');
  const row = assertRestartRow(rows, { since, instance: 'A', killedAt, joinedAt });
  assert.equal(row.measuredBy, 'sequence');
  const s = await stats();
  assert.equal(s.reconnects - before.reconnects, 1, 'one reconnect (the stall test before moved once)');
  const { recording } = restart;

  const { rate, startMs } = recording;
  const whole = part(recording);
  // The outage is the longest hole, about as long as logged.
  const holes = holesIn(whole);
  const why = `player underruns: ${s.underruns}`;
  assert.ok(holes.length >= 1, `no hole for the outage; ${why}`);
  const outage = holes.reduce((a, b) => (b.length > a.length ? b : a));
  const holeMs = outage.length * BLOCK_MS;
  assert.ok(Math.abs(holeMs - row.durationMs) <= 300, `hole of ${holeMs} ms for a logged ${row.durationMs} ms; all: ${JSON.stringify(holes)}`);
  t.diagnostic(`with the outage: ${silences(recording, before, s)}`);
  assertNoClick(whole, `WebKit, across the restart (${why})`, { since: 'the kill', sinceMs: startMs - killedAt });
  const at = (ms) => Math.round(((ms - startMs) * rate) / 1000);
  assertTone(part(recording, { to: at(killedAt) }), 'WebKit, before the kill');
  assertTone(part(recording, { from: at(joinedAt + 500) }), 'WebKit, after recovery');
});

test('Stop, held down as a person presses it, silences the sound card in WebKit and nothing reconnects', async () => {
  await assertStopStops({ server, browser: webkit, page, sink });
});

test('the page logs no error or warning in WebKit', async () => {
  assert.deepEqual(await webkit.problems(), []);
});

test('in WebKit, a wrong password is refused, the right one plays, and Log out asks again', async (t) => {
  const PASSWORD = 'correct horse battery staple';
  const locked = await startServer({ instance: 'L', args: ['--password', PASSWORD] });
  try {
    const joined = () => locked.log.filter((l) => /listener .* joined/.test(l.line)).length;
    await page.goto(locked.url);
    await page.waitFor(() => !document.querySelector('#login').hidden);
    assert.equal(await page.isVisible('#logout'), false);

    await page.fill('#login-password', 'wrong horse');
    await page.click('#login button[type=submit]');
    await page.waitFor(() => document.querySelector('#login-message').textContent === 'Wrong password.');
    assert.equal(await page.isVisible('#login-password'), true);

    await page.fill('#login-password', PASSWORD);
    await page.click('#login button[type=submit]');
    await page.waitFor(() => !document.querySelector('#logout').hidden);
    assert.equal(await page.isVisible('#login-password'), false);
    // The token is an HttpOnly cookie: the page cannot read it, yet WebKit sends it.
    assert.equal(await page.evaluate(() => document.cookie), '');
    await page.click('#toggle');
    await webkit.waitForState(page, 'playing');
    await sleep(500);
    const before = await stats();
    const recording = await recordFor(sink, 2000);
    const s = await stats();
    assert.equal(s.instance, 'L');
    assert.equal(joined(), 1);
    assertTone(part(recording), `WebKit, after login (player underruns: ${s.underruns})`);
    t.diagnostic(silences(recording, before, s));

    await page.click('#logout');
    await webkit.waitForState(page, 'stopped', 3000);
    await page.waitFor(() => !document.querySelector('#login').hidden, 3000);
    const session = await page.evaluate(() => fetch('/api/session', { cache: 'no-store' }).then((r) => r.json()));
    assert.deepEqual(session, { auth_required: true, authenticated: false });
  } finally {
    await locked.kill();
  }
});

test('while the page plays, the test prints how long WebKit\'s main thread was held up, with the waveform drawn and not', async (t) => {
  // The evidence for the top of this file. The page's WebSocket delivers on the main thread:
  // held up longer than the buffer holds, it leaves the player without chunks. Not asserted, as
  // it comes and goes with the machine; what is asserted is that the page played on meanwhile.
  await page.goto(server.url);
  await page.click('#toggle');
  await webkit.waitForState(page, 'playing');
  await sleep(1000);
  for (const waveform of [true, false]) {
    // A canvas not laid out has no size, and the page then draws nothing on it.
    await page.evaluate((shown) => (document.querySelector('canvas').style.display = shown ? '' : 'none'), waveform);
    const before = await stats();
    const watch = await watchMainThread(page);
    await sleep(5000);
    const longest = await watch.stop();
    const after = await stats();
    assert.equal(after.state, 'playing');
    assert.ok(after.chunks - before.chunks >= 200, `${after.chunks - before.chunks} chunks in 5 s`);
    t.diagnostic(`waveform ${waveform ? 'drawn' : 'hidden'}: main thread held up at most ${longest.join(', ')} ms in 5 s; ${after.underruns - before.underruns} underruns (${(after.silentMs - before.silentMs).toFixed(0)} ms)`);
  }
  await page.click('#toggle');
  await webkit.waitForState(page, 'stopped', 5000);
});
