// Debian's HAProxy in front of several earshot instances, all on 127.0.0.1, for failover tests:
// health checks on /healthz every 500 ms that take a server out after one failure and back after
// one success, L7 retries that send an upgrade refused with 503 (a draining instance) to another
// server, least-connections balancing (what long-lived listeners need), and a stats page the test
// reads to see what HAProxy thinks of each server. Every process is started here and ended by its
// pid; a frozen (SIGSTOPped) server is killed all the same.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';

import { freePort } from './ports.js';
import { startBackends } from './server.js';

/** The config: the settings that make a drain seamless, adapted to loopback test ports. */
export function haproxyConfig({ port, statsPort, servers }) {
  return `# written by tests/browser/support/haproxy.js
global
    log stderr format raw local0
    maxconn 1000

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 1s
    timeout http-request 10s
    timeout client 30s
    # Until the 101 answer; after it the upgraded WebSocket is a tunnel.
    timeout server 5s
    timeout tunnel 1h
    timeout client-fin 5s

frontend earshot
    bind 127.0.0.1:${port}
    default_backend earshot

backend earshot
    # Listeners stay for hours: spread them by how many each server holds, not by turns.
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 500ms fall 1 rise 1
    # A draining earshot refuses upgrades with 503 and Retry-After: 0; retry another server.
    retries 3
    retry-on conn-failure empty-response response-timeout 503
    option redispatch 1
${servers.map((s) => `    server ${s.instance} 127.0.0.1:${s.port}`).join('\n')}

listen stats
    bind 127.0.0.1:${statsPort}
    stats enable
    stats uri /
`;
}

/**
 * Starts earshot instances named `instances` (each with `serverArgs`) and HAProxy in front of
 * them; resolves once HAProxy answers and counts every server UP.
 */
export async function startBalancer({ instances = ['A', 'B', 'C'], serverArgs = [] } = {}) {
  const backends = await startBackends({ instances, args: serverArgs, dirPrefix: 'earshot-haproxy-' });
  const { servers, dir } = backends;
  let child = null;
  const stop = () => backends.stop(child);
  try {
    const port = await freePort();
    const statsPort = await freePort();
    const file = path.join(dir, 'haproxy.cfg');
    await fs.writeFile(file, haproxyConfig({ port, statsPort, servers: Object.values(servers) }));
    child = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    const log = [];
    readline.createInterface({ input: child.stderr }).on('line', (line) => log.push({ t: Date.now(), line }));
    const balancer = {
      url: `http://127.0.0.1:${port}/`,
      port,
      servers,
      log,
      stop,
      /** HAProxy's view of each server: { A: 'UP', B: 'DOWN', … }. */
      async serverStates() {
        const csv = await (await fetch(`http://127.0.0.1:${statsPort}/;csv`)).text();
        const [header, ...lines] = csv.replace(/^# /, '').trim().split('\n');
        const columns = header.split(',');
        const at = (name) => columns.indexOf(name);
        const states = {};
        for (const line of lines) {
          const fields = line.split(',');
          if (fields[at('pxname')] === 'earshot' && fields[at('svname')] in servers) {
            states[fields[at('svname')]] = fields[at('status')];
          }
        }
        return states;
      },
    };
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited:\n${log.map((l) => l.line).join('\n')}`);
      const states = await balancer.serverStates().catch(() => ({}));
      return instances.every((i) => states[i] === 'UP');
    }, 5000, 'HAProxy counting every server UP');
    return balancer;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls `check` every 50 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
