// Debian's nginx in front of several earshot instances, all on 127.0.0.1, with deploy/nginx.conf
// itself: its upstream and location, changed only in addresses, paths and the TLS lines (the
// page is served over plain HTTP here; tests/tls_proxy.rs covers TLS), the same changes
// tests/failover_haproxy.rs makes. Open-source nginx has no health checks: it learns of a drain
// from the 503, of a crash from the refused connection, and of a freeze from its read timeout.
// Every process is started here and ended by its pid.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

import { waitFor } from './haproxy.js';
import { freePort } from './ports.js';
import { REPO, startBackends } from './server.js';

/** deploy/nginx.conf with `replacements` ([from, to] pairs), each of which must be there. */
async function shippedConfig(replacements) {
  let config = await fs.readFile(path.join(REPO, 'deploy/nginx.conf'), 'utf8');
  for (const [from, to] of replacements) {
    if (!config.includes(from)) throw new Error(`deploy/nginx.conf no longer has ${JSON.stringify(from)}`);
    config = config.replace(from, to);
  }
  return config;
}

/**
 * Starts earshot instances named `instances` (each with `serverArgs`) and nginx in front of them
 * with the shipped site; resolves once nginx accepts connections.
 */
export async function startNginx({ instances = ['A', 'B', 'C'], serverArgs = [] } = {}) {
  if (instances.length !== 3) throw new Error('deploy/nginx.conf has three upstream servers');
  const group = await startBackends({ instances, args: serverArgs, dirPrefix: 'earshot-nginx-' });
  const { servers, dir } = group;
  let child = null;
  const stop = () => group.stop(child);
  try {
    const backends = Object.values(servers).map((s) => s.port);
    const port = await freePort();
    const site = await shippedConfig([
      ...[8080, 8081, 8082].map((p, i) => [`server 127.0.0.1:${p} max_fails=0;`, `server 127.0.0.1:${backends[i]} max_fails=0;`]),
      ['listen 80;', `listen 127.0.0.1:${await freePort()};`],
      ['listen 443 ssl;', `listen 127.0.0.1:${port};`],
      ['    ssl_certificate     /etc/letsencrypt/live/radio.example.org/fullchain.pem;\n', ''],
      ['    ssl_certificate_key /etc/letsencrypt/live/radio.example.org/privkey.pem;\n', ''],
      ['    ssl_protocols       TLSv1.2 TLSv1.3;\n', ''],
      ['    ssl_session_cache   shared:earshot_tls:10m;\n', ''],
      ['/var/log/nginx/earshot.access.log', path.join(dir, 'access.log')],
    ]);
    await fs.writeFile(path.join(dir, 'earshot.conf'), site);
    const errors = path.join(dir, 'error.log');
    await fs.writeFile(
      path.join(dir, 'nginx.conf'),
      `worker_processes 1;\nmaster_process off;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${errors};\n` +
        `events { worker_connections 256; }\nhttp {\n` +
        ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/${t};\n`).join('') +
        `include ${dir}/earshot.conf;\n}\n`,
    );
    child = spawn('nginx', ['-e', errors, '-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
    const errorLog = async () => fs.readFile(errors, 'utf8').catch(() => '');
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}):\n${await errorLog()}`);
      return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.end(() => resolve(true)));
        socket.once('error', () => resolve(false));
      });
    }, 5000, 'nginx accepting connections');
    return { url: `http://127.0.0.1:${port}/`, port, servers, stop, errorLog };
  } catch (err) {
    await stop();
    throw err;
  }
}
