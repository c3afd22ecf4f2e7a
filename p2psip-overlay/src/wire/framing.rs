//! The framing header of TLS/TCP overlay links (RFC 6940 section 5.6.3.1, "Framed Message
//! Format"): each RELOAD message travels in a `data` frame with a sequence number, and the
//! receiver answers with `ack` frames carrying a bitmap of the 32 frames before. The
//! [`FrameDecoder`] is the stream side: it says "need more bytes" (`Ok(None)`) apart from
//! "this is garbage" (`Err`).

use super::codec::{put_u32, Reader};
use super::WireError;

/// `FramedMessageType`: `data(128)`.
pub const FRAME_DATA: u8 = 128;
/// `FramedMessageType`: `ack(129)`.
pub const FRAME_ACK: u8 = 129;
/// Largest message a data frame carries: `opaque message<0..2^24-1>`.
pub const MAX_FRAMED_MESSAGE: usize = 0xff_ffff;

/// One frame of a link (RFC 6940 section 5.6.3.1 `FramedMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FramedMessage {
    /// A message.
    Data {
        /// The link-level sequence number.
        sequence: u32,
        /// The encoded RELOAD message.
        message: Vec<u8>,
    },
    /// An acknowledgement.
    Ack {
        /// The sequence number acknowledged.
        ack_sequence: u32,
        /// The receipt state of the 32 frames before `ack_sequence`, one bit each (RFC 6940
        /// section 5.6.3.1).
        received: u32,
    },
}

impl FramedMessage {
    /// Appends the encoded frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            FramedMessage::Data { sequence, message } => encode_data(*sequence, message, out),
            FramedMessage::Ack {
                ack_sequence,
                received,
            } => {
                out.push(FRAME_ACK);
                put_u32(out, *ack_sequence);
                put_u32(out, *received);
                Ok(())
            }
        }
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decodes one frame from the start of `buf`: `Ok(None)` if `buf` holds only part of a
    /// frame, otherwise the frame and the bytes it used.
    pub fn decode_prefix(
        buf: &[u8],
        max_message: usize,
    ) -> Result<Option<(Self, usize)>, WireError> {
        let Some(&t) = buf.first() else {
            return Ok(None);
        };
        match t {
            FRAME_DATA => {
                if buf.len() < 8 {
                    return Ok(None);
                }
                let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
                if len > max_message {
                    return Err(WireError::TooLarge {
                        len,
                        max: max_message,
                    });
                }
                if buf.len() < 8 + len {
                    return Ok(None);
                }
                let mut r = Reader::new(&buf[1..8 + len]);
                let sequence = r.u32("sequence")?;
                let message = r.opaque(3, "framed message")?.to_vec();
                Ok(Some((FramedMessage::Data { sequence, message }, 8 + len)))
            }
            FRAME_ACK => {
                if buf.len() < 9 {
                    return Ok(None);
                }
                let mut r = Reader::new(&buf[1..9]);
                Ok(Some((
                    FramedMessage::Ack {
                        ack_sequence: r.u32("ack_sequence")?,
                        received: r.u32("received")?,
                    },
                    9,
                )))
            }
            t => Err(WireError::InvalidValue {
                what: "FramedMessageType",
                value: u64::from(t),
            }),
        }
    }

    /// Decodes exactly one frame filling `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        match Self::decode_prefix(buf, MAX_FRAMED_MESSAGE)? {
            Some((f, n)) if n == buf.len() => Ok(f),
            Some((_, n)) => Err(WireError::TrailingBytes {
                what: "FramedMessage",
                extra: buf.len() - n,
            }),
            None => Err(WireError::Truncated {
                what: "FramedMessage",
                need: 1,
                have: 0,
            }),
        }
    }
}

/// Appends a data frame around an already encoded message, without copying it first.
pub fn encode_data(sequence: u32, message: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    if message.len() > MAX_FRAMED_MESSAGE {
        return Err(WireError::TooLong {
            what: "framed message",
            len: message.len(),
            max: MAX_FRAMED_MESSAGE,
        });
    }
    out.push(FRAME_DATA);
    put_u32(out, sequence);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(message);
    Ok(())
}

/// A stream decoder for one link: push bytes as they arrive, pull frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_message: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAMED_MESSAGE)
    }
}

impl FrameDecoder {
    /// A decoder refusing messages over `max_message` bytes (the overlay's
    /// `max-message-size`), before buffering them.
    pub fn new(max_message: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_message: max_message.min(MAX_FRAMED_MESSAGE),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame; `Ok(None)` when more bytes are needed. After an `Err` the
    /// link is garbage and should be closed.
    pub fn next_frame(&mut self) -> Result<Option<FramedMessage>, WireError> {
        match FramedMessage::decode_prefix(&self.buf[self.start..], self.max_message)? {
            Some((f, n)) => {
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }
}
