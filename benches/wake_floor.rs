//! The CPU a thread per listener costs before it sends a byte: threads that only wake on a
//! shared grid of chunk times, the way earshot's sessions do, and go back to sleep.
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
//! Two ways to sleep are measured: `socket`, a read with a timeout on an idle loopback TCP
//! connection (what a session does, so that a client's ping is answered at once), and `sleep`,
//! `std::thread::sleep` to the deadline (the least any design with a thread per listener could
//! pay, if it gave up reading while it waits). CPU is the sum of every thread's run time from
//! `/proc/self/task/*/schedstat`, in nanoseconds. Under `cargo test` (no `--bench` argument)
//! it runs one short step and checks that every thread woke, so `make test` keeps it working.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use earshot::client::procstat::ThreadCpu;
use earshot::session;

/// How a measured thread waits for its next chunk time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A read with a timeout on an idle socket, as earshot's sessions wait.
    Socket,
    /// `thread::sleep` to the deadline.
    Sleep,
}

impl Wait {
    fn name(self) -> &'static str {
        match self {
            Wait::Socket => "socket",
            Wait::Sleep => "sleep",
        }
    }
}

/// One measured step: `threads` threads waking every `period`, waiting by `wait`.
#[derive(Debug, Clone, Copy)]
struct Step {
    threads: usize,
    period: Duration,
    wait: Wait,
}

/// What a step measured.
struct Outcome {
    cpu: Duration,
    wall: Duration,
    wakes: u64,
}

struct Options {
    threads: Vec<usize>,
    periods_ms: Vec<u64>,
    waits: Vec<Wait>,
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
        "threads waking on a shared grid of chunk times; CPU from /proc/self/task/*/schedstat; \
         {} s per step after {} s to settle",
        options.seconds, options.settle
    );
    println!();
    println!(
        "| threads | every ms | waits in | wakes/s | CPU % of one core | µs per thread-second | µs per wake |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for &period_ms in &options.periods_ms {
        for &wait in &options.waits {
            for &threads in &options.threads {
                let step = Step {
                    threads,
                    period: Duration::from_millis(period_ms),
                    wait,
                };
                let outcome = measure(
                    step,
                    Duration::from_secs_f64(options.settle),
                    Duration::from_secs_f64(options.seconds),
                )?;
                let wall = outcome.wall.as_secs_f64();
                let cpu_us = outcome.cpu.as_secs_f64() * 1e6;
                println!(
                    "| {threads} | {period_ms} | {} | {:.0} | {:.2} | {:.0} | {:.1} |",
                    wait.name(),
                    outcome.wakes as f64 / wall,
                    cpu_us / wall / 1e4,
                    cpu_us / wall / threads as f64,
                    cpu_us / outcome.wakes.max(1) as f64,
                );
            }
        }
    }
    Ok(())
}

/// Under `cargo test`: a short step of each kind, checking that the threads woke about as often
/// as the grid says (not a timing target: a step of 0.5 s at 20 ms is 25 wakes per thread, and
/// anything from half of that passes).
fn smoke_test() -> Result<(), String> {
    for wait in [Wait::Socket, Wait::Sleep] {
        let step = Step {
            threads: 4,
            period: Duration::from_millis(20),
            wait,
        };
        let outcome = measure(step, Duration::from_millis(100), Duration::from_millis(500))?;
        let expected = step.threads as f64 * outcome.wall.as_secs_f64() / 0.020;
        if (outcome.wakes as f64) < expected / 2.0 || outcome.cpu.is_zero() {
            return Err(format!(
                "{} threads waiting in {}: {} wakes in {:?} (expected about {expected:.0}), \
                 {:?} of CPU",
                step.threads,
                wait.name(),
                outcome.wakes,
                outcome.wall,
                outcome.cpu
            ));
        }
    }
    println!("wake_floor: smoke test passed (run it with `make bench-floor`)");
    Ok(())
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        threads: vec![1, 10, 50, 100, 200],
        periods_ms: vec![20, 60],
        waits: vec![Wait::Socket, Wait::Sleep],
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
            "--threads" => options.threads = list(&value(arg)?, arg)?,
            "--period-ms" => options.periods_ms = list(&value(arg)?, arg)?,
            "--seconds" => options.seconds = number(&value(arg)?, arg)?,
            "--settle" => options.settle = number(&value(arg)?, arg)?,
            "--wait" => {
                options.waits = value(arg)?
                    .split(',')
                    .map(|w| match w {
                        "socket" => Ok(Wait::Socket),
                        "sleep" => Ok(Wait::Sleep),
                        _ => Err(format!("--wait: {w:?} is neither socket nor sleep")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if options.threads.contains(&0) || options.periods_ms.contains(&0) {
        return Err("--threads and --period-ms take counts above 0".into());
    }
    if options.seconds <= 0.0 || options.settle < 0.0 {
        return Err("--seconds must be above 0 and --settle not below 0".into());
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

/// Starts the step's threads, lets them settle, and measures them for `length`.
fn measure(step: Step, settle: Duration, length: Duration) -> Result<Outcome, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let wakes = Arc::new(AtomicU64::new(0));
    // The grid starts in the future so that every thread is asleep before the first chunk time,
    // and all wake for the same ones, like sessions waking together below 200 listeners.
    let grid = Instant::now() + Duration::from_millis(50);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    let mut handles = Vec::with_capacity(step.threads);
    // The accepted ends stay open (and silent) until the step ends, so reads only time out.
    let mut peers = Vec::with_capacity(step.threads);
    for _ in 0..step.threads {
        let socket = match step.wait {
            Wait::Socket => {
                let socket = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                peers.push(listener.accept().map_err(|e| format!("accept: {e}"))?.0);
                Some(socket)
            }
            Wait::Sleep => None,
        };
        let (stop, wakes) = (Arc::clone(&stop), Arc::clone(&wakes));
        let period = step.period;
        let handle = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || wake_on_grid(grid, period, socket, &stop, &wakes))
            .map_err(|e| format!("spawning thread: {e}"))?;
        handles.push(handle);
    }
    thread::sleep(settle);
    let (cpu0, wakes0, start) = (cpu_time()?, wakes.load(Ordering::Relaxed), Instant::now());
    thread::sleep(length);
    let (cpu1, wakes1, wall) = (cpu_time()?, wakes.load(Ordering::Relaxed), start.elapsed());
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle
            .join()
            .map_err(|_| "a measured thread panicked".to_string())??;
    }
    drop(peers);
    Ok(Outcome {
        cpu: Duration::from_secs_f64(cpu1.seconds_since(&cpu0)),
        wall,
        wakes: wakes1 - wakes0,
    })
}

/// One measured thread: wakes at every grid time until told to stop.
fn wake_on_grid(
    grid: Instant,
    period: Duration,
    mut socket: Option<TcpStream>,
    stop: &AtomicBool,
    wakes: &AtomicU64,
) -> Result<(), String> {
    let mut next = grid;
    let mut timeout: Option<Duration> = None;
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            let wait = next - now;
            match socket.as_mut() {
                None => thread::sleep(wait),
                Some(socket) => {
                    // With the session's own rule for when to set the timeout again.
                    if let Some(wanted) = session::read_timeout_to_set(timeout, wait) {
                        socket
                            .set_read_timeout(Some(wanted))
                            .map_err(|e| format!("set_read_timeout: {e}"))?;
                        timeout = Some(wanted);
                    }
                    match socket.read(&mut buf) {
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) => return Err(format!("read: {e}")),
                        Ok(_) => return Err("the idle peer sent data".into()),
                    }
                }
            }
            continue;
        }
        wakes.fetch_add(1, Ordering::Relaxed);
        while next <= now {
            next += period;
        }
    }
    Ok(())
}

/// Every thread's time on a CPU so far, as `earshot bench` measures a server's.
fn cpu_time() -> Result<ThreadCpu, String> {
    ThreadCpu::of(std::process::id()).ok_or_else(|| "cannot read /proc/self/task".to_string())
}
