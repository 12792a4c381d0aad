//! Pins a behaviour of hound 3.5's `WavReader` that `src/source/wav.rs` works around. If an
//! upgrade fixes it, this test fails and the workaround can go.

mod support;

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};
use support::tempdir;

#[test]
fn hound_seek_after_a_failed_sample_read_lands_before_the_data() {
    // A WAV whose data chunk is shorter than its header says (a recording cut off): each read
    // past the end fails, yet hound counts it as a sample read, and `seek` moves relative to
    // that count, so seeking to the start lands that many samples before it, in the header.
    let dir = tempdir("hound-quirk");
    let path = dir.join("cut.wav");
    let spec = WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut w = WavWriter::create(&path, spec).unwrap();
    for i in 0..100i16 {
        w.write_sample(1000 + i).unwrap();
    }
    w.finalize().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap(); // the last two samples

    let mut reader = WavReader::open(&path).unwrap();
    let read: Vec<_> = reader.samples::<i16>().collect();
    assert_eq!(read.iter().filter(|s| s.is_ok()).count(), 98);
    assert_eq!(read.iter().filter(|s| s.is_err()).count(), 2);
    reader.seek(0).unwrap();
    let first = reader.samples::<i16>().next().unwrap().unwrap();
    assert_ne!(
        first, 1000,
        "the quirk: after two failed reads, seek(0) lands two samples early"
    );
    // Those two "samples" are the data chunk's length field: 200 bytes, as the header claims.
    assert_eq!(first, 200);
    assert_eq!(reader.samples::<i16>().next().unwrap().unwrap(), 0);
}
