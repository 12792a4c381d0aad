//! An incremental reader of server-to-client WebSocket frames (RFC 6455 §5.2) for the load
//! generator: it skips audio payloads without copying them and keeps only the 16-byte chunk
//! header, so one listener costs a few dozen bytes instead of a tungstenite `WebSocket` with its
//! buffers. `earshot listen`, which needs the samples, uses tungstenite instead.

use crate::protocol::{CHUNK_HEADER_LEN, decode_chunk};

/// Text messages longer than this are skipped instead of collected (the server's are tiny).
const MAX_TEXT: usize = 16 * 1024;

/// What a complete frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A binary message: an audio chunk's header fields.
    Chunk { seq: u64, produced_us: u64 },
    /// A text message (a control message).
    Text(String),
    /// The server's close frame.
    Close,
    /// A frame that breaks the protocol; the connection should be dropped.
    Invalid(&'static str),
}

#[derive(Debug, Default)]
pub struct FrameReader {
    /// Header bytes collected so far (2 to 14 bytes long).
    head: [u8; 14],
    head_len: u8,
    /// Inside a payload: its opcode and how many bytes are left.
    in_payload: bool,
    opcode: u8,
    remaining: u64,
    /// The first bytes of a binary payload (the chunk header).
    chunk: [u8; CHUNK_HEADER_LEN],
    chunk_len: u8,
    text: Vec<u8>,
    broken: bool,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// True between frames: nothing half-read.
    pub fn at_boundary(&self) -> bool {
        !self.in_payload && self.head_len == 0
    }

    /// Feeds received bytes; calls `on` for every frame completed by them.
    pub fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(Item)) {
        while !data.is_empty() && !self.broken {
            if self.in_payload {
                let take = (self.remaining.min(data.len() as u64)) as usize;
                self.consume_payload(&data[..take]);
                data = &data[take..];
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.in_payload = false;
                    if let Some(item) = self.complete() {
                        on(item);
                    }
                }
                continue;
            }
            // Collect the header: 2 bytes, then the extended length and mask they announce.
            let want = self.header_len();
            let take = (want - self.head_len as usize).min(data.len());
            let at = self.head_len as usize;
            self.head[at..at + take].copy_from_slice(&data[..take]);
            self.head_len += take as u8;
            data = &data[take..];
            if (self.head_len as usize) < self.header_len() {
                continue;
            }
            match self.start_payload() {
                Ok(()) if self.remaining == 0 => {
                    self.in_payload = false;
                    if let Some(item) = self.complete() {
                        on(item);
                    }
                }
                Ok(()) => {}
                Err(why) => {
                    self.broken = true;
                    on(Item::Invalid(why));
                }
            }
        }
    }

    /// The header's full length, as far as the bytes so far tell.
    fn header_len(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let masked = self.head[1] & 0x80 != 0;
        let ext = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if masked { 4 } else { 0 }
    }

    fn start_payload(&mut self) -> Result<(), &'static str> {
        let first = self.head[0];
        if first & 0x70 != 0 {
            return Err("reserved bits set");
        }
        if self.head[1] & 0x80 != 0 {
            return Err("masked frame from the server");
        }
        let len = match self.head[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or_default()),
            n => u64::from(n),
        };
        let opcode = first & 0x0F;
        // Continuation frames keep the opcode of the message they continue.
        if opcode != 0 {
            self.opcode = opcode;
            self.chunk_len = 0;
            self.text.clear();
        }
        if !matches!(self.opcode, 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return Err("unknown opcode");
        }
        self.head_len = 0;
        self.remaining = len;
        self.in_payload = true;
        Ok(())
    }

    fn consume_payload(&mut self, bytes: &[u8]) {
        match self.opcode {
            0x2 => {
                let at = self.chunk_len as usize;
                let take = (CHUNK_HEADER_LEN - at).min(bytes.len());
                self.chunk[at..at + take].copy_from_slice(&bytes[..take]);
                self.chunk_len += take as u8;
            }
            0x1 if self.text.len() + bytes.len() <= MAX_TEXT => self.text.extend_from_slice(bytes),
            _ => {}
        }
    }

    /// The item for the frame just completed (only the last frame of a message completes it).
    fn complete(&mut self) -> Option<Item> {
        self.head_len = 0;
        let fin = self.head[0] & 0x80 != 0;
        if !fin {
            return None;
        }
        match self.opcode {
            0x2 => match decode_chunk(&self.chunk[..usize::from(self.chunk_len)]) {
                Some((seq, produced_us, _)) => Some(Item::Chunk { seq, produced_us }),
                None => Some(Item::Invalid("audio message shorter than its header")),
            },
            0x1 => Some(Item::Text(String::from_utf8_lossy(&self.text).into_owned())),
            0x8 => Some(Item::Close),
            _ => None,
        }
    }
}

/// A masked close frame with status 1000 (normal closure), as a client must send it. The mask
/// key is zero, which RFC 6455 allows and which leaves the payload readable.
pub const CLIENT_CLOSE: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(seq: u64, produced: u64, samples: usize) -> Vec<u8> {
        let len = 16 + samples;
        let mut f = vec![0x82];
        if len < 126 {
            f.push(len as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        f.extend_from_slice(&seq.to_le_bytes());
        f.extend_from_slice(&produced.to_le_bytes());
        f.extend(std::iter::repeat_n(7u8, samples));
        f
    }

    fn items(reader: &mut FrameReader, data: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        reader.feed(data, |i| out.push(i));
        out
    }

    #[test]
    fn frames_split_anywhere_still_decode() {
        let mut stream = Vec::new();
        stream.extend(b"\x81\x10{\"type\":\"hello\"}");
        stream.extend(binary(5, 1000, 3528));
        stream.extend(binary(6, 21000, 10));
        stream.extend([0x88, 0x02, 0x03, 0xE8]);
        for split in [1, 2, 3, 7, 100, 4096] {
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for piece in stream.chunks(split) {
                got.extend(items(&mut reader, piece));
            }
            assert_eq!(
                got,
                [
                    Item::Text("{\"type\":\"hello\"}".into()),
                    Item::Chunk {
                        seq: 5,
                        produced_us: 1000
                    },
                    Item::Chunk {
                        seq: 6,
                        produced_us: 21000
                    },
                    Item::Close
                ],
                "split {split}"
            );
            assert!(reader.at_boundary());
        }
    }

    #[test]
    fn a_partial_frame_leaves_the_reader_mid_frame() {
        let mut reader = FrameReader::new();
        let frame = binary(1, 2, 100);
        assert!(items(&mut reader, &frame[..50]).is_empty());
        assert!(!reader.at_boundary());
        assert_eq!(items(&mut reader, &frame[50..]).len(), 1);
    }

    #[test]
    fn protocol_violations_are_reported_once() {
        let mut reader = FrameReader::new();
        assert_eq!(
            items(&mut reader, &[0x83, 0x00, 0x82, 0x00]),
            [Item::Invalid("unknown opcode")]
        );
        let mut reader = FrameReader::new();
        assert_eq!(
            items(&mut reader, &[0x82, 0x02, 1, 2]),
            [Item::Invalid("audio message shorter than its header")]
        );
    }
}
