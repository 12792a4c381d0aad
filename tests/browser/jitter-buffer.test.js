// The worklet's jitter buffer, driven directly in node with simulated clocks: start at target,
// resampling pitch, drift correction, trimming, click-free underruns and joins, and levels.
// Fast and exact; the browser tests then prove the same code plays through a real sound server.

import assert from 'node:assert/strict';
import test from 'node:test';

import { HoldWatch, JitterBuffer } from '../../www/worklet.js';
import { dominantFrequency, maxStep, sineStepBound } from './support/audio.js';

const QUANTUM = 128;

/**
 * Plays a sine through a JitterBuffer the way the page does: 20 ms chunks arrive on the
 * producer's clock, the output pulls 128-frame quanta on its own. `producerSpeed` > 1 makes the
 * sender's clock run fast; `pause` holds chunks back for a while, then delivers them at once.
 */
function simulate({
  streamRate = 44100,
  outputRate = 44100,
  channels = 2,
  seconds = 5,
  freq = 440,
  amplitude = 0.25,
  targetMs = 80,
  producerSpeed = 1,
  batch = 1, // chunks the server sends together (`--batch-ms` / 20 ms): they arrive in groups
  pause = null, // { atS, forMs, jump }: chunks held back, then delivered late all at once (with
  // `jump`, the first of them does not follow what came before: a new connection's audio)
  jump = null, // { atS }: a chunk whose audio does not follow the previous one
  actions = [], // [{ atS, run(buffer) }]: what a person does meanwhile
}) {
  const buffer = new JitterBuffer({ streamRate, channels, outputRate, targetMs });
  const chunkFrames = Math.round(streamRate / 50);
  const totalOut = Math.round(seconds * outputRate);
  const out = Array.from({ length: channels }, () => new Float32Array(totalOut));
  const quantum = Array.from({ length: channels }, () => new Float32Array(QUANTUM));
  let produced = 0; // stream frames produced so far
  let phase = 0;
  const events = [];
  for (let o = 0; o < totalOut; o += QUANTUM) {
    const nowS = o / outputRate;
    const producedChunks = Math.floor((nowS * streamRate * producerSpeed) / chunkFrames);
    const due = producedChunks - (producedChunks % batch);
    const paused = pause && nowS >= pause.atS && nowS < pause.atS + pause.forMs / 1000;
    while (!paused && produced / chunkFrames < due) {
      const chunkStartS = produced / (streamRate * producerSpeed);
      let discontinuity = false;
      if (pause?.jump && nowS >= pause.atS && !pause.jumped) {
        pause.jumped = true;
        discontinuity = true;
        phase += Math.PI / 2;
      }
      if (jump && chunkStartS >= jump.atS && !jump.done) {
        jump.done = true;
        discontinuity = true;
        phase += Math.PI / 2; // a quarter cycle of the tone goes missing
      }
      const samples = new Int16Array(chunkFrames * channels);
      for (let f = 0; f < chunkFrames; f++) {
        const v = Math.round(amplitude * 32767 * Math.sin(phase));
        phase += (2 * Math.PI * freq) / streamRate;
        for (let c = 0; c < channels; c++) samples[f * channels + c] = v;
      }
      buffer.write(samples, discontinuity);
      produced += chunkFrames;
    }
    for (const action of actions) {
      if (!action.done && nowS >= action.atS) {
        action.done = true;
        action.run(buffer);
      }
    }
    buffer.render(quantum, QUANTUM);
    for (const e of buffer.events) events.push({ ...e, atS: nowS });
    buffer.events.length = 0;
    for (let c = 0; c < channels; c++) out[c].set(quantum[c].subarray(0, Math.min(QUANTUM, totalOut - o)), o);
  }
  return { buffer, out, events };
}

/** The steepest a sine of this frequency and amplitude moves between samples, with 10% room. */
const sineStep = (freq, amplitude, rate) => 1.1 * sineStepBound([{ amplitude, hz: freq }], rate);

test('playback starts once the buffer reaches its target and then never runs dry', () => {
  const { buffer, out } = simulate({ seconds: 5 });
  assert.equal(buffer.stats.underruns, 0);
  const firstSound = out[0].findIndex((v) => v !== 0);
  assert.ok(firstSound > 0, 'silent while filling');
  // The first output lands after ~target ms of audio arrived (plus at most one chunk).
  assert.ok(Math.abs(firstSound / 44100 - 0.08) <= 0.021, `started at ${firstSound / 44100} s`);
  assert.ok(Math.abs(buffer.avgFillMs - 80) <= 8, `average fill ${buffer.avgFillMs} ms`);
  assert.ok(maxStep(out[0], firstSound) <= sineStep(440, 0.25, 44100), 'no clicks');
});

test('a 48 kHz stream comes out at its own pitch from a 44.1 kHz output', () => {
  const { out } = simulate({ streamRate: 48000, outputRate: 44100, freq: 1000, channels: 1, seconds: 4 });
  const steady = out[0].subarray(44100, 4 * 44100);
  const f = dominantFrequency(steady, 44100);
  assert.ok(Math.abs(f - 1000) <= 1, `dominant ${f} Hz`);
  assert.ok(maxStep(steady) <= sineStep(1000, 0.25, 44100), 'resampling stays smooth');
});

test('a 22.05 kHz stream is resampled up to a 48 kHz output at its own pitch', () => {
  const { out } = simulate({ streamRate: 22050, outputRate: 48000, freq: 440, channels: 1, seconds: 4 });
  const f = dominantFrequency(out[0].subarray(48000, 4 * 48000), 48000);
  assert.ok(Math.abs(f - 440) <= 0.5, `dominant ${f} Hz`);
});

test('an underrun fades out and back in without a click, is counted, and reports its silence', () => {
  const { buffer, out, events } = simulate({ seconds: 3, pause: { atS: 1, forMs: 300 } });
  assert.equal(buffer.stats.underruns, 1);
  assert.deepEqual(events.map((e) => e.type), ['underrun', 'resumed']);
  // 300 ms without chunks minus the ~80 ms that were buffered; the rest of the outage is late
  // audio played afterwards.
  const silentMs = events[1].silentMs;
  assert.ok(silentMs > 180 && silentMs < 320, `silent ${silentMs} ms`);
  const fadeStep = 0.25 / 128 + sineStep(440, 0.25, 44100);
  assert.ok(maxStep(out[0], 44100 / 2) <= fadeStep, `max step ${maxStep(out[0], 44100 / 2)}`);
});

test('lost audio is joined with a fade, not a click', () => {
  const { out } = simulate({ seconds: 3, jump: { atS: 1.5 } });
  const step = maxStep(out[0], 44100);
  assert.ok(step <= 0.25 / 64 + sineStep(440, 0.25, 44100), `max step ${step}`);
});

test('a join that arrives just as the buffer runs low is faded too, not clicked', () => {
  // A move to another instance: the old connection goes quiet, and the new one's first audio
  // (which does not follow the old) comes when the buffer is almost empty, often while the
  // underrun's own fade-out is playing. Swept across that moment, one output quantum at a time.
  const bound = 0.25 / 64 + sineStep(440, 0.25, 44100);
  const clicks = [];
  for (let quietMs = 40; quietMs <= 90; quietMs += 1) {
    const { out } = simulate({ seconds: 1.6, pause: { atS: 1, forMs: quietMs, jump: true } });
    const step = maxStep(out[0], 44100 / 2);
    if (step > bound) clicks.push(`${quietMs} ms quiet: step ${step.toFixed(3)}`);
  }
  assert.deepEqual(clicks, [], `bound ${bound.toFixed(4)}`);
});

test('chunks arriving 60 ms at a time (a batching server) play at the default target, unbroken', () => {
  const { buffer, out } = simulate({ seconds: 30, batch: 3 });
  assert.equal(buffer.stats.underruns, 0);
  assert.equal(buffer.stats.trimmedFrames, 0, 'bunched arrivals are not mistaken for a backlog');
  assert.ok(Math.abs(buffer.avgFillMs - 80) <= 8, `average fill ${buffer.avgFillMs} ms`);
  const firstSound = out[0].findIndex((v) => v !== 0);
  assert.ok(maxStep(out[0], firstSound) <= sineStep(440, 0.25, 44100), 'no clicks');
});

test('60 ms batches need a target of about 70 ms: below that the buffer runs dry (README)', () => {
  assert.equal(simulate({ seconds: 30, batch: 3, targetMs: 70 }).buffer.stats.underruns, 0);
  assert.ok(simulate({ seconds: 30, batch: 3, targetMs: 60 }).buffer.stats.underruns > 0);
});

test('chunks sent one at a time play unbroken at a 30 ms target, which 60 ms batches run dry (BENCHMARKS.md)', () => {
  // Why the server sends every chunk as it is produced below 200 listeners: the page's buffer,
  // and so the latency to the speaker, can be well under what 60 ms groups need.
  const { buffer, out } = simulate({ seconds: 30, targetMs: 30 });
  assert.equal(buffer.stats.underruns, 0);
  assert.ok(Math.abs(buffer.avgFillMs - 30) <= 8, `average fill ${buffer.avgFillMs} ms`);
  const firstSound = out[0].findIndex((v) => v !== 0);
  assert.ok(maxStep(out[0], firstSound) <= sineStep(440, 0.25, 44100), 'no clicks');
  assert.ok(simulate({ seconds: 30, batch: 3, targetMs: 30 }).buffer.stats.underruns > 0);
});

test('a sender clock 0.2% fast is absorbed by speed alone, within the 0.3% limit', () => {
  const { buffer } = simulate({ seconds: 120, producerSpeed: 1.002 });
  assert.equal(buffer.stats.underruns, 0);
  assert.equal(buffer.stats.trimmedFrames, 0);
  assert.ok(buffer.speed > 1.0015 && buffer.speed <= 1.003, `speed ${buffer.speed}`);
  assert.ok(Math.abs(buffer.avgFillMs - 80) <= 8, `average fill ${buffer.avgFillMs} ms`);
});

test('a sender clock 0.2% slow is absorbed by slowing down, without underruns', () => {
  const { buffer } = simulate({ seconds: 120, producerSpeed: 0.998 });
  assert.equal(buffer.stats.underruns, 0);
  assert.ok(buffer.speed < 0.9985 && buffer.speed >= 0.997, `speed ${buffer.speed}`);
  assert.ok(Math.abs(buffer.avgFillMs - 80) <= 8, `average fill ${buffer.avgFillMs} ms`);
});

test('a sender far faster than speed can absorb is trimmed, so latency stays bounded', () => {
  const { buffer } = simulate({ seconds: 30, producerSpeed: 1.05 });
  assert.equal(buffer.stats.underruns, 0);
  assert.ok(buffer.stats.trimmedFrames > 0);
  assert.ok(buffer.fillMs < 80 + 40 + 20 + 15, `fill ${buffer.fillMs} ms`);
});

test('audio piled up before playback starts is dropped down to target, not played late', () => {
  const buffer = new JitterBuffer({ streamRate: 44100, channels: 1, outputRate: 44100, targetMs: 80 });
  buffer.write(new Int16Array(44100).fill(1000)); // a whole second at once
  const quantum = [new Float32Array(QUANTUM)];
  buffer.render(quantum, QUANTUM);
  assert.ok(Math.abs(buffer.fillMs - 80) < 5, `fill ${buffer.fillMs} ms`);
  assert.ok(buffer.snapshot().staleDroppedMs > 900);
  assert.equal(buffer.stats.trimmedFrames, 0, 'a stale start is not a trim');
});

test('the rest of a burst that arrives after playback started is dropped as stale, not as a trim', () => {
  const buffer = new JitterBuffer({ streamRate: 44100, channels: 1, outputRate: 44100, targetMs: 80 });
  const chunk = () => new Int16Array(882).fill(1000);
  const quantum = [new Float32Array(QUANTUM)];
  for (let i = 0; i < 4; i++) buffer.write(chunk()); // the target's worth arrives first…
  buffer.render(quantum, QUANTUM);
  assert.equal(buffer.playing, true);
  for (let i = 0; i < 6; i++) buffer.write(chunk()); // …then the rest of a 200 ms burst
  for (let i = 0; i < 250; i++) {
    if (i % 7 === 0) buffer.write(chunk()); // and live chunks as usual (~20 ms each)
    buffer.render(quantum, QUANTUM);
  }
  // Within two trim windows (0.5 s) the fill is back near target.
  assert.ok(buffer.fillMs < 80 + 40, `fill ${buffer.fillMs} ms`);
  assert.ok(buffer.snapshot().staleDroppedMs > 60, `stale ${buffer.snapshot().staleDroppedMs} ms`);
  assert.equal(buffer.stats.trimmedFrames, 0);
});

test('flush fades out and waits for new audio without counting an underrun', () => {
  const { buffer } = simulate({ seconds: 1 });
  buffer.flush();
  const quantum = [new Float32Array(QUANTUM), new Float32Array(QUANTUM)];
  buffer.render(quantum, QUANTUM);
  assert.ok(Math.abs(quantum[0][QUANTUM - 1]) < 0.01, 'faded to silence within one quantum');
  buffer.render(quantum, QUANTUM);
  assert.ok(quantum[0].every((v) => v === 0));
  assert.equal(buffer.playing, false);
  assert.equal(buffer.stats.underruns, 0);
  assert.equal(buffer.fill, 0);
});

test('Stop while an underrun is fading out still drops the queue', () => {
  const buffer = new JitterBuffer({ streamRate: 44100, channels: 1, outputRate: 44100, targetMs: 80 });
  // Half quanta, so that the 128-frame fade-out is still under way between two calls.
  const half = [new Float32Array(QUANTUM / 2)];
  buffer.write(new Int16Array(Math.ceil(44100 * 0.08) + 200).fill(1000));
  for (let i = 0; i < 200 && buffer.afterFadeOut !== 'starve'; i++) buffer.render(half, QUANTUM / 2);
  assert.equal(buffer.afterFadeOut, 'starve', 'caught in the middle of the fade');
  buffer.flush();
  buffer.render(half, QUANTUM / 2);
  buffer.render(half, QUANTUM / 2);
  assert.equal(buffer.playing, false);
  assert.equal(buffer.fill, 0, 'nothing left to play on the next Start');
  assert.equal(buffer.stats.underruns, 0);
});

test('levels report the peak and RMS of each channel', () => {
  const { buffer } = simulate({ seconds: 1, amplitude: 0.25 });
  const { peak, rms } = buffer.takeLevels();
  assert.equal(peak.length, 2);
  assert.ok(Math.abs(peak[0] - 0.25) < 0.005, `peak ${peak[0]}`);
  // The simulation's first 80 ms are silence and a fade-in, so RMS sits just under A/√2.
  assert.ok(rms[0] > 0.16 && rms[0] < 0.177, `rms ${rms[0]}`);
});

test('a raised target pauses briefly to refill and then holds; a lowered one trims down', () => {
  const fills = {};
  const { buffer, out, events } = simulate({
    seconds: 6,
    channels: 1,
    actions: [
      { atS: 2, run: (b) => b.setTarget(300) },
      { atS: 3.5, run: (b) => (fills.raised = b.avgFillMs) },
      { atS: 4, run: (b) => b.setTarget(60) },
    ],
  });
  assert.ok(Math.abs(fills.raised - 300) < 25, `after raising: average fill ${fills.raised} ms`);
  assert.ok(buffer.fillMs < 60 + 40 + 20, `after lowering: fill ${buffer.fillMs} ms`);
  assert.equal(buffer.stats.underruns, 0, 'a pause that was asked for is not an underrun');
  assert.deepEqual(events, []);
  // The refill pause is about the difference in targets, faded at both ends.
  const silent = out[0].subarray(2 * 44100, 3 * 44100).filter((v) => v === 0).length / 44.1;
  assert.ok(silent > 180 && silent < 260, `paused ${silent} ms`);
  assert.ok(maxStep(out[0], 44100) <= 0.25 / 128 + sineStep(440, 0.25, 44100), 'no clicks');
});

test('targets are kept within 10 ms and 2 s', () => {
  const buffer = new JitterBuffer({ streamRate: 44100, channels: 1, outputRate: 44100, targetMs: 80 });
  buffer.setTarget(5);
  assert.equal(buffer.targetMs, 10);
  buffer.setTarget(60_000);
  assert.equal(buffer.targetMs, 2000);
});

test('a wait of more than 50 ms between calls for audio while playing is counted as a hold, with its time', () => {
  const holds = new HoldWatch();
  let now = 1_000_000;
  const call = (afterMs, playing = true) => holds.tick((now += afterMs), playing);
  for (let i = 0; i < 100; i++) call(i % 8 === 0 ? 20 : 3); // quanta in bursts, as WebKit calls
  call(45); // a long burst, but no hold
  assert.deepEqual(holds.snapshot(), { holds: 0, heldMs: 0, recentHolds: [] });
  call(150);
  call(3);
  call(80);
  assert.deepEqual(holds.snapshot(), {
    holds: 2,
    heldMs: 230,
    recentHolds: [
      { atMs: now - 83, ms: 150 },
      { atMs: now, ms: 80 },
    ],
  });
});

test('a context suspended on Stop, or a wait while not playing, is not a hold; only the last 16 are kept', () => {
  const holds = new HoldWatch();
  let now = 0;
  holds.tick(now, true);
  holds.tick((now += 30_000), true); // resumed after a Stop: suspended, not held
  holds.tick((now += 300), false); // held while the buffer waited to fill: nothing was heard
  assert.equal(holds.snapshot().holds, 0);
  for (let i = 0; i < 20; i++) holds.tick((now += 60 + i), true);
  const { holds: count, recentHolds } = holds.snapshot();
  assert.equal(count, 20);
  assert.deepEqual(recentHolds.map((h) => h.ms), Array.from({ length: 16 }, (_, i) => 64 + i));
});
