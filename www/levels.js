// earshot levels view: one peak/RMS meter per stream channel (numbers from the worklet, which
// sees every sample, so no peak is missed between animation frames) and the live waveform drawn
// from an AnalyserNode on a canvas. Drawing only; it never touches the stream.

const FLOOR_DB = -60;
/** The readout holds the highest peak of the last second, as a person reading it expects. */
const PEAK_HOLD_REPORTS = 20; // worklet reports arrive every 50 ms
/** RMS over ~300 ms, the integration time of a classic VU meter. */
const RMS_REPORTS = 6;

export const toDb = (linear) => (linear > 0 ? 20 * Math.log10(linear) : -Infinity);

export function formatDb(db) {
  return Number.isFinite(db) ? `${db < 0 ? '−' : ''}${Math.abs(db).toFixed(1)}` : '−∞';
}

export class LevelsView {
  constructor(metersElement, canvas) {
    this.metersElement = metersElement;
    this.canvas = canvas;
    this.meters = [];
    this.history = [];
    this.samples = null;
    this.lastText = 0;
  }

  setChannels(channels) {
    if (this.meters.length === channels) return;
    this.history = [];
    const names = channels === 1 ? ['Mono'] : ['Left', 'Right'];
    this.meters = names.map((name) => {
      const row = document.createElement('div');
      row.className = 'meter';
      const label = document.createElement('span');
      label.className = 'meter-label';
      label.textContent = name === 'Mono' ? 'M' : name[0];
      label.title = name;
      const bar = document.createElement('div');
      bar.className = 'meter-bar';
      bar.setAttribute('role', 'meter');
      bar.setAttribute('aria-label', `${name} level`);
      bar.setAttribute('aria-valuemin', String(FLOOR_DB));
      bar.setAttribute('aria-valuemax', '0');
      const rms = document.createElement('div');
      rms.className = 'meter-rms';
      const peak = document.createElement('div');
      peak.className = 'meter-peak';
      bar.append(rms, peak);
      const text = document.createElement('span');
      text.className = 'meter-text';
      row.append(label, bar, text);
      return { name, bar, rms, peak, text };
    });
    this.metersElement.replaceChildren(...this.meters.map((m) => m.bar.parentElement));
  }

  /** Forgets levels heard so far (Stop), so the meters fall to the floor. */
  reset() {
    this.history = [];
  }

  /** A worklet report: linear peak and RMS per channel over its last ~50 ms. */
  update(levels) {
    if (!levels) return;
    this.history.push(levels);
    if (this.history.length > PEAK_HOLD_REPORTS) this.history.shift();
  }

  /** What the meters read now, in dBFS per channel. */
  readout() {
    const peakDb = [];
    const rmsDb = [];
    for (let c = 0; c < this.meters.length; c++) {
      let peak = 0;
      for (const r of this.history) peak = Math.max(peak, r.peak[c] ?? 0);
      const recent = this.history.slice(-RMS_REPORTS);
      const meanSquare = recent.reduce((sum, r) => sum + (r.rms[c] ?? 0) ** 2, 0) / Math.max(1, recent.length);
      peakDb.push(toDb(peak));
      rmsDb.push(toDb(Math.sqrt(meanSquare)));
    }
    return { peakDb, rmsDb };
  }

  start(getAnalyser) {
    const frame = (time) => {
      this.drawMeters(time);
      this.drawWaveform(getAnalyser());
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  drawMeters(time) {
    if (!this.meters.length) return;
    const { peakDb, rmsDb } = this.readout();
    const width = (db) => `${Math.max(0, Math.min(100, (100 * (db - FLOOR_DB)) / -FLOOR_DB))}%`;
    const updateText = time - this.lastText > 250; // numbers a person can read
    if (updateText) this.lastText = time;
    this.meters.forEach((m, c) => {
      // Clipped rather than sized, so the colour scale stays fixed to dBFS along the bar.
      m.rms.style.clipPath = `inset(0 calc(100% - ${Number.isFinite(rmsDb[c]) ? width(rmsDb[c]) : '0%'}) 0 0)`;
      m.peak.style.left = Number.isFinite(peakDb[c]) ? width(peakDb[c]) : '0%';
      m.bar.classList.toggle('clip', peakDb[c] > -0.1);
      if (!updateText) return;
      const text = `${formatDb(peakDb[c])} peak · ${formatDb(rmsDb[c])} RMS dBFS`;
      m.text.textContent = text;
      m.bar.setAttribute('aria-valuenow', String(Number.isFinite(peakDb[c]) ? Math.max(FLOOR_DB, peakDb[c]).toFixed(1) : FLOOR_DB));
      m.bar.setAttribute('aria-valuetext', `peak ${formatDb(peakDb[c])} dBFS, RMS ${formatDb(rmsDb[c])} dBFS`);
    });
  }

  drawWaveform(analyser) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (width === 0 || height === 0) return;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
      this.colors = null;
    }
    if (!this.colors) {
      const style = getComputedStyle(canvas);
      this.colors = { line: style.color, grid: style.getPropertyValue('--grid').trim() || 'rgba(128,128,128,.3)' };
    }
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, width, height);
    g.strokeStyle = this.colors.grid;
    g.lineWidth = ratio;
    g.beginPath();
    g.moveTo(0, height / 2);
    g.lineTo(width, height / 2);
    g.stroke();
    if (!analyser) return;
    if (!this.samples || this.samples.length !== analyser.fftSize) this.samples = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(this.samples);
    // About 20 ms of signal: a few cycles of a tone, readable at a glance.
    const shown = Math.min(this.samples.length, Math.round(analyser.context.sampleRate / 50));
    const start = this.samples.length - shown;
    g.strokeStyle = this.colors.line;
    g.lineWidth = 2 * ratio;
    g.beginPath();
    for (let i = 0; i < shown; i++) {
      const x = (i / (shown - 1)) * width;
      const y = height / 2 - this.samples[start + i] * (height / 2) * 0.95;
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    }
    g.stroke();
  }
}
