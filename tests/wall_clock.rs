//! The wall clock stepped under a running server, as on a Raspberry Pi without a real-time clock
//! that starts earshot before the network sets its clock: the chunks' stamps and the pong's
//! server time move with the clock, so the latency a listener works out (arrival, corrected by
//! the ping/pong clock offset, less the stamp) stays what it was, and the stream goes on without
//! a gap; a server held up past a second after its clock was set back resumes at once, and one
//! whose clock was set forward resumes where the new clock says. The
//! server runs in the VM of tests/support/vm.rs, whose clock the tests can step without touching
//! this machine's. The Pi Zero run skips them (every name starts `a_wall_clock_`): its VM is x86.

mod support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use support::vm::Vm;
use support::*;
use tungstenite::Message;

/// How far the test steps the VM's clock, forward then back: an hour, as a clock set from the
/// network jumps from a time saved at the last shutdown.
const STEP_MS: i64 = 3_600_000;

/// Chunks read after each step: the first are those staged before it, with the old clock's
/// stamps; the last are well past them.
const AFTER_STEP: usize = 75;

/// This machine's wall clock in ms since the epoch.
fn host_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A chunk and when it arrived here.
struct Arrival {
    audio: Audio,
    at_ms: i64,
}

impl Arrival {
    fn produced_ms(&self) -> i64 {
        (self.audio.produced_us / 1000) as i64
    }

    /// What a listener takes for this chunk's latency, given the server's clock offset.
    fn latency_ms(&self, offset_ms: i64) -> i64 {
        self.at_ms + offset_ms - self.produced_ms()
    }
}

fn next_arrival(ws: &mut Ws) -> Arrival {
    let audio = next_audio(ws);
    Arrival {
        audio,
        at_ms: host_now_ms(),
    }
}

/// The server's clock less this machine's, from a ping's pong taken at the round trip's
/// midpoint, as `earshot listen` and the page work it out. Audio that arrives meanwhile is kept.
fn clock_offset_ms(ws: &mut Ws, kept: &mut Vec<Arrival>) -> i64 {
    let sent = host_now_ms();
    ws.send(Message::text(r#"{"type":"ping","id":"clock"}"#))
        .unwrap();
    loop {
        match next_message(ws) {
            Incoming::Control(c) if c["type"] == "pong" => {
                let back = host_now_ms();
                return c["server_time_ms"].as_i64().unwrap() - (sent + back) / 2;
            }
            Incoming::Audio(audio) => kept.push(Arrival {
                audio,
                at_ms: host_now_ms(),
            }),
            Incoming::Closed => panic!("the server closed the connection"),
            Incoming::Control(_) => {}
        }
    }
}

/// Steps the VM's wall clock by `step_ms` (whole seconds), as `date -s` does.
fn step_clock(vm: &mut Vm, step_ms: i64) {
    vm.run(&format!(
        "date -s @$(( $(date +%s) + {} )) > /dev/null",
        step_ms / 1000
    ));
}

/// A VM serving `tone:` to one listener, which has read half a second of it, with the VM's
/// clock then stepped by `step_ms`. Returns the VM, the listener and the chunk period in ms.
fn serving_then_stepped(name: &str, step_ms: i64) -> (Vm, Ws, i64) {
    let mut vm = Vm::boot(name, Path::new(env!("CARGO_BIN_EXE_earshot")));
    let (mut ws, hello) = vm.serve("--source tone:", "serve");
    let period_ms = hello["chunk_ms"].as_i64().unwrap();
    for _ in 0..25 {
        next_audio(&mut ws);
    }
    step_clock(&mut vm, step_ms);
    (vm, ws, period_ms)
}

#[test]
fn a_wall_clock_stepped_under_a_running_server_moves_its_stamps_and_latency_stays_true() {
    let mut vm = Vm::boot("wall-clock", Path::new(env!("CARGO_BIN_EXE_earshot")));
    let (mut ws, hello) = vm.serve("--source tone:", "serve");
    let period_ms = hello["chunk_ms"].as_i64().unwrap();
    let mut read: Vec<Arrival> = (0..25).map(|_| next_arrival(&mut ws)).collect();

    for step_ms in [STEP_MS, -STEP_MS] {
        let offset_before = clock_offset_ms(&mut ws, &mut read);
        let last = read.last().unwrap();
        let (last_seq, last_produced) = (last.audio.seq, last.produced_ms());
        let latency_before = last.latency_ms(offset_before);
        step_clock(&mut vm, step_ms);
        for _ in 0..AFTER_STEP {
            read.push(next_arrival(&mut ws));
        }
        let offset_after = clock_offset_ms(&mut ws, &mut read);
        let log = vm.run("cat /tmp/serve.log");
        let what = format!("the VM's clock stepped by {step_ms} ms; the server's log:\n{log}");

        // The pong's server time moved with the clock, as a listener sees it: by the step, less
        // the fraction of a second `date -s` cannot set.
        let stepped = offset_after - offset_before;
        assert!(
            stepped > step_ms - 1200 && stepped < step_ms + 200,
            "clock offset {offset_before} then {offset_after} ms: {what}"
        );
        // The newest chunk's stamp moved by as much, counted from where the last one before the
        // step was, by its sequence number.
        let newest = read.last().unwrap();
        let expected = last_produced + (newest.audio.seq - last_seq) as i64 * period_ms;
        let moved = newest.produced_ms() - expected;
        assert!(
            (moved - stepped).abs() < 250,
            "chunk {} stamped {moved} ms from where chunk {last_seq} puts it, the clock moved {stepped} ms: {what}",
            newest.audio.seq
        );
        // So a listener's latency is what it was, not an hour off. A chunk leaves no earlier
        // than its stamp, but the offset is good only to half a ping's round trip, so a latency
        // of a few ms can read a little below 0.
        let latency_after = newest.latency_ms(offset_after);
        let plausible = -100..1000;
        assert!(
            plausible.contains(&latency_before) && plausible.contains(&latency_after),
            "latency {latency_before} ms before the step, {latency_after} ms after: {what}"
        );
    }

    // A step is no outage: no chunk was skipped across either.
    for pair in read.windows(2) {
        assert_eq!(
            pair[1].audio.seq,
            pair[0].audio.seq + 1,
            "a gap in the stream across the clock's steps"
        );
    }
}

/// How long the stall test stops the server: past the second after which the producer gives up
/// catching up and continues from where the stream should be.
const STALL_MS: i64 = 2000;

/// What [`hold_up`] saw: the last chunk before the gap, the first after it, how long after the
/// hold that one came, and the server's log.
struct Resumed {
    last: Audio,
    next: Audio,
    after_ms: i64,
    log: String,
}

impl Resumed {
    /// The sequence numbers skipped, as time.
    fn gap_ms(&self, period_ms: i64) -> i64 {
        (self.next.seq - self.last.seq - 1) as i64 * period_ms
    }
}

/// Stops the server in the VM for [`STALL_MS`] and reads on until the first chunk after a gap
/// in sequence numbers, which must come within 5 s.
fn hold_up(vm: &mut Vm, ws: &mut Ws, mut last: Audio) -> Resumed {
    vm.run(&format!(
        "kill -STOP $(cat /tmp/serve.pid); sleep {}; kill -CONT $(cat /tmp/serve.pid)",
        STALL_MS / 1000
    ));
    let resumed = host_now_ms();
    // Chunks released before the hold may come first; the first after a gap is the resumed one.
    // Keepalive pings come every second while no audio does, so reads time out more often than
    // that, and the wait is counted here.
    ws.get_mut()
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let next = loop {
        assert!(
            host_now_ms() - resumed < 5000,
            "no audio within 5 s of the hold; the server's log:\n{}",
            vm.run("cat /tmp/serve.log")
        );
        match next_message(ws) {
            Incoming::Audio(audio) if audio.seq == last.seq + 1 => last = audio,
            Incoming::Audio(audio) => break audio,
            // A read that timed out (the connection itself is checked by the deadline).
            Incoming::Closed | Incoming::Control(_) => {}
        }
    };
    Resumed {
        last,
        next,
        after_ms: host_now_ms() - resumed,
        log: vm.run("cat /tmp/serve.log"),
    }
}

#[test]
fn a_wall_clock_set_back_then_a_held_up_server_resumes_at_once_with_a_gap_of_the_hold() {
    // The clock set back an hour (a saved time ahead of the network's), then the whole server
    // held up past a second (a swapping Pi).
    let (mut vm, mut ws, period_ms) = serving_then_stepped("clock-back", -STEP_MS);
    let last = (0..AFTER_STEP)
        .map(|_| next_arrival(&mut ws))
        .last()
        .unwrap();
    // Audio comes back at once (within hold_up's 5 s), not when the clock reaches where it was
    // before it was set back.
    let resumed = hold_up(&mut vm, &mut ws, last.audio);
    // What the hold cost is a gap of about its length in sequence numbers, not the hour.
    let gap_ms = resumed.gap_ms(period_ms);
    assert!(
        gap_ms <= STALL_MS + 1500,
        "a gap of {gap_ms} ms for a {STALL_MS} ms hold, audio {} ms after it; the server's log:\n{}",
        resumed.after_ms,
        resumed.log
    );
}

/// PROTOCOL.md: after a stall, a stream whose wall clock was set forward resumes at the chunk
/// the new clock says, so the step counts as time the stream skipped, and the resumed chunk is
/// stamped by the new clock.
#[test]
fn a_wall_clock_set_forward_then_a_held_up_server_resumes_where_the_new_clock_says() {
    let (mut vm, mut ws, period_ms) = serving_then_stepped("clock-forward", STEP_MS);
    // Up to the stall the numbers go on one per chunk, the step or not.
    let mut last = next_audio(&mut ws);
    for _ in 1..AFTER_STEP {
        let audio = next_audio(&mut ws);
        assert_eq!(audio.seq, last.seq + 1, "a gap before the stall");
        last = audio;
    }
    let resumed = hold_up(&mut vm, &mut ws, last);
    // Whole seconds: busybox's date has no %N.
    let vm_now_ms = vm.run("date +%s").trim().parse::<i64>().unwrap() * 1000;
    let gap_ms = resumed.gap_ms(period_ms);
    assert!(
        (gap_ms - (STEP_MS + STALL_MS)).abs() <= 1500,
        "a gap of {gap_ms} ms for a {STEP_MS} ms step and a {STALL_MS} ms hold; the server's log:\n{}",
        resumed.log
    );
    let stamped_ms = (resumed.next.produced_us / 1000) as i64;
    assert!(
        (stamped_ms - vm_now_ms).abs() < 4000,
        "the resumed chunk is stamped {} ms from the VM's clock; the server's log:\n{}",
        stamped_ms - vm_now_ms,
        resumed.log
    );
}
