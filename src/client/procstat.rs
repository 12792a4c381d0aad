//! CPU time and memory of a process, and of the whole machine, from Linux's `/proc`; and which
//! process listens on a local port, so `earshot bench` can find the server by itself.

use std::collections::BTreeMap;
use std::fs;

/// Clock ticks per second in `/proc/*/stat` (USER_HZ), 100 on every Linux architecture that
/// earshot targets; std cannot ask `sysconf(_SC_CLK_TCK)` without `unsafe`.
const USER_HZ: f64 = 100.0;

/// A process's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub threads: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` if the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    read_sample(&format!("/proc/{pid}"))
}

/// The same for this process.
pub fn sample_self() -> Option<ProcSample> {
    read_sample("/proc/self")
}

fn read_sample(dir: &str) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = fs::read_to_string(format!("{dir}/status")).ok()?;
    let cpu_s = cpu_seconds(&stat)?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(ProcSample {
        cpu_s,
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// utime + stime from a `/proc/PID/stat` line. The command name is in parentheses and may
/// contain spaces, so fields are counted from the last `)`: utime and stime are fields 14 and 15.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU time each live thread of a process has used, nanoseconds by thread id, from
/// `/proc/PID/task/*/schedstat`: exact, where `/proc/PID/stat` counts in 10 ms ticks (a tenth
/// of a percent of a core over a 10 s step is one tick, and small steps are mostly rounding).
#[derive(Debug, Clone, Default)]
pub struct ThreadCpu(BTreeMap<u32, u64>);

impl ThreadCpu {
    pub fn of(pid: u32) -> Option<ThreadCpu> {
        let mut threads = BTreeMap::new();
        for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread that exits between the listing and the read is skipped.
            if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
                if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    threads.insert(tid, ns);
                }
            }
        }
        (!threads.is_empty()).then_some(ThreadCpu(threads))
    }

    /// CPU seconds used since `earlier` by the threads alive now (all of it for a thread that
    /// started since). A thread that ended in between is not counted: a benchmark step keeps
    /// its listeners, so its server's threads live through the window.
    pub fn seconds_since(&self, earlier: &ThreadCpu) -> f64 {
        let ns: u64 = self
            .0
            .iter()
            .map(|(tid, now)| now.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
    }
}

/// Context switches (voluntary and not) of all of a process's threads so far, from
/// `/proc/PID/task/*/status`. Threads that already exited are not counted.
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

/// CPU seconds the machine's cores have spent busy since boot, summed over all cores, from the
/// first line of `/proc/stat` (everything but idle and iowait; guest time is already in user).
pub fn machine_busy_s() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / USER_HZ)
}

/// This machine's cores (1 when std cannot tell).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The soft limit on open files of this process (`ulimit -n`).
pub fn open_file_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The process with a listening TCP socket on `port` (IPv4 or IPv6), if this user may see it.
pub fn find_listener(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path()) {
                if targets.iter().any(|t| link.as_os_str() == t.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Inodes of sockets in state LISTEN (0A) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            (local_port == port_hex && *f.get(3)? == "0A" && *f.get(9)? != "0")
                .then(|| f[9].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    9 0 1000 100000 500";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0\n";
        assert_eq!(listening_inodes(table, 8080), ["12345"]);
        assert!(listening_inodes(table, 8081).is_empty());
    }

    #[test]
    fn thread_cpu_counts_live_threads_and_new_ones_whole() {
        let before = ThreadCpu([(1, 1_000_000_000), (2, 500), (3, 7)].into_iter().collect());
        // Thread 3 ended; thread 4 started during the window.
        let after = ThreadCpu(
            [(1, 1_250_000_000), (2, 500), (4, 50_000_000)]
                .into_iter()
                .collect(),
        );
        assert!((after.seconds_since(&before) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = sample_self().unwrap();
        assert!(me.rss_kib > 0 && me.threads >= 1);
        assert!(context_switches(std::process::id()).is_some());
        let spin = ThreadCpu::of(std::process::id()).unwrap();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(20) {}
        let used = ThreadCpu::of(std::process::id())
            .unwrap()
            .seconds_since(&spin);
        assert!(used > 0.0 && used < 10.0, "{used}");
        assert!(machine_busy_s().is_some());
        assert!(open_file_limit().unwrap_or(1) > 0);
    }
}
