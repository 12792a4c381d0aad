// PulseAudio for browser tests: a null sink per test file (so nothing else can sound in its
// recording) and `parec` recordings of its monitor, returned as float samples with the wall
// clock time of their first sample. run.sh starts the daemon and exports PULSE_SERVER.

import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SINK_RATE = 48000;
export const SINK_CHANNELS = 2;

export async function createSink(name) {
  if (!process.env.PULSE_SERVER) throw new Error('PULSE_SERVER is not set: run the browser tests through tests/browser/run.sh');
  const { stdout } = await run('pactl', [
    'load-module',
    'module-null-sink',
    `sink_name=${name}`,
    `rate=${SINK_RATE}`,
    `channels=${SINK_CHANNELS}`,
    `sink_properties=device.description=${name}`,
  ]);
  const module = stdout.trim();
  return {
    name,
    async remove() {
      await run('pactl', ['unload-module', module]).catch(() => {});
    },
  };
}

/**
 * Starts recording `sink`. `stop()` returns { channels: [Float32Array…], rate, startMs }, where
 * startMs is the wall-clock time of the first sample (the arrival of the first data, less what
 * that data holds), good to a few ms since the null sink runs on the system clock.
 */
export function record(sink) {
  const child = spawn('parec', [
    '-d',
    `${sink.name}.monitor`,
    '--format=s16le',
    `--rate=${SINK_RATE}`,
    `--channels=${SINK_CHANNELS}`,
    '--latency-msec=10',
  ]);
  const chunks = [];
  let startMs = null;
  let bytes = 0;
  child.stdout.on('data', (data) => {
    if (startMs === null) startMs = Date.now() - (1000 * data.length) / (2 * SINK_CHANNELS * SINK_RATE);
    chunks.push(data);
    bytes += data.length;
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    /** Seconds recorded so far. */
    get seconds() {
      return bytes / (2 * SINK_CHANNELS * SINK_RATE);
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      const raw = Buffer.concat(chunks);
      const frames = Math.floor(raw.length / (2 * SINK_CHANNELS));
      const channels = Array.from({ length: SINK_CHANNELS }, () => new Float32Array(frames));
      for (let f = 0; f < frames; f++) {
        for (let c = 0; c < SINK_CHANNELS; c++) channels[c][f] = raw.readInt16LE(2 * (f * SINK_CHANNELS + c)) / 32768;
      }
      return { channels, rate: SINK_RATE, startMs };
    },
  };
}
