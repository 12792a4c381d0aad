//! The producer thread: reads the source, cuts fixed-duration chunks, and pushes them into the
//! ring at the pace of real time.
//!
//! A clock-paced source (file, tone) is paced from a monotonic start time and the count of frames
//! emitted, never by sleeping one chunk's duration, so the stream cannot drift from real time
//! however long it runs. A device-paced source (capture, pipe) blocks in `read` and sets the pace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::audio;
use crate::protocol;
use crate::source::{Pacing, Source};
use crate::stream::{SourceState, Stream};

/// How far behind real time the producer may fall (a suspended machine, a stopped process)
/// before it stops catching up chunk by chunk and starts again from now.
const MAX_LAG: Duration = Duration::from_secs(1);
/// Pause between attempts when a source fails.
const RETRY_DELAY: Duration = Duration::from_secs(1);

pub fn spawn(
    mut source: Box<dyn Source>,
    stream: Arc<Stream>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    // Live before the port opens, not when the thread first runs: a listener that connected in
    // between would otherwise be told the source came back (`source` `live`) on its first wake.
    stream.set_state(SourceState::Live);
    thread::Builder::new()
        .name("producer".into())
        .spawn(move || run(source.as_mut(), &stream, &stop))
}

fn run(source: &mut dyn Source, stream: &Stream, stop: &AtomicBool) {
    let channels = usize::from(stream.format.channels);
    let mut samples = vec![0i16; stream.chunk_frames * channels];
    let mut start = Instant::now();
    let mut emitted: u64 = 0;
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        match fill(source, &mut samples) {
            Ok(true) => {}
            Ok(false) => {
                crate::log!("source {} ended", source.describe());
                stream.set_state(SourceState::Ended("source ended".into()));
                return;
            }
            Err(e) => {
                crate::log!("source error: {e}; retrying in {} s", RETRY_DELAY.as_secs());
                stream.set_state(SourceState::Down(e.to_string()));
                thread::sleep(RETRY_DELAY);
                start = Instant::now();
                emitted = 0;
                continue;
            }
        }
        emitted += stream.chunk_frames as u64;
        if source.pacing() == Pacing::Clock {
            let due = start + stream.format.duration_of(emitted);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            } else if now - due > MAX_LAG {
                crate::log!(
                    "producer fell {} ms behind real time; continuing from now",
                    (now - due).as_millis()
                );
                Stream::count(&stream.counters.producer_resyncs, 1);
                start = now;
                emitted = 0;
            }
        }
        let produced_us = audio::unix_micros(SystemTime::now());
        stream
            .ring
            .push(protocol::encode_chunk(seq, produced_us, &samples));
        seq = seq.wrapping_add(1);
        Stream::count(&stream.counters.chunks_produced, 1);
        stream.set_source_stats(source.stats());
        if stream.state() != SourceState::Live {
            crate::log!("source {} is live again", source.describe());
            stream.set_state(SourceState::Live);
        }
    }
}

/// Fills `samples` completely; `Ok(false)` when the source ended before it was full.
fn fill(source: &mut dyn Source, samples: &mut [i16]) -> crate::error::Result<bool> {
    let mut filled = 0;
    while filled < samples.len() {
        match source.read(&mut samples[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}
