// The player's output facts, without a browser: which browsers are asked for their output
// latency (Firefox can freeze the tab answering it; see asksOutputLatency in www/player.js), and
// which answers count (WebKit's 0 does not), and when the worklet's events happened.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Player, asksOutputLatency, outputLatency, workletEventTime } from '../../www/player.js';

const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Firefox/153.0';
const FIREFOX_ANDROID = 'Mozilla/5.0 (Android 15; Mobile; rv:153.0) Gecko/153.0 Firefox/153.0';
const CHROMIUM = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36';
const SAFARI = 'Mozilla/5.0 (iPhone; CPU iPhone OS 19_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/19.0 Mobile/15E148 Safari/604.1';

/** An AudioContext stand-in that counts the questions about its output latency. */
function context(seconds = 0.04) {
  const asked = { outputLatency: 0 };
  const ctx = {
    state: 'running',
    sampleRate: 48000,
    baseLatency: 0.01,
    get outputLatency() {
      asked.outputLatency += 1;
      return seconds;
    },
  };
  return { ctx, asked };
}

test('Firefox is never asked for its output latency, and the page says the sound card part is unknown', () => {
  for (const userAgent of [FIREFOX, FIREFOX_ANDROID]) {
    assert.equal(asksOutputLatency(userAgent), false, userAgent);
    const player = new Player({ userAgent });
    const { ctx, asked } = context();
    player.ctx = ctx;
    const output = player.output;
    assert.equal(output.outputLatencyMs, null);
    assert.equal(output.outputLatencyUnknown, 'not asked of this browser');
    assert.equal(output.baseLatencyMs, 10);
    assert.equal(asked.outputLatency, 0, 'outputLatency was read');
  }
});

test('other browsers are asked, and their output latency counts', () => {
  for (const userAgent of [CHROMIUM, SAFARI]) {
    assert.equal(asksOutputLatency(userAgent), true, userAgent);
    const player = new Player({ userAgent });
    const { ctx, asked } = context();
    player.ctx = ctx;
    const { outputLatencyMs, outputLatencyUnknown } = player.output;
    assert.deepEqual({ outputLatencyMs, outputLatencyUnknown }, { outputLatencyMs: 40, outputLatencyUnknown: null });
    assert.equal(asked.outputLatency, 1);
  }
});

test('an output latency of 0 (WebKit) or none is not reported, never a sound card without latency', () => {
  for (const seconds of [0, undefined, Number.NaN, -0.01, Infinity]) {
    assert.deepEqual(outputLatency(seconds), { outputLatencyMs: null, outputLatencyUnknown: 'not reported by this browser' }, String(seconds));
  }
  const player = new Player({ userAgent: SAFARI });
  const { ctx, asked } = context(0);
  player.ctx = ctx;
  const { outputLatencyMs, outputLatencyUnknown } = player.output;
  assert.deepEqual({ outputLatencyMs, outputLatencyUnknown }, { outputLatencyMs: null, outputLatencyUnknown: 'not reported by this browser' });
  assert.equal(asked.outputLatency, 1);
  assert.equal(outputLatency(0.025).outputLatencyMs, 25);
});

test('a worklet event is dated when the audio thread saw it, however long the main thread took to hear of it', () => {
  // Seen at wall clock 1000; the main thread, held by a long task, reads it 250 ms later, when
  // the page's clock says 50000.
  assert.equal(workletEventTime(1000, 50_000, 1250), 49_750);
  assert.equal(workletEventTime(1250, 50_000, 1250), 50_000);
  // A wall clock stepped back meanwhile (NTP) makes the wait negative: the event is placed now,
  // never after it.
  assert.equal(workletEventTime(1300, 50_000, 1250), 50_000);
});
