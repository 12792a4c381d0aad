//! cgroup v1 controls for tests that need the system to misbehave on cue (the tests run as
//! root, on machines with the v1 hierarchy mounted at /sys/fs/cgroup): freeze one thread, or
//! let a process start no more threads.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Freezes the thread called `thread` of process `pid` for `time`, and only that thread:
/// SIGSTOP would stop the whole process, the ALSA plugin's own thread with it. Uses the cgroup
/// v1 freezer, which takes single threads (the tests run as root).
pub fn freeze_thread(pid: u32, thread: &str, time: Duration) {
    let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| t.ok())
        .find(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == thread))
        .unwrap_or_else(|| panic!("no thread called {thread} in process {pid}"))
        .file_name();
    let tid = tid.to_str().unwrap();
    let root = Path::new("/sys/fs/cgroup/freezer");
    let group = root.join(format!("earshot-test-{}", std::process::id()));
    std::fs::create_dir_all(&group).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (this test needs the cgroup v1 freezer and root)",
            group.display()
        )
    });
    let write = |file: &Path, text: &str| {
        std::fs::write(file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    };
    write(&group.join("tasks"), tid);
    write(&group.join("freezer.state"), "FROZEN");
    std::thread::sleep(time);
    write(&group.join("freezer.state"), "THAWED");
    write(&root.join("tasks"), tid);
    let _ = std::fs::remove_dir(&group);
}

/// Caps the threads of process `pid` at the number it has now, with the cgroup v1 `pids`
/// controller: the next thread it tries to start fails, as it does on a machine at its
/// `pids.max` or `ulimit -u`. Lifted when dropped.
pub struct ThreadCap {
    group: PathBuf,
    pid: u32,
}

const PIDS: &str = "/sys/fs/cgroup/pids";

impl ThreadCap {
    pub fn new(pid: u32, name: &str) -> ThreadCap {
        let group = Path::new(PIDS).join(format!("earshot-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&group).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (this test needs the cgroup v1 pids controller and root)",
                group.display()
            )
        });
        let write = |file: &str, text: &str| {
            let path = group.join(file);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        // Moving a process into a group is not limited by its pids.max; starting a thread is.
        write("cgroup.procs", &pid.to_string());
        let tasks = std::fs::read_to_string(group.join("tasks")).unwrap();
        write("pids.max", &tasks.lines().count().to_string());
        ThreadCap { group, pid }
    }
}

impl Drop for ThreadCap {
    fn drop(&mut self) {
        // The process may have exited meanwhile; then the group is empty already.
        let _ = std::fs::write(Path::new(PIDS).join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.group);
    }
}
