// Starts the real earshot binary for browser tests: port 0 or a given port (to restart "the
// same" server after killing it), the first stdout line read for the address, stderr kept with
// the time each line arrived so a test can see when the page connected.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const BINARY = process.env.EARSHOT_BIN || path.join(REPO, 'target/release/earshot');

export async function startServer({ source = 'tone:', instance = 'A', listen = '127.0.0.1:0', args = [], env = {} } = {}) {
  const child = spawn(BINARY, ['serve', '--source', source, '--listen', listen, '--instance-id', instance, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = []; // { t, line }
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  readline.createInterface({ input: child.stderr }).on('line', (line) => log.push({ t: Date.now(), line }));
  const stdout = readline.createInterface({ input: child.stdout });
  const first = await Promise.race([
    new Promise((resolve) => stdout.once('line', resolve)),
    exited.then(({ code, signal }) => {
      throw new Error(`earshot exited (${code ?? signal}) before listening:\n${log.map((l) => l.line).join('\n')}`);
    }),
  ]);
  const address = /http:\/\/([^/\s]+)\//.exec(first)?.[1];
  if (!address) throw new Error(`unexpected first line from earshot: ${first}`);
  const port = Number(address.split(':').pop());
  return {
    instance,
    pid: child.pid,
    port,
    url: `http://${address}/`,
    startedAt: Date.now(),
    log,
    exited,
    /** When a listener joined after `since` (test clock), or null. */
    joinedAfter(since) {
      return log.find((l) => l.t >= since && /listener .* joined/.test(l.line))?.t ?? null;
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
    /** Sends a signal without waiting: SIGSTOP/SIGCONT to freeze and thaw, SIGUSR1 to drain. */
    signal(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/**
 * Starts earshot instances named `instances` (each with `args`) to stand behind a proxy on
 * 127.0.0.1, which each trusts, and a temporary directory for the proxy's files. `stop(proxy)`
 * ends the proxy's process when given and running, then every instance, and removes the
 * directory; an instance that fails to start stops the ones started before it.
 */
export async function startBackends({ instances, args = [], dirPrefix }) {
  const servers = {};
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), dirPrefix));
  const stop = async (proxy = null) => {
    if (proxy && proxy.exitCode === null && proxy.signalCode === null) {
      proxy.kill('SIGTERM');
      await new Promise((resolve) => proxy.once('exit', resolve));
    }
    await Promise.all(Object.values(servers).map((s) => s.kill()));
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    for (const instance of instances) {
      servers[instance] = await startServer({ instance, args: ['--trusted-proxy', '127.0.0.1', ...args] });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { servers, dir, stop };
}

/** GET a JSON endpoint of a running server. */
export async function getJson(server, route) {
  const response = await fetch(new URL(route, server.url));
  return response.json();
}
