//! Debian's real nginx and HAProxy in front of test servers: a config shipped in deploy/ adapted
//! to loopback ports and temporary paths, run as one process that dies with the test.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped config at `path` (relative to the repository root) with each `from` replaced by
/// its `to`. Every `from` must exist, so an edit to the config that a test no longer matches
/// fails loudly instead of testing something else.
pub fn adapt_shipped(path: &str, replacements: &[(&str, String)]) -> String {
    let mut config = std::fs::read_to_string(super::repo_root().join(path)).unwrap();
    for (from, to) in replacements {
        assert!(config.contains(from), "{path} no longer has {from:?}");
        config = config.replace(from, to);
    }
    config
}

/// deploy/haproxy.cfg adapted by `replacements`, after the changes every test needs to run it
/// unprivileged: no user or group switch, and the log on standard error, which
/// [`ReverseProxy::haproxy`] writes to a file.
pub fn shipped_haproxy(replacements: &[(&str, String)]) -> String {
    let mut all = vec![
        ("    user haproxy\n", String::new()),
        ("    group haproxy\n", String::new()),
        ("log /dev/log local0", "log stderr format raw local0".into()),
        // Unprivileged, HAProxy cannot raise its descriptor limit for 20000 connections.
        ("maxconn 20000", "maxconn 1000".into()),
    ];
    all.extend_from_slice(replacements);
    adapt_shipped("deploy/haproxy.cfg", &all)
}

/// A running nginx or HAProxy, killed when dropped.
pub struct ReverseProxy(Child);

impl ReverseProxy {
    /// Starts nginx with `site` (see [`spawn_nginx`]) and waits until it listens on `port`.
    pub fn nginx(dir: &Path, port: u16, site: &str) -> ReverseProxy {
        let (child, errors) = spawn_nginx(dir, site);
        ReverseProxy(child).wait_listening("nginx", port, &errors)
    }

    /// Starts HAProxy in the foreground with `config`, its log (standard error) in
    /// `dir/haproxy.log`, and waits until it listens on `port`.
    pub fn haproxy(dir: &Path, port: u16, config: &str) -> ReverseProxy {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = haproxy_log(dir);
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("haproxy is installed (scripts/install-test-deps.sh)");
        ReverseProxy(child).wait_listening("haproxy", port, &log)
    }

    /// Sends the proxy's process a signal by name (HAProxy runs as one process with `-db`).
    pub fn signal(&self, name: &str) {
        super::send_signal(self.0.id(), name);
    }

    /// Panics with the proxy's log if it exits first or is not listening within 10 s.
    fn wait_listening(mut self, name: &str, port: u16, log: &Path) -> ReverseProxy {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.0.try_wait() {
                panic!(
                    "{name} exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "{name} did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where [`ReverseProxy::haproxy`] writes HAProxy's log, requests included.
pub fn haproxy_log(dir: &Path) -> PathBuf {
    dir.join("haproxy.log")
}

/// Starts Debian's nginx with `site` (an `http {}`-level config, such as deploy/nginx.conf adapted)
/// inside the frame Debian's /etc/nginx/nginx.conf provides: one process, all paths in `dir`,
/// that dies with its pid. Returns the child and its error log.
fn spawn_nginx(dir: &Path, site: &str) -> (Child, PathBuf) {
    std::fs::write(dir.join("earshot.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n\
         client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         include {d}/earshot.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let errors = dir.join("error.log");
    let child = Command::new("nginx")
        .arg("-e")
        .arg(&errors)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (scripts/install-test-deps.sh)");
    (child, errors)
}
