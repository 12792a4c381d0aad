// What earshot's `tone:` source sounds like at the sound card, and the checks the browser tests
// make on a recording of it: the pitch and level of the tone, no silent block, no click.

import assert from 'node:assert/strict';

import { blockLevels, dominantFrequency, median, silentRuns, sineStepBound, steepest } from './audio.js';

/** A 440 Hz sine with a 0.25 peak: RMS 0.25/√2, −15.05 dBFS (the 1 kHz marker beeps in 50 ms of
 * each second do not move the median of 20 ms blocks). */
export const TONE_HZ = 440;
export const TONE_RMS_DB = -15.05;
/** The 20 ms blocks the levels are measured in, and the level below which one is a hole. */
export const BLOCK_MS = 20;
export const SILENT_DB = -40;
const TONE_PARTS = [
  { amplitude: 0.25, hz: TONE_HZ },
  { amplitude: 0.25, hz: 1000 },
];

/** The steepest the tone (plus marker) moves between samples, with 15% room for the sound
 * server's resampler: a click jumps well past it. */
export const clickBound = (rate) => 1.15 * sineStepBound(TONE_PARTS, rate);

/** The tone at its pitch (±1%; `hz` for `tone:?freq=HZ`) and level (±1.5 dB); with
 * `holes: false`, no silent block either. */
export function assertTone(samples, rate, what, { holes = true, hz = TONE_HZ } = {}) {
  const freq = dominantFrequency(samples, rate);
  assert.ok(Math.abs(freq - hz) <= hz * 0.01, `${what}: dominant ${freq.toFixed(1)} Hz`);
  const levels = blockLevels(samples, rate, BLOCK_MS);
  const level = median(levels);
  assert.ok(Math.abs(level - TONE_RMS_DB) <= 1.5, `${what}: level ${level.toFixed(1)} dBFS`);
  if (!holes) assert.deepEqual(silentRuns(levels, SILENT_DB), [], `${what}: silent ${BLOCK_MS} ms blocks`);
  return { freq, level, blocks: levels.length };
}

/** No jump past the tone's steepest in `samples`. A failure says when: ms after `since`, which
 * was `sinceMs` before the first sample (by default, the first sample itself). */
export function assertNoClick(samples, rate, what, { since = 'the start', sinceMs = 0 } = {}) {
  const { step, index } = steepest(samples);
  const atMs = Math.round((index * 1000) / rate + sinceMs);
  assert.ok(step <= clickBound(rate), `${what}: a click, a jump of ${step.toFixed(3)} ${atMs} ms after ${since}`);
}
