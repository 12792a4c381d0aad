//! Planned drain and shutdown: stop taking listeners, tell the ones here to move, then exit.
//!
//! A drain (`SIGUSR1`, `POST /api/drain`, or `SIGTERM` with `--drain-on-sigterm`) makes
//! `/healthz` answer 503 `draining` so load balancers send no new listeners, refuses new
//! WebSocket upgrades with 503 (so a balancer retries another instance), and sends every listener
//! `goaway`. Listeners that have not left when `--drain-grace-ms` ends get `bye` and a close, and
//! the process exits 0. A shutdown (`SIGINT`, or `SIGTERM` without the flag) skips the grace.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::server::Server;

/// Starts a drain unless one is under way.
pub fn start(server: &Arc<Server>, why: &str) {
    if !server.begin_drain() {
        return;
    }
    let grace = server.config.drain_grace;
    crate::log!(
        "draining ({why}): /healthz now 503, {} listeners told to move, exit in {} ms",
        server.listener_count(),
        grace.as_millis()
    );
    let timer = server.clone();
    let spawned = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            std::thread::sleep(grace);
            shut_down(&timer, "drain grace period over");
        });
    if spawned.is_err() {
        shut_down(server, "cannot start the drain timer, so no grace period");
    }
}

/// Stops accepting and closes every listener with `bye`; the accept loop then exits.
pub fn shut_down(server: &Server, why: &str) {
    if !server.begin_shutdown() {
        return;
    }
    crate::log!("shutting down: {why}");
    // Wake the accept loop, which is blocked in accept().
    let mut wake = server.local_addr;
    if wake.ip().is_unspecified() {
        wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
}
