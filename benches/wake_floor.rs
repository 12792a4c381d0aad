//! The CPU a thread per listener costs before it sends a byte: threads that only wake on a
//! shared grid of chunk times, the way earshot's sessions do, and go back to sleep; and, for
//! comparison, the same audio sent by a thread per listener and by a small pool of senders.
//!
//! earshot's sessions each sleep in a socket read whose timeout ends when their next chunk is
//! due (src/session.rs). Whatever a session does once awake (copy, frame, send), the wake-up
//! itself is a floor under its CPU per listener. This measures that floor on the machine it
//! runs on, for the listener counts and chunk periods of the Icecast comparison, so that
//! BENCHMARKS.md can say which targets one thread per listener can reach at all, with a
//! command anyone can re-run:
//!
//! ```sh
//! make bench-floor        # cargo bench --bench wake_floor -- --threads 1,10,50,100,200 ...
//! ```
//!
//! Four modes (`--mode`):
//!
//! - `socket`: a thread per listener waits in a read with a timeout on an idle loopback TCP
//!   connection (what a session does, so that a client's ping is answered at once) and sends
//!   nothing;
//! - `sleep`: the same, with `std::thread::sleep` to the deadline (the least any design with a
//!   thread per listener could pay, if it gave up reading while it waits);
//! - `send`: `socket`, and at each wake one write of the audio due since the last (44.1 kHz
//!   16-bit stereo by default: 3,528 bytes per 20 ms) to its connection: a session with no ring,
//!   no framing and no bookkeeping, the least a thread per listener pays to deliver the stream;
//! - `pool`: `--senders` threads (one by default, as Icecast serves its listeners from one),
//!   each sleeping to the grid and then writing the same audio to its share of the listeners'
//!   non-blocking sockets: the least a sender pool (the design BENCHMARKS.md names as the step
//!   beyond a thread per listener) would pay. A real pool would also watch its sockets for client
//!   messages (pings, closes), which this one does not.
//!
//! In `send` and `pool` one more thread reads every connection's other end, as the listeners
//! would; its CPU is not counted (it is the load generator's, not the server's). CPU is the sum
//! of the measured threads' run time from `/proc/self/task/*/schedstat`, in nanoseconds. Under
//! `cargo test` (no `--bench` argument) it runs one short step of each mode and checks that the
//! threads woke and the audio arrived, so `make test` keeps it working.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use earshot::client::procstat;
use earshot::session;

/// What the measured threads do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A thread per listener, waiting in a read with a timeout on an idle socket, as earshot's
    /// sessions wait; sends nothing.
    Socket,
    /// A thread per listener, `thread::sleep` to the deadline; sends nothing.
    Sleep,
    /// `Socket`, plus one write per wake of the audio due since the last.
    Send,
    /// A few senders, each writing every chunk to its share of the listeners' sockets.
    Pool,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Socket, Mode::Sleep, Mode::Send, Mode::Pool];

    fn name(self) -> &'static str {
        match self {
            Mode::Socket => "socket",
            Mode::Sleep => "sleep",
            Mode::Send => "send",
            Mode::Pool => "pool",
        }
    }

    fn sends(self) -> bool {
        matches!(self, Mode::Send | Mode::Pool)
    }
}

/// One measured step: `listeners` served in `mode`, each woken (or written to) every `period`.
#[derive(Debug, Clone, Copy)]
struct Step {
    listeners: usize,
    period: Duration,
    mode: Mode,
    /// Bytes written per listener per wake (0 where the mode sends nothing).
    bytes_per_wake: usize,
    /// Sender threads in `Pool` (never more than listeners).
    senders: usize,
}

/// What a step measured.
struct Outcome {
    cpu: Duration,
    wall: Duration,
    /// Wake-ups of the measured threads.
    wakes: u64,
    /// Bytes the reading ends received during the measured window.
    received: u64,
    /// Writes a pool sender found its socket full for (the audio was then cut short).
    blocked: u64,
}

struct Options {
    listeners: Vec<usize>,
    periods_ms: Vec<u64>,
    modes: Vec<Mode>,
    byte_rate: usize,
    senders: usize,
    seconds: f64,
    settle: f64,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wake_floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return smoke_test();
    }
    let options = parse(&args)?;
    println!(
        "listeners served on a shared grid of chunk times; CPU of the measured threads from \
         /proc/self/task/*/schedstat; {} s per step after {} s to settle; `send` and `pool` \
         write {} bytes/s per listener; `pool` has {} sender thread(s); {} cores",
        options.seconds,
        options.settle,
        options.byte_rate,
        options.senders,
        procstat::cores()
    );
    println!();
    println!(
        "| listeners | every ms | mode | wakes/s | CPU % of one core | µs per listener-second | µs per wake | MB/s received |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|");
    for &period_ms in &options.periods_ms {
        for &mode in &options.modes {
            for &listeners in &options.listeners {
                let step = Step {
                    listeners,
                    period: Duration::from_millis(period_ms),
                    mode,
                    bytes_per_wake: bytes_per_wake(mode, options.byte_rate, period_ms),
                    senders: options.senders.min(listeners),
                };
                let outcome = measure(
                    step,
                    Duration::from_secs_f64(options.settle),
                    Duration::from_secs_f64(options.seconds),
                )?;
                if outcome.blocked > 0 {
                    eprintln!(
                        "wake_floor: {} writes found a full socket in {listeners} × {} every \
                         {period_ms} ms: the reader fell behind, so less was sent",
                        outcome.blocked,
                        mode.name()
                    );
                }
                let wall = outcome.wall.as_secs_f64();
                let cpu_us = outcome.cpu.as_secs_f64() * 1e6;
                println!(
                    "| {listeners} | {period_ms} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {:.2} |",
                    mode.name(),
                    outcome.wakes as f64 / wall,
                    cpu_us / wall / 1e4,
                    cpu_us / wall / listeners as f64,
                    cpu_us / outcome.wakes.max(1) as f64,
                    outcome.received as f64 / wall / 1e6,
                );
            }
        }
    }
    Ok(())
}

fn bytes_per_wake(mode: Mode, byte_rate: usize, period_ms: u64) -> usize {
    if mode.sends() {
        (byte_rate as u64 * period_ms / 1000) as usize
    } else {
        0
    }
}

/// Under `cargo test`: a short step of each mode, checking that the threads woke about as often
/// as the grid says and that what was sent arrived (not a timing target: a step of 0.5 s at
/// 20 ms is 25 wakes per thread, and anything from half of that passes).
fn smoke_test() -> Result<(), String> {
    for mode in Mode::ALL {
        let step = Step {
            listeners: 4,
            period: Duration::from_millis(20),
            mode,
            bytes_per_wake: bytes_per_wake(mode, 176_400, 20),
            senders: 2,
        };
        let outcome = measure(step, Duration::from_millis(100), Duration::from_millis(500))?;
        let periods = outcome.wall.as_secs_f64() / 0.020;
        let senders = match mode {
            Mode::Pool => step.senders,
            _ => step.listeners,
        };
        let expected_wakes = senders as f64 * periods;
        let expected_bytes = (step.listeners * step.bytes_per_wake) as f64 * periods;
        if (outcome.wakes as f64) < expected_wakes / 2.0
            || outcome.cpu.is_zero()
            || (outcome.received as f64) < expected_bytes / 2.0
            || outcome.blocked > 0
        {
            return Err(format!(
                "{} listeners in mode {}: {} wakes in {:?} (expected about {expected_wakes:.0}), \
                 {} bytes received (expected about {expected_bytes:.0}), {} blocked writes, \
                 {:?} of CPU",
                step.listeners,
                mode.name(),
                outcome.wakes,
                outcome.wall,
                outcome.received,
                outcome.blocked,
                outcome.cpu
            ));
        }
    }
    println!("wake_floor: smoke test passed (run it with `make bench-floor`)");
    Ok(())
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        listeners: vec![1, 10, 50, 100, 200],
        periods_ms: vec![20, 60],
        modes: Mode::ALL.to_vec(),
        byte_rate: 176_400,
        senders: 1,
        seconds: 10.0,
        settle: 2.0,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match arg.as_str() {
            "--bench" => {}
            // --threads is the name the first version of this bench had for it.
            "--listeners" | "--threads" => options.listeners = list(&value(arg)?, arg)?,
            "--period-ms" => options.periods_ms = list(&value(arg)?, arg)?,
            "--byte-rate" => options.byte_rate = number(&value(arg)?, arg)? as usize,
            "--senders" => options.senders = number(&value(arg)?, arg)? as usize,
            "--seconds" => options.seconds = number(&value(arg)?, arg)?,
            "--settle" => options.settle = number(&value(arg)?, arg)?,
            "--mode" | "--wait" => {
                options.modes = value(arg)?
                    .split(',')
                    .map(|m| {
                        Mode::ALL
                            .into_iter()
                            .find(|mode| mode.name() == m.trim())
                            .ok_or_else(|| {
                                format!("{arg}: {m:?} is not one of socket, sleep, send, pool")
                            })
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if options.listeners.contains(&0) || options.periods_ms.contains(&0) {
        return Err("--listeners and --period-ms take counts above 0".into());
    }
    if options.seconds <= 0.0 || options.settle < 0.0 {
        return Err("--seconds must be above 0 and --settle not below 0".into());
    }
    if options.byte_rate == 0 || options.senders == 0 {
        return Err("--byte-rate and --senders must be above 0".into());
    }
    Ok(options)
}

fn list<T: std::str::FromStr>(text: &str, flag: &str) -> Result<Vec<T>, String> {
    text.split(',')
        .map(|item| {
            item.trim()
                .parse()
                .map_err(|_| format!("{flag}: {item:?} is not a number"))
        })
        .collect()
}

fn number(text: &str, flag: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number"))
}

/// Shared between the step's threads.
struct Shared {
    stop: AtomicBool,
    wakes: AtomicU64,
    received: AtomicU64,
    blocked: AtomicU64,
}

/// Starts the step's threads, lets them settle, and measures them for `length`.
fn measure(step: Step, settle: Duration, length: Duration) -> Result<Outcome, String> {
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        wakes: AtomicU64::new(0),
        received: AtomicU64::new(0),
        blocked: AtomicU64::new(0),
    });
    // The grid starts in the future so that every thread is asleep before the first chunk time,
    // and all wake for the same ones, like sessions waking together below 200 listeners.
    let grid = Instant::now() + Duration::from_millis(50);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    // The listeners' sockets (the server's ends) and the other ends, which stay open until the
    // step ends: silent, so reads on the server's ends only time out, and read by the reader
    // thread where the mode sends.
    let mut sockets = Vec::with_capacity(step.listeners);
    let mut peers = Vec::with_capacity(step.listeners);
    if step.mode != Mode::Sleep {
        for _ in 0..step.listeners {
            let socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            let _ = socket.set_nodelay(true);
            sockets.push(socket);
            peers.push(listener.accept().map_err(|e| format!("accept: {e}"))?.0);
        }
    }
    let (tid_tx, tid_rx) = mpsc::channel();
    let mut handles = Vec::new();
    let mut spawn = |name: &str, work: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        let tid_tx = tid_tx.clone();
        thread::Builder::new()
            .name(name.into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tid_tx.send(thread_id());
                // Dropped here, not when the thread ends, so that the ids can all be collected.
                drop(tid_tx);
                work()
            })
            .map(|handle| handles.push(handle))
            .map_err(|e| format!("spawning thread: {e}"))
    };
    let payload = Arc::new(vec![0x55u8; step.bytes_per_wake]);
    match step.mode {
        Mode::Sleep => {
            for _ in 0..step.listeners {
                let shared = Arc::clone(&shared);
                let period = step.period;
                spawn(
                    "sleeper",
                    Box::new(move || sleep_and_send(grid, period, Vec::new(), &[], &shared)),
                )?;
            }
        }
        Mode::Socket | Mode::Send => {
            for socket in sockets.drain(..) {
                let (shared, payload) = (Arc::clone(&shared), Arc::clone(&payload));
                let period = step.period;
                spawn(
                    "session",
                    Box::new(move || session_on_grid(grid, period, socket, &payload, &shared)),
                )?;
            }
        }
        Mode::Pool => {
            let count = step.senders;
            let mut shares: Vec<Vec<TcpStream>> = (0..count).map(|_| Vec::new()).collect();
            for (i, socket) in sockets.drain(..).enumerate() {
                socket
                    .set_nonblocking(true)
                    .map_err(|e| format!("set_nonblocking: {e}"))?;
                shares[i % count].push(socket);
            }
            for share in shares {
                let (shared, payload) = (Arc::clone(&shared), Arc::clone(&payload));
                let period = step.period;
                spawn(
                    "sender",
                    Box::new(move || sleep_and_send(grid, period, share, &payload, &shared)),
                )?;
            }
        }
    }
    drop(tid_tx);
    let measured: Vec<u32> = tid_rx.iter().collect();
    // The reader is started after the measured threads' ids are all in, and is not measured.
    let reader = if step.mode.sends() {
        let shared = Arc::clone(&shared);
        let period = step.period;
        let peers = std::mem::take(&mut peers);
        Some(
            thread::Builder::new()
                .name("reader".into())
                .spawn(move || read_on_grid(grid, period, peers, &shared))
                .map_err(|e| format!("spawning the reader: {e}"))?,
        )
    } else {
        None
    };
    thread::sleep(settle);
    let cpu0 = cpu_ns(&measured)?;
    let (wakes0, received0, start) = (
        shared.wakes.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
        Instant::now(),
    );
    thread::sleep(length);
    let cpu1 = cpu_ns(&measured)?;
    let (wakes1, received1, wall) = (
        shared.wakes.load(Ordering::Relaxed),
        shared.received.load(Ordering::Relaxed),
        start.elapsed(),
    );
    shared.stop.store(true, Ordering::Relaxed);
    for handle in handles.into_iter().chain(reader) {
        handle
            .join()
            .map_err(|_| "a measured thread panicked".to_string())??;
    }
    drop(peers);
    Ok(Outcome {
        cpu: Duration::from_nanos(cpu1.saturating_sub(cpu0)),
        wall,
        wakes: wakes1 - wakes0,
        received: received1 - received0,
        blocked: shared.blocked.load(Ordering::Relaxed),
    })
}

/// The next grid time after `now`.
fn next_after(mut next: Instant, period: Duration, now: Instant) -> Instant {
    while next <= now {
        next += period;
    }
    next
}

/// Sleeps to each grid time from `first` on, and runs `at_time` there, until told to stop.
fn every_grid_time(
    first: Instant,
    period: Duration,
    shared: &Shared,
    mut at_time: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let mut next = first;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            thread::sleep(next - now);
            continue;
        }
        at_time()?;
        next = next_after(next, period, now);
    }
    Ok(())
}

/// `Socket` and `Send`: a session's wait, a read with a timeout until the grid time, with the
/// session's own rule for when to set the timeout again; then, for `Send`, one write.
fn session_on_grid(
    grid: Instant,
    period: Duration,
    mut socket: TcpStream,
    payload: &[u8],
    shared: &Shared,
) -> Result<(), String> {
    let mut next = grid;
    let mut timeout: Option<Duration> = None;
    let mut buf = [0u8; 64];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            let wait = next - now;
            if let Some(wanted) = session::read_timeout_to_set(timeout, wait) {
                socket
                    .set_read_timeout(Some(wanted))
                    .map_err(|e| format!("set_read_timeout: {e}"))?;
                timeout = Some(wanted);
            }
            match socket.read(&mut buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // At the end of a step the other ends close, some with data unread.
                _ if shared.stop.load(Ordering::Relaxed) => break,
                Err(e) => return Err(format!("read: {e}")),
                Ok(_) => return Err("the idle peer sent data".into()),
            }
            continue;
        }
        shared.wakes.fetch_add(1, Ordering::Relaxed);
        if !payload.is_empty() {
            if let Err(e) = socket.write_all(payload) {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                return Err(format!("write: {e}"));
            }
        }
        next = next_after(next, period, now);
    }
    Ok(())
}

/// `Sleep` (no sockets) and `Pool`: sleeps to each grid time, then writes the chunk to each
/// of its listeners' sockets.
fn sleep_and_send(
    grid: Instant,
    period: Duration,
    mut sockets: Vec<TcpStream>,
    payload: &[u8],
    shared: &Shared,
) -> Result<(), String> {
    every_grid_time(grid, period, shared, || {
        shared.wakes.fetch_add(1, Ordering::Relaxed);
        for socket in &mut sockets {
            match socket.write(payload) {
                Ok(n) if n == payload.len() => {}
                Ok(_) => {
                    shared.blocked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    shared.blocked.fetch_add(1, Ordering::Relaxed);
                }
                _ if shared.stop.load(Ordering::Relaxed) => return Ok(()),
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    })
}

/// The listeners' side (not measured): a few milliseconds after each grid time, reads every
/// connection until it has nothing more.
fn read_on_grid(
    grid: Instant,
    period: Duration,
    mut peers: Vec<TcpStream>,
    shared: &Shared,
) -> Result<(), String> {
    for peer in &peers {
        peer.set_nonblocking(true)
            .map_err(|e| format!("set_nonblocking: {e}"))?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    every_grid_time(grid + Duration::from_millis(3), period, shared, || {
        for peer in &mut peers {
            loop {
                match peer.read(&mut buf) {
                    // At the end of a step the measured threads close their ends.
                    _ if shared.stop.load(Ordering::Relaxed) => return Ok(()),
                    Ok(0) => return Err("a listener's connection closed".into()),
                    Ok(n) => {
                        shared.received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
        Ok(())
    })
}

/// This thread's id, as `/proc/self/task` names it.
fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|path| path.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// The run time so far of the given threads, in nanoseconds, from their schedstat.
fn cpu_ns(threads: &[u32]) -> Result<u64, String> {
    let mut total = 0;
    for &tid in threads {
        let path = format!("/proc/self/task/{tid}/schedstat");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no run time in {text:?}"))?;
    }
    Ok(total)
}
