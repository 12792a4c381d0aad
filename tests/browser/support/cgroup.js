// cgroup v1 freezer for browser tests, as tests/support/cgroup.rs is for the Rust ones: stops
// one thread of a process (SIGSTOP would stop all of them), here the server's producer, as a
// capture device that overruns or a decoder held up on a busy machine would. Needs root and the
// v1 freezer mounted at /sys/fs/cgroup/freezer, as on the CI machine.

import fs from 'node:fs/promises';
import path from 'node:path';

const FREEZER = '/sys/fs/cgroup/freezer';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The id of the thread called `name` in process `pid`. */
async function threadId(pid, name) {
  for (const tid of await fs.readdir(`/proc/${pid}/task`)) {
    const comm = await fs.readFile(`/proc/${pid}/task/${tid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === name) return tid;
  }
  throw new Error(`no thread called ${name} in process ${pid}`);
}

/** Freezes thread `name` of process `pid` for `ms`, and only that thread. Returns when it was
 * frozen and thawed (Date.now()). Thaws even when the wait is interrupted. */
export async function freezeThread(pid, name, ms) {
  const tid = await threadId(pid, name);
  const group = path.join(FREEZER, `earshot-browser-${process.pid}`);
  try {
    await fs.mkdir(group, { recursive: true });
  } catch (err) {
    throw new Error(`${group}: ${err.message} (this test needs the cgroup v1 freezer and root)`);
  }
  try {
    await fs.writeFile(path.join(group, 'tasks'), tid);
    await fs.writeFile(path.join(group, 'freezer.state'), 'FROZEN');
    const frozenAt = Date.now();
    await sleep(ms);
    return { frozenAt, thawedAt: Date.now() };
  } finally {
    await fs.writeFile(path.join(group, 'freezer.state'), 'THAWED');
    await fs.writeFile(path.join(FREEZER, 'tasks'), tid).catch(() => {});
    await fs.rmdir(group).catch(() => {});
  }
}
