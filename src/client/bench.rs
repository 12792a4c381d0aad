//! `earshot bench URL`: a ladder of listener counts, each measured for a fixed time, printed as
//! a table and written as CSV, Markdown and an SVG chart.
//!
//! A step adds listeners to reach its count, lets them settle, then measures a window. The
//! window is defined in sequence numbers: the chunks produced during it, the same set for every
//! listener, so "on time" compares like with like. A chunk is on time when it arrives within
//! `--on-time-ms` of its production; one that never arrives is not. After the window the
//! generator waits that long again so late chunks still count as late rather than missing.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::auth::Secret;
use crate::client::chart;
use crate::client::config::{BenchConfig, ListenCredentials};
use crate::client::connection::{ConnectOptions, Connection, Event, Hello};
use crate::client::endpoint::Scheme;
use crate::client::handshake;
use crate::client::loadgen::{LoadConfig, LoadGen, WindowReport};
use crate::client::procstat::{self, ProcSample, ThreadCpu};
use crate::client::results::{self, StepResult};
use crate::client::stats::ms;
use crate::error::{Error, Result};
use crate::wsclient::Credentials;

/// The targets every step is judged by (BENCHMARKS.md): every listener gets at least this share
/// of chunks on time, and the p99 latency stays below this.
pub const TARGET_SHARE_PCT: f64 = 99.9;
pub const TARGET_P99_MS: f64 = 100.0;
/// File descriptors the process needs besides its listeners.
const SPARE_FDS: u64 = 64;

/// What the bench knows about the stream before it starts.
struct StreamInfo {
    hello: Option<Hello>,
    clock_offset_us: i64,
    /// Bytes per second one listener should receive.
    byte_rate: f64,
    /// The server's CPU before any listener joined, in % of one core.
    idle_cpu_pct: Option<f64>,
    /// The token every listener presents: given, or earned by the probe's password login.
    token: Option<Secret>,
}

pub fn run(config: &BenchConfig) -> Result<()> {
    let most = config.clients.iter().copied().max().unwrap_or(0) as u64;
    if let Some(limit) = procstat::open_file_limit() {
        if limit < most + SPARE_FDS {
            return Err(Error::usage(format!(
                "{most} listeners need {} open files, and the limit is {limit}: \
                 raise it first (ulimit -n {})",
                most + SPARE_FDS,
                most + SPARE_FDS
            )));
        }
    }
    let addr = config.endpoint.resolve()?;
    let mut stream = probe(config, addr)?;
    let server_pid = config.server_pid.or_else(|| local_server(addr));
    print_preamble(config, &stream, server_pid);
    stream.idle_cpu_pct = measure_idle(config, server_pid);
    if let Some(idle) = stream.idle_cpu_pct {
        crate::outln!(
            "server idle (no listeners, {:.1} s): {idle:.2} % of one core",
            config.duration.as_secs_f64()
        );
    }
    let generator = LoadGen::start(LoadConfig {
        endpoint: config.endpoint.clone(),
        addr,
        threads: config.threads,
        poll: config.poll,
        connect_timeout: config.connect_timeout,
        on_time_us: config.on_time.as_micros() as u64,
        chunk_us: stream.hello.as_ref().map_or(20_000.0, Hello::chunk_us),
        clock_offset_us: stream.clock_offset_us,
        token: stream.token.clone(),
    })?;
    crate::outln!("{}", results::table_header());
    let mut steps: Vec<StepResult> = Vec::new();
    let mut nobody_at = None;
    for &target in &config.clients {
        let step = run_step(config, &generator, &stream, server_pid, target);
        crate::outln!("{}", results::table_row(&step));
        let nobody = step.connected == 0;
        steps.push(step);
        write_outputs(config, &steps, &stream)?;
        if nobody {
            nobody_at = Some(target);
            break;
        }
    }
    generator.shutdown();
    print_verdict(&steps, &stream);
    match nobody_at {
        // The steps so far are printed and written; a script still learns the ladder failed.
        Some(target) => Err(Error::source(
            config.endpoint.url(),
            format!("no listener could connect at {target} listeners; the ladder stopped there"),
        )),
        None => Ok(()),
    }
}

/// For a WebSocket stream: the format from `hello`, and the clock offset from a few pings. For
/// an HTTP stream, that it answers and sends ([`probe_http`]).
fn probe(config: &BenchConfig, addr: SocketAddr) -> Result<StreamInfo> {
    if config.endpoint.scheme == Scheme::Http {
        probe_http(config, addr)?;
        return Ok(StreamInfo {
            hello: None,
            clock_offset_us: 0,
            byte_rate: config.byte_rate as f64,
            idle_cpu_pct: None,
            token: None,
        });
    }
    let options = ConnectOptions {
        timeout: config.connect_timeout,
        stall: Some(Duration::from_secs(5)),
    };
    let credentials = match &config.credentials {
        ListenCredentials::None => Credentials::None,
        ListenCredentials::Password(p) => Credentials::Password(p.expose()),
        ListenCredentials::Token(t) => Credentials::Token(t.expose()),
    };
    let mut connection = Connection::open(&config.endpoint, &options, credentials, None)?;
    let token = match &config.credentials {
        ListenCredentials::Token(t) => Some(t.clone()),
        _ => connection.token.clone(),
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    while connection.pongs() < 2 && Instant::now() < deadline {
        if let Event::Closed(c) = connection.next_event(deadline) {
            return Err(Error::source(config.endpoint.url(), c.reason));
        }
    }
    let hello = connection.hello.clone();
    let clock_offset_us = connection.clock.offset_us();
    connection.close();
    // One binary message per chunk: the 16-byte header, the samples, and the frame header
    // (4 bytes for messages of 126 to 65535 bytes, 10 beyond).
    let payload = 16 + hello.format.bytes_for(hello.chunk_frames);
    let frame_head = if payload < 126 {
        2
    } else if payload < 65_536 {
        4
    } else {
        10
    };
    let byte_rate = (payload + frame_head) as f64 * 1e6 / hello.chunk_us();
    Ok(StreamInfo {
        hello: Some(hello),
        clock_offset_us,
        byte_rate,
        idle_cpu_pct: None,
        token,
    })
}

/// One GET, made as every listener makes it, that must be answered 200 and bring audio within
/// `--connect-timeout-ms`: a wrong mount, port or stream is one clear error before the ladder,
/// not a table of listeners that never connected.
fn probe_http(config: &BenchConfig, addr: SocketAddr) -> Result<()> {
    let url = config.endpoint.url();
    let timeout = config.connect_timeout;
    let (mut stream, first) = handshake::open(&config.endpoint, addr, timeout, None)
        .map_err(|e| Error::source(&url, e))?;
    if !first.is_empty() {
        return Ok(());
    }
    stream
        .set_nonblocking(false)
        .map_err(|e| Error::io(format!("{url}: blocking read"), e))?;
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => Err(Error::source(
            &url,
            "the server closed the stream before sending any audio",
        )),
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(Error::source(
                &url,
                format!("no audio within {:.1} s", timeout.as_secs_f64()),
            ))
        }
        Err(e) => Err(Error::source(&url, format!("read: {e}"))),
    }
}

/// The server's pid when it runs on this machine.
fn local_server(addr: SocketAddr) -> Option<u32> {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        procstat::find_listener(addr.port())
    } else {
        None
    }
}

fn print_preamble(config: &BenchConfig, stream: &StreamInfo, server_pid: Option<u32>) {
    let what = match &stream.hello {
        Some(h) => format!(
            "{} {} Hz {} ch, {} ms chunks, instance {}",
            h.codec, h.format.sample_rate, h.format.channels, h.chunk_ms, h.instance
        ),
        None => format!(
            "HTTP stream, expecting {} bytes/s per listener",
            config.byte_rate
        ),
    };
    let pid = server_pid.map_or("not found (no CPU or RSS figures)".to_string(), |p| {
        p.to_string()
    });
    // An HTTP stream has no production times: it is judged on the bytes it delivers.
    let judged = match &stream.hello {
        Some(_) => format!(
            "on time = within {} ms of production",
            config.on_time.as_millis()
        ),
        None => "no timestamps: judged on bytes delivered".to_string(),
    };
    crate::outln!("earshot bench {} ({what})", config.endpoint.url());
    crate::outln!(
        "server pid {pid}; {} generator threads, {} cores; {:.1} s per step after {:.1} s settling; \
         {judged}",
        config.threads,
        procstat::cores(),
        config.duration.as_secs_f64(),
        config.settle.as_secs_f64(),
    );
}

/// Counters sampled at both ends of a window.
struct Snapshot {
    at: Instant,
    server: Option<ProcSample>,
    server_cpu: Option<ThreadCpu>,
    server_switches: Option<u64>,
    me: Option<ProcSample>,
    my_cpu: Option<ThreadCpu>,
    machine_busy_s: Option<f64>,
}

impl Snapshot {
    fn take(server_pid: Option<u32>) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            server: server_pid.and_then(procstat::sample),
            server_cpu: server_pid.and_then(ThreadCpu::of),
            server_switches: server_pid.and_then(procstat::context_switches),
            me: procstat::sample_self(),
            my_cpu: ThreadCpu::of(std::process::id()),
            machine_busy_s: procstat::machine_busy_s(),
        }
    }
}

/// A process's CPU over a window in % of one core: exact from its threads' counters, or from
/// `/proc/PID/stat`'s ticks where those cannot be read.
fn cpu_pct(
    threads: (&Option<ThreadCpu>, &Option<ThreadCpu>),
    process: (Option<ProcSample>, Option<ProcSample>),
    window_s: f64,
) -> Option<f64> {
    let seconds = match threads {
        (Some(a), Some(b)) => b.seconds_since(a),
        _ => process.1?.cpu_s - process.0?.cpu_s,
    };
    Some(seconds / window_s * 100.0)
}

/// The server's CPU with none of this generator's listeners, over one step's duration: what
/// it spends producing the stream (or, for Icecast, taking in its feed), so that each step can
/// also say what a listener adds.
fn measure_idle(config: &BenchConfig, server_pid: Option<u32>) -> Option<f64> {
    server_pid?;
    let before = Snapshot::take(server_pid);
    std::thread::sleep(config.duration);
    let after = Snapshot::take(server_pid);
    let window_s = (after.at - before.at).as_secs_f64().max(1e-3);
    cpu_pct(
        (&before.server_cpu, &after.server_cpu),
        (before.server, after.server),
        window_s,
    )
}

fn run_step(
    config: &BenchConfig,
    generator: &LoadGen,
    stream: &StreamInfo,
    server_pid: Option<u32>,
    target: usize,
) -> StepResult {
    let grow = generator.grow_to(target);
    if let Some(e) = &grow.first_error {
        eprintln!(
            "earshot: bench: {} of {target} listeners could not connect (first: {e})",
            grow.failures
        );
    }
    std::thread::sleep(config.settle);
    let connected = generator.alive();
    let before = Snapshot::take(server_pid);
    let from_seq = generator.live_edge().map_or(0, |e| e + 1);
    generator.start_window(from_seq);
    std::thread::sleep(config.duration);
    let to_seq = generator.live_edge().map_or(0, |e| e + 1);
    generator.end_window(to_seq);
    let after = Snapshot::take(server_pid);
    // Chunks late by up to the on-time limit still arrive and count (as late).
    std::thread::sleep(config.on_time + 2 * config.poll + Duration::from_millis(50));
    let report = generator.collect();
    let due = if stream.hello.is_some() {
        to_seq.saturating_sub(from_seq)
    } else {
        0
    };
    summarise(
        config,
        stream,
        target,
        connected,
        grow.failures,
        grow.took,
        due,
        &before,
        &after,
        report,
    )
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    config: &BenchConfig,
    stream: &StreamInfo,
    target: usize,
    connected: usize,
    failures: usize,
    ramp: Duration,
    due: u64,
    before: &Snapshot,
    after: &Snapshot,
    report: WindowReport,
) -> StepResult {
    let window_s = (after.at - before.at).as_secs_f64().max(1e-3);
    let listeners = &report.listeners;
    let expected_bytes = stream.byte_rate * window_s;
    let delivered: Vec<f64> = listeners
        .iter()
        .map(|l| l.bytes as f64 / expected_bytes * 100.0)
        .collect();
    let shares: Vec<f64> = if due > 0 {
        listeners
            .iter()
            .map(|l| l.on_time.min(due) as f64 / due as f64 * 100.0)
            .collect()
    } else {
        Vec::new()
    };
    let on_time_total: u64 = listeners.iter().map(|l| l.on_time.min(due)).sum();
    let received: u64 = listeners.iter().map(|l| l.received).sum();
    let has_timing = stream.hello.is_some() && !listeners.is_empty();
    let jitters: Vec<f64> = listeners.iter().map(|l| l.jitter_ms).collect();
    StepResult {
        label: config.label.clone(),
        target,
        connected,
        connect_failures: failures,
        dropped: report.dropped,
        window_s,
        on_time_pct: (has_timing && due > 0)
            .then(|| on_time_total as f64 / (due * listeners.len() as u64) as f64 * 100.0),
        worst_pct: shares.iter().copied().reduce(f64::min),
        below_target: (has_timing && due > 0)
            .then(|| shares.iter().filter(|s| **s < TARGET_SHARE_PCT).count()),
        delivered_pct: if delivered.is_empty() {
            0.0
        } else {
            delivered.iter().sum::<f64>() / delivered.len() as f64
        },
        worst_delivered_pct: delivered.iter().copied().reduce(f64::min).unwrap_or(0.0),
        p50_ms: report.latency.percentile(0.5).map(ms),
        p99_ms: report.latency.percentile(0.99).map(ms),
        max_ms: report.latency.max().map(ms),
        jitter_ms: (has_timing).then(|| jitters.iter().sum::<f64>() / jitters.len() as f64),
        jitter_max_ms: if has_timing {
            jitters.iter().copied().reduce(f64::max)
        } else {
            None
        },
        gaps: report.gaps,
        gap_chunks: report.gap_chunks,
        skips: report.skips,
        skipped_chunks: report.skipped_chunks,
        mbytes_per_s: report.bytes as f64 / window_s / 1e6,
        server_cpu_pct: cpu_pct(
            (&before.server_cpu, &after.server_cpu),
            (before.server, after.server),
            window_s,
        ),
        server_idle_cpu_pct: stream.idle_cpu_pct,
        server_rss_mib: after.server.map(|s| s.rss_kib as f64 / 1024.0),
        server_threads: after.server.map(|s| s.threads),
        server_switches_per_s: match (before.server_switches, after.server_switches) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / window_s),
            _ => None,
        },
        gen_cpu_pct: cpu_pct(
            (&before.my_cpu, &after.my_cpu),
            (before.me, after.me),
            window_s,
        ),
        // Against wall-clock time: a virtual machine's tick counters stall while the host
        // runs someone else, so their own total would understate how busy it was.
        machine_busy_pct: match (before.machine_busy_s, after.machine_busy_s) {
            (Some(b0), Some(b1)) => Some((b1 - b0) / (window_s * procstat::cores() as f64) * 100.0),
            _ => None,
        },
        lag_p99_ms: report.lag.percentile(0.99).map(ms),
        reads_per_chunk: (received > 0).then(|| report.reads as f64 / received as f64),
        ramp_s: ramp.as_secs_f64(),
    }
}

fn write_outputs(config: &BenchConfig, steps: &[StepResult], stream: &StreamInfo) -> Result<()> {
    let write = |path: &Path, text: String| {
        std::fs::write(path, text)
            .map_err(|e| Error::io(format!("{}: cannot write", path.display()), e))
    };
    if let Some(path) = &config.csv {
        write(path, results::csv(steps))?;
    }
    if let Some(path) = &config.markdown {
        write(path, results::markdown(steps))?;
    }
    if let Some(path) = &config.svg {
        let title = match &stream.hello {
            Some(h) => format!(
                "{} {}: {} Hz {} ch, {} ms chunks, {:.0} s per step",
                config.label,
                config.endpoint.url(),
                h.format.sample_rate,
                h.format.channels,
                h.chunk_ms,
                config.duration.as_secs_f64()
            ),
            None => format!("{} {}", config.label, config.endpoint.url()),
        };
        let measure = match &stream.hello {
            Some(_) => format!(
                "on time = within {} ms of production",
                config.on_time.as_millis()
            ),
            None => format!("{} bytes/s expected per listener", config.byte_rate),
        };
        let subtitle = format!(
            "{} cores; {measure}; measured {}",
            procstat::cores(),
            crate::log::utc_timestamp(std::time::SystemTime::now())
        );
        let on_time_ms = config.on_time.as_secs_f64() * 1000.0;
        write(path, chart::render(&title, &subtitle, steps, on_time_ms))?;
    }
    Ok(())
}

/// Which steps met the targets and which missed them, and why: on a shared machine one step can
/// miss while a larger one meets them, so every step is judged, not just the first miss. An
/// HTTP stream carries no timestamps, so for one the line says what share of the expected bytes
/// each step delivered instead.
fn print_verdict(steps: &[StepResult], stream: &StreamInfo) {
    if stream.hello.is_none() {
        let shares: Vec<String> = steps
            .iter()
            .map(|s| {
                format!(
                    "{}: {:.1} % (worst listener {:.1} %)",
                    s.target, s.delivered_pct, s.worst_delivered_pct
                )
            })
            .collect();
        crate::outln!(
            "bytes delivered, of {:.0} bytes/s per listener: {}",
            stream.byte_rate,
            shares.join("; ")
        );
        return;
    }
    let meets = |s: &StepResult| {
        s.connected == s.target
            && s.worst_pct.is_some_and(|w| w >= TARGET_SHARE_PCT)
            && s.p99_ms.is_some_and(|p| p < TARGET_P99_MS)
    };
    let met: Vec<String> = steps
        .iter()
        .filter(|s| meets(s))
        .map(|s| s.target.to_string())
        .collect();
    let missed: Vec<String> = steps
        .iter()
        .filter(|s| !meets(s))
        .map(|s| {
            format!(
                "{} ({} connected, worst listener {} % on time, p99 {} ms)",
                s.target,
                s.connected,
                s.worst_pct.map_or("-".into(), |v| format!("{v:.2}")),
                s.p99_ms.map_or("-".into(), |v| format!("{v:.1}"))
            )
        })
        .collect();
    let none = || "none".to_string();
    crate::outln!(
        "target (every listener >= {TARGET_SHARE_PCT} % of chunks on time, p99 < {TARGET_P99_MS} \
         ms) met at: {}",
        if met.is_empty() {
            none()
        } else {
            met.join(", ")
        }
    );
    crate::outln!(
        "target missed at: {}",
        if missed.is_empty() {
            none()
        } else {
            missed.join("; ")
        }
    );
}
