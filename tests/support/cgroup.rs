//! cgroup controls for tests that need the system to misbehave on cue (the tests run as root):
//! freeze one thread, or let a process start no more threads. The freezer is cgroup v2's, which
//! every current kernel has, whether the machine mounts only v2 (/sys/fs/cgroup) or v1 beside it
//! (v2 at /sys/fs/cgroup/unified, as here and in CI); the thread cap takes the `pids` controller
//! from v2 when the machine gives it to v2, else from v1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where this machine mounts cgroup v2. Where it does not, mounts it at
/// /tmp/earshot-test-cgroup2 (and leaves it there for the next test).
fn v2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    if let Some(root) = mounts.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (_, dir, kind) = (fields.next(), fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    }) {
        return root;
    }
    let root = PathBuf::from("/tmp/earshot-test-cgroup2");
    std::fs::create_dir_all(&root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&root)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "cgroup v2 is not mounted and mounting it at {} failed (these tests need root)",
        root.display()
    );
    root
}

/// The v2 cgroup process `pid` is in, as a directory under `root`.
fn v2_group_of(root: &Path, pid: u32) -> PathBuf {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("{file} names no cgroup v2 group:\n{text}"));
    root.join(path.trim_start_matches('/'))
}

fn write(file: &Path, text: &str) {
    std::fs::write(file, text).unwrap_or_else(|e| panic!("write {text} to {}: {e}", file.display()))
}

fn make_group(group: &Path, needs: &str) {
    std::fs::create_dir_all(group).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (this test needs {needs} and root)",
            group.display()
        )
    });
}

/// The id of the thread called `thread` in process `pid`.
fn thread_id(pid: u32, thread: &str) -> String {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| t.ok())
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == thread))
        .unwrap_or_else(|| panic!("no thread called {thread} in process {pid}"))
        .file_name()
        .into_string()
        .unwrap()
}

/// Freezes the thread called `thread` of process `pid` for `time`, and only that thread:
/// SIGSTOP would stop the whole process, the ALSA plugin's own thread with it. cgroup v2 takes
/// single threads only into a threaded group, whose parent holds the whole process: the process
/// goes into a group of its own for the time, with the thread in a threaded group inside it,
/// and back where it was afterwards.
pub fn freeze_thread(pid: u32, thread: &str, time: Duration) {
    let tid = thread_id(pid, thread);
    let root = v2_root();
    let home = v2_group_of(&root, pid);
    let group = root.join(format!("earshot-test-{}-{tid}", std::process::id()));
    let frozen = group.join("frozen");
    make_group(&group, "cgroup v2");
    write(&group.join("cgroup.procs"), &pid.to_string());
    make_group(&frozen, "cgroup v2");
    write(&frozen.join("cgroup.type"), "threaded");
    write(&frozen.join("cgroup.threads"), &tid);
    write(&frozen.join("cgroup.freeze"), "1");
    // Freezing takes effect when the thread next leaves the kernel; `frozen 1` says it has.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !std::fs::read_to_string(frozen.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
    {
        assert!(Instant::now() < deadline, "thread {thread} did not freeze");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(time);
    write(&frozen.join("cgroup.freeze"), "0");
    write(&group.join("cgroup.threads"), &tid);
    let _ = std::fs::remove_dir(&frozen);
    write(&home.join("cgroup.procs"), &pid.to_string());
    let _ = std::fs::remove_dir(&group);
}

/// Caps the threads of process `pid` at the number it has now, with the `pids` controller: the
/// next thread it tries to start fails, as it does on a machine at its `pids.max` or
/// `ulimit -u`. Lifted when dropped.
pub struct ThreadCap {
    group: PathBuf,
    /// Where the process goes back to.
    home: PathBuf,
    pid: u32,
}

/// Where the cgroup v1 `pids` controller is mounted on a machine that has it.
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

impl ThreadCap {
    pub fn new(pid: u32, name: &str) -> ThreadCap {
        let group_name = format!("earshot-test-{}-{name}", std::process::id());
        let root = v2_root();
        let v2_has_pids = std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
        let (group, home) = if v2_has_pids {
            // Controllers reach a group only through its parent's subtree_control.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+pids");
            (root.join(&group_name), v2_group_of(&root, pid))
        } else {
            (Path::new(V1_PIDS).join(&group_name), PathBuf::from(V1_PIDS))
        };
        make_group(&group, "the pids controller (cgroup v2's, or v1's)");
        // Moving a process into a group is not limited by its pids.max; starting a thread is.
        write(&group.join("cgroup.procs"), &pid.to_string());
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count();
        write(&group.join("pids.max"), &threads.to_string());
        ThreadCap { group, home, pid }
    }
}

impl Drop for ThreadCap {
    fn drop(&mut self) {
        // The process may have exited meanwhile; then the group is empty already.
        let _ = std::fs::write(self.home.join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.group);
    }
}
