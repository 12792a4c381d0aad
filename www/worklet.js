// earshot AudioWorklet: the jitter buffer between arriving chunks and the sound card. Owns the
// ring of stream frames, waiting for the target fill before playing, resampling from the stream
// rate to the context rate, drift correction (a small speed change, then trimming), fades that
// keep underruns, trims and joins click-free, per-channel levels, and the times the browser held
// up the audio thread. Runs on the audio thread: process() allocates nothing but a note of such a
// hold, and reports to the page only every ~50 ms.

/** Length of every fade (out before an underrun or trim, in after), in output frames: one render
 * quantum, ~3 ms, short enough to hide nothing and long enough to never click. */
const FADE_FRAMES = 128;
/** Largest speed change for drift correction: ±0.3% moves pitch by 5 cents, below what ears
 * notice on music, and still removes 3 ms of excess latency per second. */
const MAX_SPEED_CHANGE = 0.003;
/** Speed change per ms of average fill away from target (the proportional part: alone, it
 * would leave the fill off target by as much as the clocks differ). */
const SPEED_PER_MS = 0.0001;
/** Speed change per ms of error per second (the integral part: learns the clocks' ratio, so
 * the fill settles on target; slow, ~40 s, so it never overshoots). */
const SPEED_PER_MS_S = 0.0000025;
/** Fill error ignored by drift correction (the fill saws up and down by a chunk anyway). */
const DEADBAND_MS = 4;
/** How fast the speed may move per second, so corrections glide instead of wobbling. */
const SPEED_SLEW_PER_S = 0.004;
/** Time constant of the average fill that drift correction steers on. */
const FILL_AVERAGE_S = 2;
/** The fill is trimmed back to target when even its lowest point over a trim window stays this
 * far past target (at least; half the target for large targets). The lowest point, not the
 * average, so bunched arrivals on a jittery network never cause a trim, while a burst does. */
const TRIM_MARGIN_MS = 40;
const TRIM_WINDOW_S = 0.25;
/** A raised target further than this above the fill pauses playback to refill at once. */
const RAISE_PAUSE_MS = 20;
/** A trim within this long of playback starting drops the tail of the burst, not drift. */
const STARTUP_S = 1;
const REPORT_EVERY_S = 0.05;
/** Frames of lookahead the cubic interpolator reads past the read position. */
const LOOKAHEAD = 2;
/** A wait longer than this between two of the browser's calls for audio is its audio thread held
 * up (by the machine, or by the browser). A call comes every render quantum (~3 ms), often in
 * bursts; WebKitGTK here waits up to ~45 ms between bursts now and then, and plays on. A longer
 * hold is heard once it outlasts the browser's own output buffer: the sound card then plays the
 * browser's silence, not the stream's, and the page's buffer never sees it. */
const HELD_MS = 50;
/** A longer wait is a suspended context (Stop, an iOS interruption), not a held thread. */
const SUSPENDED_MS = 2000;
/** Holds kept with their times, for the page (and the tests that line them up with a recording). */
const HOLDS_KEPT = 16;

export class JitterBuffer {
  constructor({ streamRate, channels, outputRate, targetMs = 80, capacitySeconds = 4 }) {
    this.streamRate = streamRate;
    this.channels = channels;
    this.outputRate = outputRate;
    let capacity = 1024;
    while (capacity < streamRate * capacitySeconds) capacity *= 2;
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.ring = Array.from({ length: channels }, () => new Float32Array(capacity));
    this.ratio = streamRate / outputRate;
    this.setTarget(targetMs);
    this.writeIndex = 0; // frames ever written
    this.readPos = 0; // fractional frame position of the next output frame
    this.playing = false;
    this.gain = 0; // fade envelope
    this.fade = 0; // +1 fading in, −1 fading out, 0 steady
    this.afterFadeOut = null; // 'starve' | 'trim' | 'flush' | 'rebuffer'
    this.speed = 1;
    this.drift = 0; // learned speed offset: the ratio of the sender's clock to the sound card's
    this.avgFillMs = 0;
    this.underrunning = false;
    this.playedAtStart = 0;
    this.resetTrimWindow();
    this.stats = { underruns: 0, silentFrames: 0, trimmedFrames: 0, staleFrames: 0, playedFrames: 0, renderedFrames: 0, overflowFrames: 0 };
    this.peak = new Float32Array(channels);
    this.sumSquares = new Float64Array(channels);
    this.levelFrames = 0;
    this.events = []; // 'underrun' / 'resumed' notes for the page, drained by the processor
  }

  setTarget(ms) {
    const raised = ms > (this.targetMs ?? Infinity);
    this.targetMs = Math.min(2000, Math.max(10, ms));
    this.targetFrames = (this.targetMs * this.streamRate) / 1000;
    this.trimFrames = this.targetFrames + (Math.max(TRIM_MARGIN_MS, this.targetMs / 2) * this.streamRate) / 1000;
    // A target raised far past the fill would take minutes to reach by slowing down; the person
    // who raised it wants it now, so pause (with a fade) until the buffer holds it. A lowered
    // target is reached by the trim, within half a second.
    if (raised && this.playing && this.fill < this.targetFrames - (RAISE_PAUSE_MS * this.streamRate) / 1000) {
      this.fadeOut('rebuffer');
    }
  }

  /** Unplayed frames in the ring. */
  get fill() {
    return this.writeIndex - this.readPos;
  }

  get fillMs() {
    return (1000 * Math.max(0, this.fill)) / this.streamRate;
  }

  /**
   * Appends interleaved s16 samples. `discontinuity` marks audio that does not follow what is
   * already queued (lost chunks, another connection): the join is faded out and in so it does
   * not click, and while waiting to play, stale leftovers are dropped.
   */
  write(samples, discontinuity = false) {
    const channels = this.channels;
    const frames = Math.floor(samples.length / channels);
    if (frames === 0) return;
    if (discontinuity && !this.playing) this.readPos = this.writeIndex;
    const overflow = this.writeIndex + frames + LOOKAHEAD + 1 - this.readPos - this.capacity;
    if (overflow > 0) {
      this.readPos += overflow;
      this.stats.overflowFrames += overflow;
    }
    // Fade whatever is left of the old audio, however little: a join that arrives as the buffer
    // runs low (often during the underrun's own fade-out) would otherwise play unfaded.
    const fadeJoin = discontinuity && this.playing && this.fill > LOOKAHEAD + 1;
    if (fadeJoin) this.fadeTail(Math.min(FADE_FRAMES, Math.floor(this.fill - LOOKAHEAD - 1)));
    for (let c = 0; c < channels; c++) {
      const ring = this.ring[c];
      let w = this.writeIndex;
      for (let f = 0; f < frames; f++, w++) ring[w & this.mask] = samples[f * channels + c] / 32768;
    }
    if (fadeJoin) this.fadeHead(this.writeIndex, Math.min(FADE_FRAMES, frames));
    this.writeIndex += frames;
  }

  fadeTail(n) {
    for (const ring of this.ring) {
      for (let i = 0; i < n; i++) ring[(this.writeIndex - n + i) & this.mask] *= 1 - (i + 1) / n;
    }
  }

  fadeHead(start, n) {
    for (const ring of this.ring) {
      for (let i = 0; i < n; i++) ring[(start + i) & this.mask] *= i / n;
    }
  }

  /** Drops everything queued (Stop): fades out if playing, then waits for new audio. */
  flush() {
    if (this.playing) this.fadeOut('flush');
    else this.readPos = this.writeIndex;
    this.underrunning = false;
  }

  /** Fades to silence, then does `then`; a later request (Stop during a trim) replaces it. */
  fadeOut(then) {
    this.fade = -1;
    this.afterFadeOut = then;
  }

  /** Output frames that can be produced from what is queued, at the current speed. */
  playableFrames() {
    const step = this.ratio * this.speed;
    return Math.max(0, Math.floor((this.writeIndex - LOOKAHEAD - 1 - this.readPos) / step));
  }

  /** Fills `outputs` (one Float32Array per channel) with `frames` frames. */
  render(outputs, frames) {
    this.stats.renderedFrames += frames;
    let f = 0;
    if (!this.playing) {
      if (this.fill >= this.targetFrames && this.fill > LOOKAHEAD + 1) this.startPlaying();
      else return this.silence(outputs, 0, frames);
    }
    this.steer(frames);
    if (this.afterFadeOut === null) {
      if (this.playableFrames() < frames + FADE_FRAMES) this.fadeOut('starve');
      else if (this.trimDue(frames)) this.fadeOut('trim');
    }
    const step = this.ratio * this.speed;
    const fadeStep = 1 / FADE_FRAMES;
    for (; f < frames; f++) {
      if (this.readPos + LOOKAHEAD + 1 > this.writeIndex) {
        // Out of audio mid-fade (less than a fade was left): finish as silence.
        this.gain = 0;
        this.endFadeOut(this.afterFadeOut ?? 'starve');
        if (!this.playing) return this.silence(outputs, f, frames);
      }
      this.interpolate(outputs, f);
      this.readPos += step;
      if (this.fade !== 0) {
        this.gain += this.fade * fadeStep;
        if (this.gain >= 1) {
          this.gain = 1;
          this.fade = 0;
        } else if (this.gain <= 0) {
          this.gain = 0;
          this.endFadeOut(this.afterFadeOut);
          if (!this.playing) return this.silence(outputs, f + 1, frames);
        }
      }
    }
    this.stats.playedFrames += frames;
    this.measure(outputs, 0, frames);
  }

  resetTrimWindow() {
    this.windowMinFill = Infinity;
    this.windowFrames = 0;
  }

  /** Whether the fill stayed far past target for a whole trim window. */
  trimDue(frames) {
    this.windowMinFill = Math.min(this.windowMinFill, this.fill);
    this.windowFrames += frames;
    if (this.windowFrames < TRIM_WINDOW_S * this.outputRate) return false;
    const due = this.windowMinFill > this.trimFrames;
    this.resetTrimWindow();
    return due;
  }

  startPlaying() {
    this.playing = true;
    this.playedAtStart = this.stats.playedFrames;
    this.resetTrimWindow();
    // Audio that piled up before playback could start (a reconnect's burst, or a sound card
    // that took its time to open) is stale: start at target from the newest end instead. The
    // output is silent here, so the jump needs no fade.
    const stale = Math.floor(this.fill - this.targetFrames);
    if (this.fill > this.trimFrames) {
      this.readPos += stale;
      this.stats.staleFrames += stale;
    }
    this.gain = 0;
    this.fade = 1;
    this.afterFadeOut = null;
    this.avgFillMs = this.fillMs;
    if (this.underrunning) {
      this.underrunning = false;
      this.events.push({ type: 'resumed', silentMs: (1000 * this.silentSinceUnderrun) / this.outputRate });
    }
  }

  endFadeOut(reason) {
    this.fade = 0;
    this.afterFadeOut = null;
    if (reason === 'trim') {
      const drop = Math.max(0, Math.floor(this.fill - this.targetFrames));
      this.readPos += drop;
      // Right after playback starts, the excess is the rest of a reconnect burst that was still
      // arriving when the target was reached: stale audio by design, not drift being corrected.
      if (this.stats.playedFrames - this.playedAtStart < STARTUP_S * this.outputRate) this.stats.staleFrames += drop;
      else this.stats.trimmedFrames += drop;
      this.avgFillMs = this.fillMs;
      this.resetTrimWindow();
      this.fade = 1; // back in, still playing
      return;
    }
    this.playing = false;
    if (reason === 'flush') {
      this.readPos = this.writeIndex;
      return;
    }
    if (reason === 'rebuffer') return; // asked for, so not an underrun
    this.stats.underruns += 1;
    this.underrunning = true;
    this.silentSinceUnderrun = 0;
    this.events.push({ type: 'underrun' });
  }

  silence(outputs, from, frames) {
    for (const out of outputs) out.fill(0, from, frames);
    if (this.underrunning) {
      this.stats.silentFrames += frames - from;
      this.silentSinceUnderrun += frames - from;
    }
    this.measure(outputs, 0, frames);
  }

  /** Four-point cubic Hermite interpolation: flat to well above 10 kHz at 44.1 kHz, cheap. */
  interpolate(outputs, f) {
    const pos = this.readPos;
    const i = Math.floor(pos);
    const t = pos - i;
    const m = this.mask;
    for (let c = 0; c < outputs.length; c++) {
      const ring = this.ring[c < this.channels ? c : 0];
      const xm1 = ring[(i - 1) & m];
      const x0 = ring[i & m];
      const x1 = ring[(i + 1) & m];
      const x2 = ring[(i + 2) & m];
      const a = (3 * (x0 - x1) - xm1 + x2) * 0.5;
      const b = 2 * x1 + xm1 - (5 * x0 + x2) * 0.5;
      const cc = (x1 - xm1) * 0.5;
      outputs[c][f] = (((a * t + b) * t + cc) * t + x0) * this.gain;
    }
  }

  /**
   * Drift correction: steer the average fill to target with a small speed change (the sender's
   * and the sound card's clocks never agree exactly), a PI controller on the average fill;
   * trims handle what speed cannot.
   */
  steer(frames) {
    const seconds = frames / this.outputRate;
    this.avgFillMs += (this.fillMs - this.avgFillMs) * Math.min(1, seconds / FILL_AVERAGE_S);
    const error = this.avgFillMs - this.targetMs;
    const beyond = Math.abs(error) > DEADBAND_MS ? error - Math.sign(error) * DEADBAND_MS : 0;
    const limit = (x) => Math.max(-MAX_SPEED_CHANGE, Math.min(MAX_SPEED_CHANGE, x));
    this.drift = limit(this.drift + beyond * SPEED_PER_MS_S * seconds);
    const wanted = 1 + limit(beyond * SPEED_PER_MS + this.drift);
    const slew = SPEED_SLEW_PER_S * seconds;
    this.speed += Math.max(-slew, Math.min(slew, wanted - this.speed));
  }

  measure(outputs, from, frames) {
    for (let c = 0; c < this.channels; c++) {
      const out = outputs[Math.min(c, outputs.length - 1)];
      let peak = this.peak[c];
      let sum = 0;
      for (let f = from; f < frames; f++) {
        const v = out[f];
        sum += v * v;
        const a = v < 0 ? -v : v;
        if (a > peak) peak = a;
      }
      this.peak[c] = peak;
      this.sumSquares[c] += sum;
    }
    this.levelFrames += frames - from;
  }

  /** Peak and RMS per channel since the last call, as linear values. */
  takeLevels() {
    const peak = Array.from(this.peak);
    const rms = Array.from(this.sumSquares, (s) => Math.sqrt(s / Math.max(1, this.levelFrames)));
    this.peak.fill(0);
    this.sumSquares.fill(0);
    this.levelFrames = 0;
    return { peak, rms };
  }

  snapshot() {
    const toMs = (frames, rate) => (1000 * frames) / rate;
    return {
      playing: this.playing,
      fillMs: this.fillMs,
      averageFillMs: this.avgFillMs,
      targetMs: this.targetMs,
      speed: this.speed,
      underruns: this.stats.underruns,
      silentMs: toMs(this.stats.silentFrames, this.outputRate),
      trimmedMs: toMs(this.stats.trimmedFrames + this.stats.overflowFrames, this.streamRate),
      staleDroppedMs: toMs(this.stats.staleFrames, this.streamRate),
      playedFrames: this.stats.playedFrames,
      renderedFrames: this.stats.renderedFrames,
    };
  }
}

/**
 * Times the browser held up its audio thread while the stream played: Chromium counts its own
 * glitches (AudioContext.playbackStats), Firefox and WebKit do not, so the page measures the wall
 * clock between calls for audio, which every browser's worklet scope has (Date). Only while
 * playing: a context suspended on Stop is not a hold.
 */
export class HoldWatch {
  constructor({ heldMs = HELD_MS, suspendedMs = SUSPENDED_MS, kept = HOLDS_KEPT } = {}) {
    Object.assign(this, { heldMs, suspendedMs, kept });
    this.lastMs = null;
    this.count = 0;
    this.totalMs = 0;
    this.recent = []; // { atMs: wall clock when the thread ran again, ms: how long it was held }
  }

  /** Called at each call for audio with the wall clock; `playing` as it was when the call came. */
  tick(nowMs, playing) {
    const waitedMs = this.lastMs === null ? 0 : nowMs - this.lastMs;
    this.lastMs = nowMs;
    if (!playing || waitedMs <= this.heldMs || waitedMs > this.suspendedMs) return;
    this.count += 1;
    this.totalMs += waitedMs;
    this.recent.push({ atMs: nowMs, ms: waitedMs }); // rare, so the allocation does not matter
    if (this.recent.length > this.kept) this.recent.shift();
  }

  /** For the processor's report; postMessage copies it, so the list itself is handed over. */
  snapshot() {
    return { holds: this.count, heldMs: this.totalMs, recentHolds: this.recent };
  }
}

/** Stream samples are little-endian; an Int16Array reads them as such on every platform a
 * browser runs on today, and a big-endian one gets a byte-swapped copy. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function samplesOf(buffer, offset, count) {
  if (LITTLE_ENDIAN) return new Int16Array(buffer, offset, count);
  const view = new DataView(buffer, offset, count * 2);
  return Int16Array.from({ length: count }, (_, i) => view.getInt16(2 * i, true));
}

// Registered only inside an AudioWorkletGlobalScope; node imports this file to test the buffer.
if (typeof registerProcessor === 'function') {
  class EarshotProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const { streamRate, channels, targetMs } = options.processorOptions;
      this.buffer = new JitterBuffer({ streamRate, channels, outputRate: sampleRate, targetMs });
      this.holds = new HoldWatch();
      this.sinceReport = 0;
      this.reportEvery = Math.round(REPORT_EVERY_S * sampleRate);
      this.port.onmessage = (event) => this.onMessage(event.data);
    }

    onMessage(message) {
      switch (message.type) {
        case 'chunk':
          this.buffer.write(samplesOf(message.buffer, message.offset, message.samples), message.discontinuity);
          break;
        case 'target':
          this.buffer.setTarget(message.ms);
          break;
        case 'flush':
          this.buffer.flush();
          break;
        case 'format': {
          const { streamRate, channels } = message;
          const { targetMs, stats } = this.buffer;
          this.buffer = new JitterBuffer({ streamRate, channels, outputRate: sampleRate, targetMs });
          this.buffer.stats = stats; // counters span the whole session, not one format
          break;
        }
        default:
          break;
      }
    }

    process(_inputs, outputs) {
      const output = outputs[0];
      this.holds.tick(Date.now(), this.buffer.playing);
      this.buffer.render(output, output[0].length);
      this.sinceReport += output[0].length;
      if (this.buffer.events.length) {
        // `wallMs` says when it happened: the page learns of it only when its main thread
        // is free, which a long task can put off by hundreds of ms.
        const wallMs = Date.now();
        for (const event of this.buffer.events) this.port.postMessage({ ...event, time: currentTime, wallMs });
        this.buffer.events.length = 0;
      }
      if (this.sinceReport >= this.reportEvery) {
        this.sinceReport = 0;
        this.port.postMessage({ type: 'stats', time: currentTime, ...this.buffer.snapshot(), ...this.holds.snapshot(), levels: this.buffer.takeLevels() });
      }
      return true;
    }
  }
  registerProcessor('earshot-player', EarshotProcessor);
}
