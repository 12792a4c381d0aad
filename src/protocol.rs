//! Wire protocol v1: the binary chunk layout and the JSON control messages (see PROTOCOL.md).

use serde::{Deserialize, Serialize};

use crate::audio::{self, Format};
use crate::auth::Secret;
use crate::ring::Chunk;
use tungstenite::Bytes;

pub const VERSION: u32 = 1;

/// Bytes before the samples in every binary message: `u64` sequence, `u64` production time (µs).
pub const CHUNK_HEADER_LEN: usize = 16;

/// Largest message a client may send; anything bigger is closed with 1009 (message too big).
pub const MAX_CLIENT_MESSAGE: usize = 4096;

/// Most messages (text, ping or pong frames) a client may send in one second; more are closed
/// with 1008. Listeners send a ping every one or two seconds (the page, `earshot listen`); a
/// client that floods would keep a core busy answering it.
pub const MAX_CLIENT_MESSAGES_PER_S: u32 = 50;

/// Builds a chunk whose payload is ready to go on the wire as one binary message.
pub fn encode_chunk(seq: u64, produced_us: u64, samples: &[i16]) -> Chunk {
    encode_chunk_into(Vec::new(), seq, produced_us, samples)
}

/// [`encode_chunk`] into `buf`, whose allocation is reused when it has the chunk's size: the
/// producer hands back the buffer of a chunk the ring dropped (see [`recycle`]), so a steady
/// stream allocates nothing.
pub fn encode_chunk_into(mut buf: Vec<u8>, seq: u64, produced_us: u64, samples: &[i16]) -> Chunk {
    let len = CHUNK_HEADER_LEN + samples.len() * 2;
    buf.clear();
    // Exactly `len`, so the `Bytes` made from it keeps this allocation and can give it back.
    if buf.capacity() != len {
        buf = Vec::with_capacity(len);
    }
    buf.resize(len, 0);
    let (header, body) = buf.split_at_mut(CHUNK_HEADER_LEN);
    header[..8].copy_from_slice(&seq.to_le_bytes());
    header[8..].copy_from_slice(&produced_us.to_le_bytes());
    for (out, s) in body.chunks_exact_mut(2).zip(samples) {
        out.copy_from_slice(&s.to_le_bytes());
    }
    Chunk {
        seq,
        produced_us,
        payload: Bytes::from(buf),
    }
}

/// The buffer of a chunk nobody reads any more, for [`encode_chunk_into`]; an empty one when a
/// reader (a slow listener) still holds it.
pub fn recycle(chunk: Chunk) -> Vec<u8> {
    chunk
        .payload
        .try_into_mut()
        .map(Vec::from)
        .unwrap_or_default()
}

/// Splits a binary message into (sequence, production time µs, samples), if it is long enough.
pub fn decode_chunk(payload: &[u8]) -> Option<(u64, u64, &[u8])> {
    if payload.len() < CHUNK_HEADER_LEN {
        return None;
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let produced = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    Some((seq, produced, &payload[CHUNK_HEADER_LEN..]))
}

/// Everything the server sends as text.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Always the first message of a connection.
    Hello {
        version: u32,
        codec: String,
        sample_rate: u32,
        channels: u16,
        chunk_ms: u32,
        chunk_frames: usize,
        /// `clock`: chunk `n` starts at frame `n × chunk_frames` counted from the Unix epoch.
        align: String,
        stream: String,
        instance: String,
        /// The first sequence number this connection will receive.
        seq: u64,
        server_time_ms: u64,
    },
    /// Chunks `from..to` (`to` exclusive) were dropped for this listener.
    Skipped { from: u64, to: u64 },
    Pong {
        id: serde_json::Value,
        server_time_ms: u64,
    },
    /// The source went down (listeners stay connected), came back (`live`) or `ended`.
    Source {
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The server is draining: connect again (through the balancer) and splice the new stream
    /// in at the next sequence number; this connection closes after `grace_ms`.
    Goaway { reason: String, grace_ms: u64 },
    /// Sent just before the server closes the connection.
    Bye { reason: String },
    /// The answer to a first-message `login`: a token for later connections.
    Token { token: Secret, expires_in_s: u64 },
}

impl ServerMessage {
    pub fn hello(
        format: Format,
        chunk_ms: u32,
        chunk_frames: usize,
        aligned: bool,
        stream: &str,
        instance: &str,
        seq: u64,
    ) -> Self {
        ServerMessage::Hello {
            version: VERSION,
            codec: audio::CODEC_PCM_S16LE.to_string(),
            sample_rate: format.sample_rate,
            channels: format.channels,
            chunk_ms,
            chunk_frames,
            align: if aligned { "clock" } else { "none" }.to_string(),
            stream: stream.to_string(),
            instance: instance.to_string(),
            seq,
            server_time_ms: audio::unix_millis_now(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Everything a client may send as text. Unknown `type`s are ignored, for forward compatibility.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Ping {
        #[serde(default)]
        id: serde_json::Value,
    },
    /// The password, as the first message of a `/ws?auth=message` connection.
    Login { password: Secret },
}

/// Parses a client's text message; `None` for anything that is not a known message.
pub fn parse_client_message(text: &str) -> Option<ClientMessage> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_nobody_holds_gives_its_buffer_to_the_next_one_and_a_held_one_does_not() {
        let first = encode_chunk(1, 10, &[1, 2, 3, 4]);
        let address = first.payload.as_ptr();
        // Sent to a listener and done with, as chunks are long before the ring drops them.
        drop(first.payload.clone());
        let second = encode_chunk_into(recycle(first), 2, 20, &[5, 6, 7, 8]);
        assert_eq!(second.payload.as_ptr(), address, "the allocation is reused");
        assert_eq!(decode_chunk(&second.payload).map(|c| c.0), Some(2));
        assert_eq!(decode_chunk(&second.payload).map(|c| c.2.len()), Some(8));

        let held = second.payload.clone();
        assert!(recycle(second).is_empty(), "a reader still sends it");
        assert_eq!(
            decode_chunk(&held).map(|c| c.1),
            Some(20),
            "and it is intact"
        );
    }

    #[test]
    fn chunk_header_is_little_endian_seq_then_time() {
        let chunk = encode_chunk(0x0102, 0x0A0B, &[1, -2]);
        assert_eq!(
            &chunk.payload[..],
            &[
                2, 1, 0, 0, 0, 0, 0, 0, 0x0B, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0xFE, 0xFF
            ]
        );
        assert_eq!(
            decode_chunk(&chunk.payload),
            Some((0x0102, 0x0A0B, &[1u8, 0, 0xFE, 0xFF][..]))
        );
    }

    #[test]
    fn ping_echoes_any_id_and_unknown_types_are_ignored() {
        assert_eq!(
            parse_client_message(r#"{"type":"ping","id":7}"#),
            Some(ClientMessage::Ping {
                id: serde_json::json!(7)
            })
        );
        assert_eq!(parse_client_message(r#"{"type":"dance"}"#), None);
        assert_eq!(parse_client_message("not json"), None);
        let pong = ServerMessage::Pong {
            id: serde_json::json!("a"),
            server_time_ms: 5,
        }
        .to_json();
        assert_eq!(pong, r#"{"type":"pong","id":"a","server_time_ms":5}"#);
    }

    #[test]
    fn login_carries_a_password_that_debug_output_hides() {
        let login = parse_client_message(r#"{"type":"login","password":"pw"}"#).unwrap();
        assert_eq!(
            login,
            ClientMessage::Login {
                password: Secret::new("pw")
            }
        );
        assert_eq!(format!("{login:?}"), "Login { password: Secret(***) }");
        let token = ServerMessage::Token {
            token: Secret::new("abc"),
            expires_in_s: 60,
        };
        assert_eq!(
            token.to_json(),
            r#"{"type":"token","token":"abc","expires_in_s":60}"#
        );
    }
}
