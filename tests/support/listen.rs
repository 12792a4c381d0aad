//! `earshot listen` run as a child process: started with its output piped, read line by line
//! while the test changes the world around it, then waited for with everything it printed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Stdio};
use std::thread::JoinHandle;

/// A running `earshot listen`, killed when dropped.
pub struct ListenProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// What the test has read of standard output so far.
    read: String,
    /// Standard error, drained from the start so the listener never blocks on a full pipe.
    stderr: Option<JoinHandle<String>>,
}

/// What a finished `earshot listen` printed, and how it exited.
pub struct ListenOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ListenProcess {
    /// Starts `earshot listen ARGS`.
    pub fn start(args: &[&str]) -> ListenProcess {
        let mut child = super::earshot()
            .arg("listen")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn earshot listen");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        ListenProcess {
            child,
            stdout,
            read: String::new(),
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT, as Ctrl-C would: the listener ends its run cleanly.
    pub fn interrupt(&self) {
        super::send_signal(self.pid(), "INT");
    }

    /// With `--json`: reads lines until the first `stats` line, the listener's first second of
    /// audio (or until its output ends). Panics on a line that is not JSON.
    pub fn wait_for_stats(&mut self) {
        let mut line = String::new();
        while self.stdout.read_line(&mut line).unwrap() > 0 {
            let value: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            self.read.push_str(&line);
            line.clear();
            if value["type"] == "stats" {
                break;
            }
        }
    }

    /// Waits for the listener to exit; its whole standard output, including what was read.
    pub fn finish(mut self) -> ListenOutput {
        let mut stdout = std::mem::take(&mut self.read);
        let mut rest = Vec::new();
        self.stdout.read_to_end(&mut rest).unwrap();
        stdout.push_str(&String::from_utf8_lossy(&rest));
        let code = self.child.wait().unwrap().code();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        ListenOutput {
            code,
            stdout,
            stderr,
        }
    }
}

impl ListenOutput {
    /// With `--json`: every line printed, in order.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        super::json_lines(&self.stdout)
    }
}

impl Drop for ListenProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
