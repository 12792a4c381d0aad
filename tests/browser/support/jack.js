// A microphone that overruns, for browser tests, as JackMic is in tests/capture_alsa.rs: a
// private JACK server on its dummy backend (a clock and silence, no sound card), whose capture
// ports are the ALSA device `mic` through ALSA's `jack` plugin. Unlike PulseAudio's plugin, this
// one overruns, as a sound card does, when its reader falls behind by more than its buffer.

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts jackd as `name` and waits for its capture ports. `env` is what earshot needs to
 * capture from `alsa:mic`; `stop()` ends jackd once earshot has let go of it. */
export async function startJackMic(name) {
  // One name per test file: JACK's registry holds only a few servers, and a name a stopped
  // server left behind is taken over by the next server of that name.
  const server = `earshot-browser-${name}`;
  const dir = path.join(os.tmpdir(), server);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  const conf = path.join(dir, 'asound.conf');
  await fs.writeFile(conf, 'pcm.mic {\n    type jack\n    capture_ports {\n        0 system:capture_1\n        1 system:capture_2\n    }\n}\n');
  const child = spawn('jackd', ['--no-realtime', '-n', server, '-d', 'dummy', '-r', '48000', '-p', '480'], {
    env: { ...process.env, JACK_NO_AUDIO_RESERVATION: '1' },
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const env = { JACK_DEFAULT_SERVER: server };
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ports = await run('jack_lsp', [], { env: { ...process.env, ...env } }).catch(() => ({ stdout: '' }));
    if (ports.stdout.includes('system:capture_2')) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('jackd did not start (make test-deps installs jackd2)');
    }
    await sleep(100);
  }
  return {
    env: { ...env, ALSA_CONFIG_PATH: conf },
    /** SIGTERM, so jackd removes its shared memory and registry entry (killed, it leaves them
     * in /dev/shm and after a few runs refuses to start); SIGKILL after 5 s, and what a killed
     * client left is removed. Stop earshot first, cleanly, so jackd can end promptly. */
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      await fs.rm(dir, { recursive: true, force: true });
      for (const file of await fs.readdir('/dev/shm').catch(() => [])) {
        if (file.startsWith('jack_sem.') && file.includes(`_${server}_`)) await fs.rm(path.join('/dev/shm', file), { force: true });
      }
    },
  };
}
