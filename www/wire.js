// earshot wire format (PROTOCOL.md), as the page reads it: the 16-byte binary chunk header,
// control messages with their u64 fields kept exact, and wrap-safe sequence arithmetic.
// Pure functions with no DOM or WebSocket, so node's test runner can pin them directly.

/** Bytes before the samples in every audio message: u64 seq, u64 produced_us, little-endian. */
export const HEADER_BYTES = 16;

/** The u64 fields of control messages; JSON numbers lose precision past 2^53, so these are
 * re-read from the message text as BigInt. */
const U64_FIELDS = ['seq', 'from', 'to'];

/**
 * Reads an audio message's header. Returns null when the message is shorter than a header or
 * its sample bytes do not make whole frames, so a malformed message is dropped, not played.
 */
export function parseChunk(buffer, channels) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < HEADER_BYTES) return null;
  const sampleBytes = buffer.byteLength - HEADER_BYTES;
  const frameBytes = 2 * channels;
  if (frameBytes === 0 || sampleBytes % frameBytes !== 0) return null;
  const view = new DataView(buffer);
  return {
    seq: view.getBigUint64(0, true),
    producedUs: view.getBigUint64(8, true),
    frames: sampleBytes / frameBytes,
  };
}

/**
 * Parses a text message. Known u64 fields come back as BigInt, read from the text itself so a
 * sequence number near 2^64 survives; returns null for text that is not a JSON object.
 */
export function parseControl(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return null;
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return null;
  for (const field of U64_FIELDS) {
    if (typeof message[field] !== 'number') continue;
    const exact = new RegExp(`"${field}"\\s*:\\s*(\\d+)`).exec(text);
    message[field] = exact ? BigInt(exact[1]) : BigInt(Math.max(0, Math.round(message[field])));
  }
  return message;
}

/**
 * How far sequence number `b` is after `a`, as a signed BigInt: `(b − a) mod 2^64` read as a
 * two's-complement difference, so 2^64−1 → 0 is +1 and a repeated chunk is ≤ 0.
 */
export function seqAfter(a, b) {
  return BigInt.asIntN(64, BigInt.asUintN(64, b) - BigInt.asUintN(64, a));
}

/** Exact duration of one chunk in ms, from hello: chunk_frames / sample_rate (PROTOCOL.md). */
export function chunkDurationMs(hello) {
  return (1000 * hello.chunk_frames) / hello.sample_rate;
}

/** Checks a hello against what this page can play; returns a reason, or null when playable. */
export function unplayableReason(hello) {
  if (hello.version !== 1) return `protocol version ${hello.version} is not supported (need 1)`;
  if (hello.codec !== 'pcm_s16le') return `codec ${hello.codec} is not supported`;
  if (!(hello.sample_rate >= 8000 && hello.sample_rate <= 192000)) {
    return `sample rate ${hello.sample_rate} Hz is out of range`;
  }
  if (hello.channels !== 1 && hello.channels !== 2) return `${hello.channels} channels are not supported`;
  if (!(hello.chunk_frames > 0)) return 'hello has no chunk_frames';
  return null;
}
