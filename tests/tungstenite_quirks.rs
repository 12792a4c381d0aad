//! Pins a behaviour of tungstenite 0.30 that `src/session.rs` works around: after a frame over
//! `max_frame_size` the codec keeps that frame's header, and reading again once the client has
//! sent a read buffer's worth trips a debug assertion (`in_buffer.capacity() > len`; in release
//! builds the read returns nothing and the connection looks reset). earshot never reads through
//! tungstenite after a framing error. If an upgrade fixes this, the test fails.

use std::io::{self, Cursor, Read, Write};

use tungstenite::error::ProtocolError;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error, WebSocket};

/// A socket stand-in: reads from `input`, then would block; writes are kept.
struct Pipe {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.input.read(buf)? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn tungstenite_trips_over_its_buffer_when_read_again_after_an_oversized_frame() {
    // A masked text frame declaring 5000 bytes, over the 4096-byte limit, with its payload.
    let mut input = vec![0x81, 0x80 | 126, 0x13, 0x88, 1, 2, 3, 4];
    input.extend(std::iter::repeat_n(b'a', 5000));
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(4096))
        .max_frame_size(Some(4096));
    let pipe = Pipe {
        input: Cursor::new(input),
        output: Vec::new(),
    };
    let mut ws = WebSocket::from_raw_socket(pipe, Role::Server, Some(config));
    assert!(matches!(ws.read(), Err(Error::Capacity(_))));
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ws.read()));
    if cfg!(debug_assertions) {
        assert!(
            again.is_err(),
            "the quirk: a second read panics in debug builds"
        );
    } else {
        assert!(
            matches!(
                again,
                Ok(Err(Error::Protocol(
                    ProtocolError::ResetWithoutClosingHandshake
                )))
            ),
            "the quirk: a second read reports a reset connection"
        );
    }
}
