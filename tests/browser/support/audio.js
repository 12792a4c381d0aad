// Signal analysis for the tests: dominant frequency (windowed FFT with interpolated peak) and
// levels of short blocks, in dBFS. Plain JS so the suite needs nothing beyond playwright-core.

/** In-place radix-2 FFT of `re`/`im` (length a power of two). */
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const angle = (-2 * Math.PI) / len;
    const wr = Math.cos(angle);
    const wi = Math.sin(angle);
    for (let i = 0; i < n; i += len) {
      let cr = 1;
      let ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k;
        const b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci;
        const ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
        [cr, ci] = [cr * wr - ci * wi, cr * wi + ci * wr];
      }
    }
  }
}

/**
 * The strongest frequency in `samples` (floats), in Hz: Hann window, FFT zero-padded to at least
 * 2^17 points, then a Gaussian fit through the peak bin and its neighbours (exact for a Hann
 * window to far better than 0.1 Hz).
 *
 * With `spans` ([{ start, end }] sample indices), each span is windowed and transformed on its
 * own and their power spectra are summed: a tone broken by dropouts is measured by its unbroken
 * stretches, where the phase jumps at each break would otherwise pull the peak off by several Hz.
 */
export function dominantFrequency(samples, rate, spans = [{ start: 0, end: samples.length }]) {
  let n = 1 << 17;
  while (n < samples.length) n <<= 1;
  const power = new Float64Array(n / 2 + 1);
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  for (const { start, end } of spans) {
    re.fill(0);
    im.fill(0);
    const len = end - start;
    for (let i = 0; i < len; i++) re[i] = samples[start + i] * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (len - 1)));
    fft(re, im);
    for (let k = 0; k <= n / 2; k++) power[k] += re[k] * re[k] + im[k] * im[k];
  }
  let best = 1;
  for (let k = 2; k < n / 2; k++) if (power[k] > power[best]) best = k;
  // The log of a magnitude is half the log of a power: the fit's vertex is the same.
  const [a, b, c] = [power[best - 1], power[best], power[best + 1]].map((p) => Math.log(Math.max(p, 1e-24)));
  const offset = (a - c) / (2 * (a - 2 * b + c));
  return ((best + offset) * rate) / n;
}

export const toDb = (linear) => (linear > 0 ? 20 * Math.log10(linear) : -Infinity);

/** RMS level in dBFS of each consecutive block of `blockMs` (the last partial block dropped). */
export function blockLevels(samples, rate, blockMs = 20) {
  const size = Math.round((rate * blockMs) / 1000);
  const levels = [];
  for (let start = 0; start + size <= samples.length; start += size) {
    let sum = 0;
    for (let i = start; i < start + size; i++) sum += samples[i] * samples[i];
    levels.push(toDb(Math.sqrt(sum / size)));
  }
  return levels;
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs of consecutive blocks below `thresholdDb`: [{ start, length }] in blocks. */
export function silentRuns(levels, thresholdDb) {
  const runs = [];
  let start = -1;
  levels.forEach((db, i) => {
    if (db < thresholdDb && start < 0) start = i;
    if ((db >= thresholdDb || i === levels.length - 1) && start >= 0) {
      runs.push({ start, length: (db < thresholdDb ? i + 1 : i) - start });
      start = -1;
    }
  });
  return runs;
}

/** Writes float channels as a 16-bit WAV, so a failing recording can be listened to. */
export function wavBytes(channels, rate) {
  const frames = channels[0].length;
  const n = channels.length;
  const out = Buffer.alloc(44 + frames * n * 2);
  out.write('RIFF', 0);
  out.writeUInt32LE(36 + frames * n * 2, 4);
  out.write('WAVEfmt ', 8);
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20);
  out.writeUInt16LE(n, 22);
  out.writeUInt32LE(rate, 24);
  out.writeUInt32LE(rate * n * 2, 28);
  out.writeUInt16LE(n * 2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36);
  out.writeUInt32LE(frames * n * 2, 40);
  for (let f = 0; f < frames; f++) {
    for (let c = 0; c < n; c++) {
      const v = Math.max(-32768, Math.min(32767, Math.round(channels[c][f] * 32768)));
      out.writeInt16LE(v, 44 + 2 * (f * n + c));
    }
  }
  return out;
}

/** Largest jump between neighbouring samples (of `samples[from..to]`): a click is a jump far above the signal's own. */
export function maxStep(samples, from = 0, to = samples.length) {
  return steepest(samples, from, to).step;
}

/** The largest jump between neighbouring samples and the index of the sample it lands on. */
export function steepest(samples, from = 0, to = samples.length) {
  let step = 0;
  let index = from;
  for (let i = from + 1; i < to; i++) {
    const d = Math.abs(samples[i] - samples[i - 1]);
    if (d > step) [step, index] = [d, i];
  }
  return { step, index };
}

/** The steepest a sum of sines (peak amplitudes and frequencies) can move between samples. */
export function sineStepBound(parts, rate) {
  return parts.reduce((sum, { amplitude, hz }) => sum + amplitude * 2 * Math.sin((Math.PI * hz) / rate), 0);
}
