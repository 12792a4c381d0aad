// The cgroup v2 freezer for browser tests, as tests/support/cgroup.rs is for the Rust ones:
// stops one thread of a process (SIGSTOP would stop all of them), here the server's producer, as
// a capture device that overruns or a decoder held up on a busy machine would. Needs root and a
// kernel with cgroup v2 (every current one), mounted at /sys/fs/cgroup on a machine with only
// v2, at /sys/fs/cgroup/unified beside v1 (as here and in CI), or mounted here when it is not.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Where this machine mounts cgroup v2; mounts it at /tmp/earshot-test-cgroup2 if nowhere. */
async function v2Root() {
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
  for (const line of mounts.split('\n')) {
    const [, dir, kind] = line.split(' ');
    if (kind === 'cgroup2') return dir;
  }
  const root = '/tmp/earshot-test-cgroup2';
  await fs.mkdir(root, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'cgroup2', 'none', root]);
  } catch (err) {
    throw new Error(`cgroup v2 is not mounted and mounting it at ${root} failed (these tests need root): ${err.message}`);
  }
  return root;
}

/** The v2 group process `pid` is in, as a directory under `root`. */
async function v2GroupOf(root, pid) {
  const text = await fs.readFile(`/proc/${pid}/cgroup`, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error(`/proc/${pid}/cgroup names no cgroup v2 group:\n${text}`);
  return path.join(root, line.slice(3));
}

/** The id of the thread called `name` in process `pid`. */
async function threadId(pid, name) {
  for (const tid of await fs.readdir(`/proc/${pid}/task`)) {
    const comm = await fs.readFile(`/proc/${pid}/task/${tid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === name) return tid;
  }
  throw new Error(`no thread called ${name} in process ${pid}`);
}

/** Freezes thread `name` of process `pid` for `ms`, and only that thread. Returns when it was
 * frozen and thawed (Date.now()). Thaws even when the wait is interrupted. cgroup v2 takes
 * single threads only into a threaded group, whose parent holds the whole process: the process
 * goes into a group of its own for the time, with the thread in a threaded group inside it,
 * and back where it was afterwards. */
export async function freezeThread(pid, name, ms) {
  const tid = await threadId(pid, name);
  const root = await v2Root();
  const home = await v2GroupOf(root, pid);
  const group = path.join(root, `earshot-browser-${process.pid}-${tid}`);
  const frozen = path.join(group, 'frozen');
  try {
    await fs.mkdir(group, { recursive: true });
  } catch (err) {
    throw new Error(`${group}: ${err.message} (this test needs cgroup v2 and root)`);
  }
  try {
    await fs.writeFile(path.join(group, 'cgroup.procs'), String(pid));
    await fs.mkdir(frozen);
    await fs.writeFile(path.join(frozen, 'cgroup.type'), 'threaded');
    await fs.writeFile(path.join(frozen, 'cgroup.threads'), tid);
    await fs.writeFile(path.join(frozen, 'cgroup.freeze'), '1');
    // Freezing takes effect when the thread next leaves the kernel; `frozen 1` says it has.
    const deadline = Date.now() + 1000;
    while (!(await fs.readFile(path.join(frozen, 'cgroup.events'), 'utf8')).includes('frozen 1')) {
      if (Date.now() > deadline) throw new Error(`thread ${name} did not freeze`);
      await sleep(5);
    }
    const frozenAt = Date.now();
    await sleep(ms);
    return { frozenAt, thawedAt: Date.now() };
  } finally {
    await fs.writeFile(path.join(frozen, 'cgroup.freeze'), '0').catch(() => {});
    await fs.writeFile(path.join(group, 'cgroup.threads'), tid).catch(() => {});
    await fs.rmdir(frozen).catch(() => {});
    await fs.writeFile(path.join(home, 'cgroup.procs'), String(pid)).catch(() => {});
    await fs.rmdir(group).catch(() => {});
  }
}
