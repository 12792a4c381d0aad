// Starts the real earshot binary for browser tests: port 0 or a given port (to restart "the
// same" server after killing it), the first stdout line read for the address, stderr kept with
// the time each line arrived so a test can see when the page connected.

import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const BINARY = process.env.EARSHOT_BIN || path.join(REPO, 'target/release/earshot');

export async function startServer({ source = 'tone:', instance = 'A', listen = '127.0.0.1:0', args = [] } = {}) {
  const child = spawn(BINARY, ['serve', '--source', source, '--listen', listen, '--instance-id', instance, ...args], {
    cwd: REPO,
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

/** GET a JSON endpoint of a running server. */
export async function getJson(server, route) {
  const response = await fetch(new URL(route, server.url));
  return response.json();
}
