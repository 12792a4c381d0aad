//! Pins two behaviours of minimp3 0.6's `Decoder::next_frame` that `src/source/mp3.rs` works
//! around. If an upgrade fixes them, these tests fail and the workarounds can go.

mod support;

use minimp3::{Decoder, Error};
use support::fixture;

fn open(name: &str) -> Decoder<std::fs::File> {
    Decoder::new(std::fs::File::open(fixture(name)).unwrap())
}

#[test]
fn minimp3_reports_eof_at_a_skipped_frame_once_its_reader_is_exhausted() {
    // The damage sits where the decoder's last refill has already read the file to its end; the
    // frame after the damage cannot restore its bit reservoir and is skipped, and the decoder
    // then says Eof although about 30 whole frames are still in its buffer.
    let mut decoder = open("mp3-44100Hz-stereo-1500ms-corrupt-frame.mp3");
    let mut before = 0;
    while decoder.next_frame().is_ok() {
        before += 1;
    }
    let total = {
        let mut clean = open("mp3-44100Hz-stereo-1500ms.mp3");
        std::iter::from_fn(|| clean.next_frame().ok()).count()
    };
    assert!(
        before < total / 2,
        "the quirk: Eof after {before} of {total} frames"
    );
    // Asking again continues with the buffered frames.
    let mut frames = 0;
    let mut eofs_in_a_row = 0;
    while eofs_in_a_row < 32 {
        match decoder.next_frame() {
            Ok(_) => {
                frames += 1;
                eofs_in_a_row = 0;
            }
            Err(_) => eofs_in_a_row += 1,
        }
    }
    // Lost for good: the frames the damage touches (256 bytes can span two) and up to two after
    // it whose bit reservoir pointed into them.
    assert!(
        before + frames >= total - 4,
        "{frames} frames were still there after the premature Eof"
    );
}

#[test]
fn minimp3_never_returns_skipped_data_from_next_frame() {
    // SkippedData is documented, but next_frame swallows it: a tagged file and a damaged file
    // both yield only frames and Eof, so skipped frames must be counted another way.
    for name in [
        "mp3-44100Hz-stereo-id3v2.mp3",
        "mp3-44100Hz-stereo-1500ms-corrupt-frame.mp3",
    ] {
        let mut decoder = open(name);
        for _ in 0..100 {
            let result = decoder.next_frame();
            assert!(
                !matches!(result, Err(Error::SkippedData)),
                "{name}: SkippedData was returned"
            );
        }
    }
}
