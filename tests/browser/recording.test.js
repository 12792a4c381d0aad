// How a recording's checks leave out what is not the page's doing (support/pulse.js): overlapping
// gaps are joined, so a silence two of them cover between them counts as covered; a browser's
// holds of its audio thread become gaps of their own, up to the longest a busy machine explains;
// and the level and pitch are measured outside the gaps.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { leaveOutHolds, merged } from './support/pulse.js';
import { dominantFrequency } from './support/audio.js';
import { assertTone, holesIn, part, pitchOf } from './support/tone.js';

test('overlapping and touching gaps are joined, and gaps apart stay apart, in order', () => {
  const gaps = [
    { start: 500, end: 600 },
    { start: 100, end: 200 },
    { start: 150, end: 300 },
    { start: 300, end: 350 },
  ];
  assert.deepEqual(merged(gaps), [
    { start: 100, end: 350 },
    { start: 500, end: 600 },
  ]);
  assert.deepEqual(gaps[1], { start: 100, end: 200 }, 'the gaps given are left as they were');
});

test('a silent block two overlapping gaps cover between them is not a hole', () => {
  const rate = 1000;
  const samples = new Float32Array(1000).map((_, i) => 0.25 * Math.sin((2 * Math.PI * 440 * i) / rate));
  samples.fill(0, 400, 460); // three silent 20 ms blocks, 400–460
  const recording = { channels: [samples], rate, startMs: 0, outputGaps: merged([{ start: 380, end: 430 }, { start: 420, end: 480 }]) };
  assert.deepEqual(holesIn(part(recording)), []);
  const apart = { ...recording, outputGaps: [{ start: 380, end: 430 }] };
  assert.ok(holesIn(part(apart)).length > 0, 'one gap alone leaves the rest of the silence in');
});

test('a hold becomes a gap from before it began to after it ended, and a long one stays in', () => {
  const rate = 1000;
  const recording = { channels: [new Float32Array(3000)], rate, startMs: 10_000, outputGaps: [{ start: 0, end: 10 }] };
  const out = leaveOutHolds(
    recording,
    [
      { atMs: 11_200, ms: 150 }, // held 11 050–11 200
      { atMs: 12_900, ms: 700 }, // longer than a busy machine explains
    ],
    'a test',
  );
  assert.deepEqual(out.outputGaps, [
    { start: 0, end: 10 },
    { start: 1000, end: 1300 },
  ]);
  assert.deepEqual(out.heldOut, [{ atMs: 11_200, ms: 150 }], 'the holds it left out, for a test to tell');
});

test('the level is the median of the blocks outside the gaps, and a recording mostly left out fails', () => {
  const rate = 48000;
  const samples = new Float32Array(2 * rate).map((_, i) => 0.25 * Math.sin((2 * Math.PI * 440 * i) / rate));
  samples.fill(0, rate / 2, rate / 2 + 1.2 * rate); // 1.2 s of the 2 silent
  const tone = (gaps) => part({ channels: [samples], rate, startMs: 0, outputGaps: gaps });
  const { level } = assertTone(tone([{ start: rate / 2, end: rate / 2 + 1.2 * rate }]), 'left out');
  assert.ok(Math.abs(level - -15.05) < 0.1, `${level} dBFS`);
  assert.throws(() => assertTone(tone([]), 'kept in'), /kept in: level -Infinity dBFS/);
  assert.throws(() => assertTone(tone([{ start: 0, end: 1.6 * rate }]), 'mostly left out'), /only 20 of 100 blocks outside output gaps/);
});

test("a tone broken by dozens of dropouts is at its own pitch outside them, though not in one spectrum", () => {
  // 2 s of the 440 Hz tone where the sound card played 2–32 ms of silence 60 times and the tone
  // went on from where it stopped: each dropout jumps its phase, as a busy machine's do.
  const rate = 48000;
  const samples = new Float32Array(2 * rate);
  const gaps = [];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const starts = Array.from({ length: 60 }, () => Math.floor(random() * samples.length)).sort((a, b) => a - b);
  let played = 0;
  for (let i = 0, next = 0; i < samples.length; ) {
    if (next < starts.length && i >= starts[next]) {
      const length = Math.floor(rate * (0.002 + random() * 0.03));
      gaps.push({ start: i, end: Math.min(samples.length, i + length) });
      i += length;
      next++;
      continue;
    }
    samples[i++] = 0.25 * Math.sin((2 * Math.PI * 440 * played++) / rate);
  }
  const whole = dominantFrequency(samples, rate);
  assert.ok(Math.abs(whole - 440) > 2, `one spectrum of it all is off by more than 2 Hz: ${whole} Hz`);
  const pitch = pitchOf(part({ channels: [samples], rate, startMs: 0, outputGaps: gaps }));
  assert.ok(Math.abs(pitch - 440) < 0.1, `${pitch} Hz`);
});
