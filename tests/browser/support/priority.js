// Keeps the processes a test started (Chromium, servers, parec) ahead of unrelated work on a
// shared machine. run.sh raises its own priority and its children inherit it, but Chromium
// resets the niceness of its renderer and audio-service processes to 0, so the threads that
// carry audio (the page's main thread with the WebSocket, PulseAudio's client thread in the
// audio service) compete with concurrent builds as equals and the recordings get holes that
// have nothing to do with the player. A desktop gives these threads priority through rtkit;
// this does the same by renicing every thread of every descendant, when allowed (root). It also
// holds some of those processes up on purpose (freezeChildren), as such a machine would.

import fs from 'node:fs';
import os from 'node:os';

const NICE = -10;

/** Every process descended from this one (Chromium's, the servers', parec). */
export function children() {
  const parentOf = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name is in parentheses and may hold spaces; the ppid follows the state.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(Number(entry), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const mine = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parentOf) {
      if (!mine.has(pid) && mine.has(ppid)) {
        mine.add(pid);
        grew = true;
      }
    }
  }
  mine.delete(process.pid);
  return mine;
}

/** Stops (SIGSTOP) for `ms` every descendant whose /proc `file` (`cmdline`, `comm`) passes
 * `matches`, then lets it go on: the processes held up as on a machine too busy to run them in
 * time. Throws, naming `what`, when none matches. */
export async function freezeChildren({ file, matches, what }, ms) {
  const pids = [...children()].filter((pid) => {
    try {
      return matches(fs.readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    } catch {
      return false;
    }
  });
  if (pids.length === 0) throw new Error(`no ${what} process found`);
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  await new Promise((resolve) => setTimeout(resolve, ms));
  for (const pid of pids) process.kill(pid, 'SIGCONT');
}

function raiseOnce() {
  for (const pid of children()) {
    let tasks = [];
    try {
      tasks = fs.readdirSync(`/proc/${pid}/task`).map(Number);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        if (os.getPriority(tid) > NICE) os.setPriority(tid, NICE);
      } catch {
        // not permitted, or the thread ended: nothing to do
      }
    }
  }
}

/** Starts keeping descendants at nice −10 (new threads appear as audio starts); returns stop(). */
export function keepChildrenPrioritized() {
  try {
    os.setPriority(process.pid, os.getPriority(process.pid));
  } catch {
    return () => {};
  }
  raiseOnce();
  const timer = setInterval(raiseOnce, 500);
  timer.unref();
  return () => clearInterval(timer);
}
