//! A small Linux virtual machine with a real ALSA kernel driver: Debian's kernel and its
//! `snd-aloop` module (ALSA's loopback sound card), booted in qemu with an initramfs of busybox,
//! the earshot binary under test and the libraries it links. A shell on the VM's serial console
//! takes commands from the test; the VM's port 8080 is forwarded to a loopback port here.
//!
//! The kernel is fetched by `scripts/install-test-deps.sh` into `target/vm/kernel` (Debian's
//! `linux-image-amd64`, unpacked, not installed). qemu runs with software emulation (TCG), so
//! the test needs no /dev/kvm.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Kernel modules the VM loads, in dependency order: ALSA's core, its loopback card, and the
/// network card qemu emulates.
const MODULES: [&str; 6] = [
    "soundcore",
    "snd",
    "snd-timer",
    "snd-pcm",
    "snd-aloop",
    "e1000",
];

/// How long the VM may take to boot to its shell (about 10 s here, under emulation).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// One VM runs at a time. Two emulated VMs on this machine's two cores, beside the test and
/// the host's own servers, starved each other: CI once saw a VM held past the capture's 500 ms
/// buffer, and the capture overran in the middle of a test.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Vm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Everything the console printed, for failure messages.
    console: Vec<String>,
    /// The VM's port 8080, as reached from here.
    pub addr: SocketAddr,
    dir: PathBuf,
    /// Held until the VM is gone: `Drop` kills qemu before the fields are dropped.
    _turn: MutexGuard<'static, ()>,
}

/// Where `scripts/install-test-deps.sh` unpacks Debian's kernel.
pub fn kernel_dir() -> PathBuf {
    super::repo_root().join("target/vm/kernel")
}

impl Vm {
    /// Boots the VM with `binary` as /bin/earshot and waits for its shell.
    pub fn boot(name: &str, binary: &Path) -> Vm {
        // A test that panicked with its VM only poisons the lock; the VM is gone all the same.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("earshot-vm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = find_kernel();
        let initrd = build_initramfs(&dir, binary);
        let port = super::free_port();
        let booting = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "384", "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-monitor", "none"])
            .arg("-kernel")
            .arg(kernel.join("vmlinuz"))
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 loglevel=3"])
            .args([
                "-netdev",
                &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:8080"),
                "-device",
                "e1000,netdev=n0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64 (make test-deps installs it)");
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("qemu: {line}");
            }
        });
        let mut vm = Vm {
            child,
            stdin,
            lines,
            console: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            _turn: turn,
        };
        vm.wait_for("VM: ready", BOOT_TIMEOUT);
        eprintln!(
            "VM {name}: booted in {:.1} s",
            booting.elapsed().as_secs_f64()
        );
        vm
    }

    /// Runs a shell command in the VM; returns its output (standard output and error) and exit
    /// code. Panics with the console if it does not finish within `timeout`.
    pub fn sh(&mut self, command: &str, timeout: Duration) -> (String, i32) {
        // A command ending in `&` cannot take `; echo`, so the marker has its own line. The
        // init turns the console's echo off; the marker's halves meet only in the output anyway.
        let sent = writeln!(self.stdin, "{command}\necho \"@@\"\"done $?\"")
            .and_then(|()| self.stdin.flush());
        if let Err(e) = sent {
            self.gone(command, e);
        }
        let deadline = Instant::now() + timeout;
        let mut output = Vec::new();
        loop {
            let line = self.next_line(deadline, command);
            if let Some((_, code)) = line.split_once("@@done ") {
                let code = code.trim().parse().unwrap_or(-1);
                return (output.join("\n"), code);
            }
            output.push(line);
        }
    }

    /// Runs a shell command in the VM that must succeed (within 30 s); returns its output.
    pub fn run(&mut self, command: &str) -> String {
        let (output, code) = self.sh(command, Duration::from_secs(30));
        assert_eq!(code, 0, "VM: `{command}` failed:\n{output}");
        output
    }

    /// Starts `earshot serve ARGS` on the VM's port 8080 (logging to /tmp/LOG.log there, its
    /// pid in /tmp/LOG.pid) and connects to it from here once it answers; returns the
    /// connection past `hello`.
    pub fn serve(&mut self, args: &str, log: &str) -> (super::Ws, serde_json::Value) {
        self.run(&format!(
            "earshot serve {args} --listen 0.0.0.0:8080 > /tmp/{log}.log 2>&1 & echo $! > /tmp/{log}.pid"
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // qemu accepts on the forwarded port before the VM listens; the handshake tells.
            if let Ok(mut ws) = super::try_connect(self.addr, "/ws") {
                let hello = super::read_json(&mut ws);
                return (ws, hello);
            }
            if Instant::now() > deadline {
                let log = self.run(&format!("cat /tmp/{log}.log"));
                panic!("earshot in the VM did not answer within 30 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits for a console line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.next_line(deadline, needle);
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Panics for a VM whose qemu has exited, with what its console said last (a guest kernel
    /// panic ends qemu, as it runs with `panic=-1 -no-reboot`).
    fn gone(&mut self, command: &str, e: std::io::Error) -> ! {
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.console.push(line);
        }
        let tail = self.console.len().saturating_sub(60);
        panic!(
            "VM: cannot send {command:?} ({e}): qemu has exited ({status}); console:\n{}",
            self.console[tail..].join("\n")
        )
    }

    fn next_line(&mut self, deadline: Instant, waiting_for: &str) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.console.push(line.clone());
                line
            }
            Err(_) => panic!(
                "VM: no {waiting_for:?} within the time; console:\n{}",
                self.console.join("\n")
            ),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The unpacked kernel: `vmlinuz` and `lib/modules/VERSION/`.
fn find_kernel() -> PathBuf {
    let dir = kernel_dir();
    assert!(
        dir.join("vmlinuz").is_file(),
        "no kernel in {} (make test-deps, or scripts/install-test-deps.sh, fetches it)",
        dir.display()
    );
    dir
}

/// Writes the initramfs: busybox (its applets as links), /bin/earshot and the libraries it
/// links, ALSA's configuration, the kernel modules and `tests/vm/init`.
fn build_initramfs(dir: &Path, binary: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "bin",
        "dev",
        "etc",
        "proc",
        "sys",
        "tmp",
        "modules",
        "usr/share",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    copy(Path::new("/bin/busybox"), &root.join("bin/busybox"));
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    copy(binary, &root.join("bin/earshot"));
    for lib in linked_libraries(binary) {
        copy(&lib, &root.join(lib.strip_prefix("/").unwrap()));
    }
    copy_dir(Path::new("/usr/share/alsa"), &root.join("usr/share/alsa"));
    let modules = std::fs::read_dir(kernel_dir().join("lib/modules"))
        .unwrap()
        .next()
        .expect("lib/modules/VERSION in the kernel directory")
        .unwrap()
        .path();
    for module in MODULES {
        let file = format!("{module}.ko");
        let found = find_file(&modules, &file)
            .unwrap_or_else(|| panic!("no {file} under {}", modules.display()));
        copy(&found, &root.join("modules").join(&file));
    }
    std::fs::write(root.join("modules/order"), MODULES.join("\n") + "\n").unwrap();
    let init = super::repo_root().join("tests/vm/init");
    copy(&init, &root.join("init"));
    let initrd = dir.join("initrd.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . | /bin/busybox cpio -o -H newc > \"$0\" 2>/dev/null")
        .arg(&initrd)
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "cpio failed");
    initrd
}

/// The shared libraries `binary` loads (the dynamic loader included), from `ldd`.
fn linked_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().map_while(Result::ok) {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else if path.is_file() {
            copy(&path, &target);
        }
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}
