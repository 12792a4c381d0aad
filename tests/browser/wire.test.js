// The page's reading of the wire format (PROTOCOL.md): the little-endian u64 header, exact u64
// fields in control messages, and sequence arithmetic that survives wrapping at 2^64.

import assert from 'node:assert/strict';
import test from 'node:test';

import { HEADER_BYTES, chunkDurationMs, parseChunk, parseControl, seqAfter, unplayableReason } from '../../www/wire.js';

function message(seq, producedUs, samples) {
  const buffer = new ArrayBuffer(HEADER_BYTES + 2 * samples.length);
  const view = new DataView(buffer);
  view.setBigUint64(0, seq, true);
  view.setBigUint64(8, producedUs, true);
  samples.forEach((s, i) => view.setInt16(HEADER_BYTES + 2 * i, s, true));
  return buffer;
}

test('the header is two little-endian u64s, read exactly even above 2^53', () => {
  const seq = 2n ** 64n - 2n;
  const produced = 1_795_290_002_123_456n;
  const chunk = parseChunk(message(seq, produced, [1, -1, 2, -2]), 2);
  assert.deepEqual(chunk, { seq, producedUs: produced, frames: 2 });
});

test('messages shorter than a header or with partial frames are rejected', () => {
  assert.equal(parseChunk(new ArrayBuffer(15), 2), null);
  assert.equal(parseChunk(message(1n, 1n, [1, 2, 3]), 2), null, 'three samples are not whole stereo frames');
  assert.deepEqual(parseChunk(message(1n, 1n, []), 1), { seq: 1n, producedUs: 1n, frames: 0 });
});

test('sequence numbers in control messages stay exact past 2^53', () => {
  const m = parseControl('{"type":"skipped","from":18446744073709551610,"to":18446744073709551615}');
  assert.equal(m.from, 18446744073709551610n);
  assert.equal(m.to, 18446744073709551615n);
  const hello = parseControl('{"type":"hello","seq":5012,"instance":"a","sample_rate":44100}');
  assert.equal(hello.seq, 5012n);
  assert.equal(hello.sample_rate, 44100, 'other numbers stay numbers');
});

test('text that is not a JSON object is ignored, not thrown', () => {
  for (const text of ['', 'nope', '[1,2]', 'null', '42']) assert.equal(parseControl(text), null, text);
});

test('sequence distance wraps at 2^64 and repeats are not positive', () => {
  const max = 2n ** 64n - 1n;
  assert.equal(seqAfter(max, 0n), 1n);
  assert.equal(seqAfter(max - 1n, 2n), 4n);
  assert.equal(seqAfter(10n, 10n), 0n);
  assert.equal(seqAfter(10n, 7n), -3n);
  assert.equal(seqAfter(0n, max), -1n);
});

test('chunk duration is exact frames over rate, not the nominal chunk_ms', () => {
  assert.equal(chunkDurationMs({ chunk_frames: 882, sample_rate: 44100 }), 20);
  assert.ok(Math.abs(chunkDurationMs({ chunk_frames: 441, sample_rate: 22050 }) - 20) < 1e-9);
  assert.ok(Math.abs(chunkDurationMs({ chunk_frames: 221, sample_rate: 11025 }) - 20.045) < 0.001);
});

test('only streams the page can play are accepted', () => {
  const hello = { version: 1, codec: 'pcm_s16le', sample_rate: 48000, channels: 2, chunk_frames: 960 };
  assert.equal(unplayableReason(hello), null);
  assert.match(unplayableReason({ ...hello, version: 2 }), /version 2/);
  assert.match(unplayableReason({ ...hello, codec: 'opus' }), /codec opus/);
  assert.match(unplayableReason({ ...hello, channels: 6 }), /6 channels/);
});
