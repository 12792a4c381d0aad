// Ports for the programs a test must name a port to (HAProxy, nginx, WebKitWebDriver), which
// cannot be told to take port 0 and report it. A port is handed out from 10000–32000, below the
// kernel's ephemeral range (32768 and up), and never twice in one test process: a port the
// kernel picked for "port 0" is free only until the next outgoing connection, which Chromium,
// the test's own clients and the servers make all the time, may take it before the program
// binds it. tests/support/mod.rs's free_port does the same for the Rust tests.

import net from 'node:net';

const FIRST = 10000;
const SPAN = 32000 - FIRST;
// Each test file runs in its own process: starting from a place given by the pid keeps two of
// them from walking the same ports.
const start = (process.pid * 97) % SPAN;
let handedOut = 0;

function bindable(port) {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/** A port on 127.0.0.1 that was free a moment ago, not one the kernel hands to connections. */
export async function freePort() {
  while (handedOut < SPAN) {
    const port = FIRST + ((start + handedOut) % SPAN);
    handedOut += 1;
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port left between ${FIRST} and 32000`);
}
