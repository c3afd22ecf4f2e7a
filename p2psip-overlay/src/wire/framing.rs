//! The framing header of TLS/TCP overlay links (RFC 6940 section 5.6.3.1, "Framed Message
//! Format"): each RELOAD message travels in a `data` frame with a sequence number, and the
//! receiver answers with `ack` frames carrying a bitmap of the 32 frames before. The
//! [`FrameDecoder`] is the stream side: it says "need more bytes" (`Ok(None)`) apart from
//! "this is garbage" (`Err`).
//!
//! A `data` frame longer than the overlay's max-message-size is not garbage: its framing
//! header says how long it is, so [`FrameDecoder::next_item`] keeps only its head (at most
//! the largest forwarding header and message code, and never more than the size limit),
//! discards the rest as it arrives, and hands back an [`OversizeFrame`] once the frame is
//! over; the receiver answers Error_Message_Too_Large from the head (RFC 6940 section
//! 6.3.2) and the link goes on with the next frame. Memory stays bounded by the limit
//! whatever length a frame announces.

use super::codec::{put_u32, Reader};
use super::{WireError, MAX_HEADER_LEN};

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

/// A `data` frame over the decoder's size limit, skipped (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OversizeFrame {
    /// Its link-level sequence number (to acknowledge it).
    pub sequence: u32,
    /// The message length its framing header announced.
    pub len: usize,
    /// The first bytes of the message: at most the largest forwarding header and the
    /// message code ([`MAX_HEADER_LEN`] + 2), and at most the decoder's limit.
    pub head: Vec<u8>,
}

/// What [`FrameDecoder::next_item`] found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrameItem {
    /// A whole frame.
    Frame(FramedMessage),
    /// A `data` frame over the size limit, read past without keeping it.
    Oversize(OversizeFrame),
}

/// The oversize frame being read past.
#[derive(Debug, Clone)]
struct Skip {
    frame: OversizeFrame,
    /// How much of the message `head` keeps.
    head_limit: usize,
    /// Message bytes still to come.
    left: usize,
}

impl Skip {
    /// Takes what belongs to the skipped frame from the start of `b` (the head's part
    /// kept, the rest dropped); returns how many bytes it took.
    fn absorb(&mut self, b: &[u8]) -> usize {
        let n = b.len().min(self.left);
        let keep = self.head_limit.saturating_sub(self.frame.head.len()).min(n);
        self.frame.head.extend_from_slice(&b[..keep]);
        self.left -= n;
        n
    }
}

/// A stream decoder for one link: push bytes as they arrive, pull frames.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_message: usize,
    skip: Option<Skip>,
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
            skip: None,
        }
    }

    /// Appends received bytes (those of an oversize frame being skipped are dropped here,
    /// all but its head).
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = match &mut self.skip {
            Some(s) => &bytes[s.absorb(bytes)..],
            None => bytes,
        };
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded (an oversize frame's head not included).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes held for an oversize frame being skipped (its head; 0 when none).
    pub fn skipping(&self) -> usize {
        self.skip.as_ref().map_or(0, |s| s.frame.head.len())
    }

    /// The next complete frame; `Ok(None)` when more bytes are needed. A `data` frame
    /// over the limit is an error here ([`WireError::TooLarge`]; [`FrameDecoder::next_item`]
    /// skips it instead). After an `Err` the link is garbage and should be closed.
    pub fn next_frame(&mut self) -> Result<Option<FramedMessage>, WireError> {
        match FramedMessage::decode_prefix(&self.buf[self.start..], self.max_message)? {
            Some((f, n)) => {
                self.consume(n);
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// The next complete frame, or an oversize `data` frame once all of it went by (module
    /// docs); `Ok(None)` when more bytes are needed. After an `Err` (an unknown frame
    /// type) the link is garbage and should be closed.
    pub fn next_item(&mut self) -> Result<Option<FrameItem>, WireError> {
        if let Some(s) = &self.skip {
            if s.left > 0 {
                return Ok(None);
            }
            let frame = self.skip.take().map(|s| s.frame);
            return Ok(frame.map(FrameItem::Oversize));
        }
        let b = &self.buf[self.start..];
        if b.len() >= 8 && b[0] == FRAME_DATA {
            let len = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
            if len > self.max_message {
                let sequence = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                let head_limit = len.min(self.max_message).min(MAX_HEADER_LEN + 2);
                let mut skip = Skip {
                    frame: OversizeFrame {
                        sequence,
                        len,
                        head: Vec::with_capacity(head_limit.min(b.len() - 8)),
                    },
                    head_limit,
                    left: len,
                };
                let took = skip.absorb(&b[8..]);
                self.skip = Some(skip);
                self.consume(8 + took);
                return self.next_item();
            }
        }
        Ok(self.next_frame()?.map(FrameItem::Frame))
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seq: u32, len: usize) -> Vec<u8> {
        let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = Vec::new();
        encode_data(seq, &msg, &mut out).unwrap();
        out
    }

    fn ack(seq: u32) -> Vec<u8> {
        FramedMessage::Ack {
            ack_sequence: seq,
            received: 0,
        }
        .to_bytes()
        .unwrap()
    }

    /// An oversize frame between two good ones, fed in chunks of every size from 1 to 5000
    /// bytes: the good frames come out whole, the oversize one as its head only, and the
    /// decoder never holds more than the limit plus one chunk.
    #[test]
    fn oversize_data_frame_is_skipped_with_bounded_memory() {
        let max = 1000;
        let mut stream = data(1, 10);
        stream.extend(data(2, 300_000));
        stream.extend(ack(9));
        stream.extend(data(3, max));
        for chunk in [1usize, 7, 999, 1000, 1001, 4096, 5000] {
            let mut d = FrameDecoder::new(max);
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                d.push(c);
                assert!(
                    d.buffered() + d.skipping() <= max + 8 + chunk,
                    "chunk {chunk}"
                );
                while let Some(item) = d.next_item().unwrap() {
                    got.push(item);
                }
            }
            assert_eq!(d.buffered(), 0);
            assert_eq!(d.skipping(), 0);
            assert_eq!(got.len(), 4, "chunk {chunk}");
            assert!(
                matches!(&got[0], FrameItem::Frame(FramedMessage::Data { sequence: 1, message }) if message.len() == 10)
            );
            let FrameItem::Oversize(o) = &got[1] else {
                panic!("chunk {chunk}: {:?}", got[1]);
            };
            assert_eq!((o.sequence, o.len), (2, 300_000));
            let want: Vec<u8> = (0..max).map(|i| i as u8).collect();
            assert_eq!(o.head, want, "the head is the message's first bytes");
            assert!(matches!(
                &got[2],
                FrameItem::Frame(FramedMessage::Ack {
                    ack_sequence: 9,
                    ..
                })
            ));
            assert!(
                matches!(&got[3], FrameItem::Frame(FramedMessage::Data { sequence: 3, message }) if message.len() == max)
            );
        }
    }

    /// The head keeps at most the largest forwarding header and message code, even under a
    /// large limit; `next_frame` still refuses an oversize frame; garbage is still an error.
    #[test]
    fn oversize_head_is_bounded_by_the_header_size() {
        let max = 400_000;
        let mut d = FrameDecoder::new(max);
        let big = data(5, max + 1);
        for c in big.chunks(16 * 1024) {
            d.push(c);
            assert!(d.buffered() + d.skipping() <= MAX_HEADER_LEN + 2 + 16 * 1024);
            if let Some(FrameItem::Oversize(o)) = d.next_item().unwrap() {
                assert_eq!(o.head.len(), MAX_HEADER_LEN + 2);
                assert_eq!(o.len, max + 1);
            }
        }
        assert_eq!(d.buffered() + d.skipping(), 0);
        let mut d = FrameDecoder::new(100);
        d.push(&data(1, 101)[..8]);
        assert!(matches!(d.next_frame(), Err(WireError::TooLarge { .. })));
        let mut d = FrameDecoder::new(100);
        d.push(&[0x42, 0, 0, 0, 0, 0, 0, 0]);
        assert!(d.next_item().is_err());
    }
}
