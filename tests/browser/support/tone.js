// What earshot's `tone:` source sounds like at the sound card, and the checks the browser tests
// make on a recording of it: the pitch and level of the tone, no silent block, no click.
//
// The checks judge the page, so they leave out a recording's output gaps (see pulse.js): the
// moments the sound server logged that the browser's stream ran dry and played silence in its
// place, because the machine was too busy to run the browser's audio threads in time. Those
// gaps click, and are not the page's doing; everything outside them is checked.

import assert from 'node:assert/strict';

import { blockLevels, dominantFrequency, median, silentRuns, sineStepBound, steepest } from './audio.js';

/** A 440 Hz sine with a 0.25 peak: RMS 0.25/√2, −15.05 dBFS (the 1 kHz marker beeps in 50 ms of
 * each second do not move the median of 20 ms blocks). */
const TONE_HZ = 440;
export const TONE_RMS_DB = -15.05;
/** The 20 ms blocks the levels are measured in, and the level below which one is a hole. */
export const BLOCK_MS = 20;
const SILENT_DB = -40;
const TONE_PARTS = [
  { amplitude: 0.25, hz: TONE_HZ },
  { amplitude: 0.25, hz: 1000 },
];

/** The steepest the tone (plus marker) moves between samples, with 15% room for the sound
 * server's resampler: a click jumps well past it. */
const clickBound = (rate) => 1.15 * sineStepBound(TONE_PARTS, rate);

/** Samples `from` to `to` (indices) of one channel of a recording, with the output gaps that
 * fall among them (indices into the part). */
export function part(recording, { channel = 0, from = 0, to = Infinity } = {}) {
  const all = recording.channels[channel];
  const end = Math.min(to, all.length);
  const gaps = (recording.outputGaps ?? [])
    .map((g) => ({ start: Math.max(0, g.start - from), end: Math.min(end, g.end) - from }))
    .filter((g) => g.start < g.end);
  return { samples: all.subarray(from, end), rate: recording.rate, gaps };
}

/** Silent 20 ms blocks, as runs ({ start, length } in blocks), less those inside output gaps. */
export function holesIn({ samples, rate, gaps }) {
  const size = Math.round((rate * BLOCK_MS) / 1000);
  const excused = (run) => gaps.some((g) => g.start <= run.start * size && (run.start + run.length) * size <= g.end);
  return silentRuns(blockLevels(samples, rate, BLOCK_MS), SILENT_DB).filter((run) => !excused(run));
}

/** The median level (dBFS) of a part's 20 ms blocks outside its output gaps, and how many blocks
 * that was `of` how many. */
export function levelOf({ samples, rate, gaps = [] }) {
  const size = Math.round((rate * BLOCK_MS) / 1000);
  const all = blockLevels(samples, rate, BLOCK_MS);
  const levels = all.filter((_, b) => !gaps.some((g) => g.start < (b + 1) * size && b * size < g.end));
  return { level: median(levels), blocks: levels.length, of: all.length };
}

/** The stretches of a part outside its output gaps (sample indices) at least `minMs` long. */
export function spansOf({ samples, rate, gaps = [] }, minMs = 10) {
  const spans = [];
  let from = 0;
  for (const gap of [...gaps].sort((a, b) => a.start - b.start)) {
    if (gap.start > from) spans.push({ start: from, end: gap.start });
    from = Math.max(from, gap.end);
  }
  if (samples.length > from) spans.push({ start: from, end: samples.length });
  return spans.filter((s) => s.end - s.start >= (rate * minMs) / 1000);
}

/** The tone's pitch (Hz), from the stretches outside output gaps: each gap is a jump in the
 * tone's phase, and a few dozen of them pull a single spectrum's peak off by several Hz. */
export function pitchOf(tone) {
  const spans = spansOf(tone);
  return spans.length > 0 ? dominantFrequency(tone.samples, tone.rate, spans) : NaN;
}

/** The tone at its pitch (±1%, measured outside output gaps; `hz` for `tone:?freq=HZ`) and
 * level (±1.5 dB, the median of the 20 ms blocks outside output gaps, which must be at least a
 * quarter of them); with `holes: false`, no silent block either (outside output gaps). */
export function assertTone(tone, what, { holes = true, hz = TONE_HZ } = {}) {
  const freq = pitchOf(tone);
  assert.ok(Math.abs(freq - hz) <= hz * 0.01, `${what}: dominant ${freq.toFixed(1)} Hz${gapsNote(tone)}`);
  const { level, blocks, of } = levelOf(tone);
  assert.ok(blocks > 0 && blocks >= of / 4, `${what}: only ${blocks} of ${of} blocks outside output gaps${gapsNote(tone)}`);
  assert.ok(Math.abs(level - TONE_RMS_DB) <= 1.5, `${what}: level ${level.toFixed(1)} dBFS${gapsNote(tone)}`);
  if (!holes) assert.deepEqual(holesIn(tone), [], `${what}: silent ${BLOCK_MS} ms blocks${gapsNote(tone)}`);
  return { freq, level, blocks };
}

/** No jump past the tone's steepest, outside output gaps. A failure says when: ms after `since`,
 * which was `sinceMs` before the first sample (by default, the first sample itself). */
export function assertNoClick(tone, what, { since = 'the start', sinceMs = 0 } = {}) {
  const { samples, rate } = tone;
  let worst = { step: 0, index: 0 };
  for (const { start, end } of spansOf(tone, 0)) {
    const found = steepest(samples, start, end);
    if (found.step > worst.step) worst = found;
  }
  if (worst.step <= clickBound(rate)) return;
  const atMs = Math.round((worst.index * 1000) / rate + sinceMs);
  assert.fail(
    `${what}: a click, a jump of ${worst.step.toFixed(3)} ${atMs} ms after ${since} ` +
      `(${clickShape(samples, rate, worst.index)})${gapsNote(tone, sinceMs, since)}`,
  );
}

/** What a click looks like, to tell its causes apart: the samples around it, and the exact
 * zeros before and after (a browser that missed its deadline plays a run of exact zeros; a
 * fade leaves none; a recording that dropped data joins two tones). */
function clickShape(samples, rate, index) {
  const around = Array.from(samples.subarray(Math.max(0, index - 3), index + 3), (v) => v.toFixed(3));
  const zeros = (from, step) => {
    let n = 0;
    for (let i = from; i >= 0 && i < samples.length && samples[i] === 0; i += step) n++;
    return ((n * 1000) / rate).toFixed(1);
  };
  return `samples ${around.join(' ')}; exact zeros: ${zeros(index - 1, -1)} ms before, ${zeros(index, 1)} ms after`;
}

/** The output gaps left out of a check, for its failure message. */
function gapsNote({ rate, gaps }, sinceMs = 0, since = 'the start') {
  if (gaps.length === 0) return '; the sound server logged no underrun of the browser';
  const ms = (i) => Math.round((i * 1000) / rate + sinceMs);
  return `; left out, as the sound server ran dry: ${gaps.map((g) => `${ms(g.start)}–${ms(g.end)}`).join(', ')} ms after ${since}`;
}
