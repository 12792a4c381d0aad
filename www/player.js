// earshot player: the Web Audio graph (AudioContext, the jitter-buffer worklet node, an analyser
// for the waveform, the volume gain) and the feature check that explains an insecure origin
// instead of failing silently. The AudioContext is created or resumed inside the user's click,
// which is what Chrome, Firefox and Safari (desktop and iOS) require before sound may play.

import { nowMs } from './connection.js';

/** Why this browser cannot play here, or null when it can. */
export function unsupportedReason(win = globalThis) {
  const Context = win.AudioContext || win.webkitAudioContext;
  if (!Context) return 'no-webaudio';
  // audioWorklet exists only in secure contexts: HTTPS, localhost and 127.0.0.1.
  if (typeof win.AudioWorkletNode !== 'function' || !('audioWorklet' in Context.prototype)) {
    return win.isSecureContext === false ? 'insecure-origin' : 'no-worklet';
  }
  return null;
}

/** Stream audio kept while the worklet module loads, so a fast hello loses nothing. */
const MAX_QUEUED_CHUNKS = 100;
/** Time for the worklet's fade-out (~3 ms) to play before the context is suspended on Stop. */
const STOP_FADE_MS = 60;
/** Volume and mute glide over ~10 ms so a change never clicks. */
const GAIN_TIME_CONSTANT_S = 0.01;

/**
 * Whether asking this browser for `AudioContext.outputLatency` is safe. Firefox answers the
 * first time with a synchronous call to its audio process. The stacks of a frozen tab show that
 * call waiting, the tab's audio graph thread waiting for a lock, and Firefox's audio process
 * inside PulseAudio's audio callback waiting for the tab while its call handler waits for
 * PulseAudio's lock: neither side can go on, and the tab freezes for good. It happened in about
 * 1 run in 5 of the Firefox test, and in none of 15 without the question; see README,
 * "Troubleshooting". So the page does not ask Firefox.
 */
export function asksOutputLatency(userAgent = globalThis.navigator?.userAgent ?? '') {
  return !/\bFirefox\//.test(userAgent);
}

/**
 * The sound card's part of the output latency, in ms, or null with the reason it is unknown (not
 * asked of Firefox, see asksOutputLatency; here, not reported). WebKit has the attribute but answers
 * 0 while it plays through a sound server with tens of ms of its own (WebKitGTK 2.50 on
 * PulseAudio, in plays-in-webkit.test.js); no sound card has none, so 0 is taken as not known,
 * like a missing attribute, rather than shown as a complete latency to the speaker.
 */
export function outputLatency(seconds) {
  if (!(Number.isFinite(seconds) && seconds > 0)) {
    return { outputLatencyMs: null, outputLatencyUnknown: 'not reported by this browser' };
  }
  return { outputLatencyMs: 1000 * seconds, outputLatencyUnknown: null };
}

const NOT_ASKED = Object.freeze({ outputLatencyMs: null, outputLatencyUnknown: 'not asked of this browser' });

/**
 * When an event the worklet stamped `wallMs` (its `Date.now()`) happened, in the page's clock
 * (`nowMs`, which the interruption log uses): now, less how long the message waited for the
 * main thread. Only a difference of the wall clock is used, so the two clocks need not agree;
 * a wall clock stepped back meanwhile places the event now, never in the future.
 */
export function workletEventTime(wallMs, pageNow = nowMs(), wallNow = Date.now()) {
  return pageNow - Math.max(0, wallNow - wallMs);
}

export class Player extends EventTarget {
  constructor({ workletUrl = 'worklet.js', targetMs = 80, volume = 1, muted = false, userAgent } = {}) {
    super();
    this.asksOutputLatency = asksOutputLatency(userAgent);
    this.workletUrl = workletUrl;
    this.targetMs = targetMs;
    this.volume = volume;
    this.muted = muted;
    this.ctx = null;
    this.node = null;
    this.format = null;
    this.queue = [];
    this.stats = null;
    this.suspendTimer = null;
  }

  /**
   * Creates or resumes the AudioContext. Call it synchronously from a click or key handler:
   * browsers allow sound only from a user gesture. Returns a promise that settles when the
   * worklet is loaded and the context runs.
   */
  unlock() {
    clearTimeout(this.suspendTimer);
    if (!this.ctx) {
      const Context = globalThis.AudioContext || globalThis.webkitAudioContext;
      this.ctx = new Context({ latencyHint: 'interactive' });
      this.gain = this.ctx.createGain();
      this.gain.gain.value = this.effectiveGain();
      this.analyser = this.ctx.createAnalyser();
      this.analyser.fftSize = 2048;
      this.analyser.connect(this.gain).connect(this.ctx.destination);
      this.ready = this.ctx.audioWorklet.addModule(this.workletUrl);
      this.ctx.addEventListener('statechange', () => this.emit('context', { state: this.ctx.state }));
    }
    // iOS plays Web Audio through the ringer channel (muted by the silent switch) unless told
    // this is media playback; harmless where unsupported.
    if (globalThis.navigator?.audioSession) globalThis.navigator.audioSession.type = 'playback';
    return Promise.all([this.ready, this.ctx.resume()]);
  }

  /** Prepares for a stream's format; a new channel count needs a new node. */
  async configure(hello) {
    await this.ready;
    const format = { streamRate: hello.sample_rate, channels: hello.channels };
    if (this.node && this.format.channels === format.channels) {
      if (this.format.streamRate !== format.streamRate) this.node.port.postMessage({ type: 'format', ...format });
    } else {
      this.node?.disconnect();
      this.node = new AudioWorkletNode(this.ctx, 'earshot-player', {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [format.channels],
        processorOptions: { ...format, targetMs: this.targetMs },
      });
      this.node.port.onmessage = (event) => this.onWorkletMessage(event.data);
      this.node.connect(this.analyser);
    }
    this.format = format;
    const queued = this.queue;
    this.queue = [];
    for (const item of queued) this.post(item);
  }

  /** Hands one chunk's samples (the message's own buffer, transferred) to the worklet. */
  push(buffer, offset, samples, discontinuity) {
    const item = { type: 'chunk', buffer, offset, samples, discontinuity };
    if (this.node && this.format) this.post(item);
    else if (this.queue.length < MAX_QUEUED_CHUNKS) this.queue.push(item);
  }

  post(item) {
    this.node.port.postMessage(item, [item.buffer]);
  }

  /** Stop: drop queued audio with a fade, then let the sound card rest. */
  stop() {
    this.queue = [];
    this.node?.port.postMessage({ type: 'flush' });
    clearTimeout(this.suspendTimer);
    if (this.ctx) this.suspendTimer = setTimeout(() => this.ctx.suspend(), STOP_FADE_MS);
  }

  setTarget(ms) {
    this.targetMs = ms;
    this.node?.port.postMessage({ type: 'target', ms });
  }

  setVolume(volume) {
    this.volume = volume;
    this.applyGain();
  }

  setMuted(muted) {
    this.muted = muted;
    this.applyGain();
  }

  effectiveGain() {
    // Perceived loudness follows the square of the slider better than the slider itself.
    return this.muted ? 0 : this.volume * this.volume;
  }

  applyGain() {
    if (!this.gain) return;
    this.gain.gain.setTargetAtTime(this.effectiveGain(), this.ctx.currentTime, GAIN_TIME_CONSTANT_S);
  }

  /** Output side facts for the stats panel. */
  get output() {
    if (!this.ctx) return null;
    // The browser's own count of times it could not hand the sound card audio in time (the
    // machine too busy to run the audio thread): heard as clicks that are not the stream's.
    // Chromium has it; elsewhere it is null.
    const playback = this.ctx.playbackStats;
    return {
      state: this.ctx.state,
      sampleRate: this.ctx.sampleRate,
      baseLatencyMs: 1000 * (this.ctx.baseLatency || 0),
      ...(this.asksOutputLatency ? outputLatency(this.ctx.outputLatency) : NOT_ASKED),
      glitches: playback ? playback.underrunEvents : null,
      glitchMs: playback ? 1000 * playback.underrunDuration : null,
    };
  }

  onWorkletMessage(message) {
    if (message.type === 'stats') this.stats = message;
    if (message.wallMs !== undefined) message.at = workletEventTime(message.wallMs);
    this.emit(message.type, message);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
