//! Stream framing for SIP over TCP/TLS (RFC 3261 section 18.3, RFC 5626 section 3.5.1).
//!
//! A stream carries messages back to back; each one's length is its header section plus
//! Content-Length (mandatory on streams). [`frame_len`] looks at the start of a buffer and says
//! `Ok(Some(n))` (the first `n` bytes are one message), `Ok(None)` (need more bytes) or `Err`
//! (garbage: the connection should be closed). Leading CRLFs (keep-alives, section 7.5) are
//! part of the frame and skipped by the parser; a buffer holding only CRLFs is reported by
//! [`StreamFramer`] as keep-alive pings to answer with a single CRLF (RFC 5626 3.5.1).

use bytes::{Buf, Bytes, BytesMut};

use super::error::{ErrorKind, ParseError};
use super::message::Message;
use super::parse::{find_head, scan_content_length, LIMITS};

/// Length of the first complete message in `buf`, `Ok(None)` if more bytes are needed,
/// `Err` if the bytes cannot start a SIP message (no Content-Length, bad Content-Length,
/// header section or body over the limits).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some((_start, head_end, body_start)) = find_head(buf)? else {
        return Ok(None);
    };
    let head = &buf[..head_end + 2];
    let cl = scan_content_length(head)?.ok_or(ErrorKind::MissingContentLength)?;
    if cl > LIMITS.max_body {
        return Err(ErrorKind::TooLarge.into());
    }
    let total = body_start + cl;
    Ok((buf.len() >= total).then_some(total))
}

/// What [`StreamFramer::next_frame`] found.
#[derive(Debug)]
#[must_use]
#[expect(
    clippy::large_enum_variant,
    reason = "frames are moved once to the caller; boxing would cost an allocation per message"
)]
pub enum Frame {
    /// A complete, parsed message.
    Message(Message),
    /// A complete message that failed to parse (the stream stays in sync; answer 400 if it is
    /// a request, see [`ParseError::error_response`]).
    Invalid(ParseError),
    /// A `CRLFCRLF` keep-alive ping (RFC 5626 section 3.5.1): answer with `CRLF`.
    Ping,
    /// A lone `CRLF` (pong, or padding): nothing to do.
    Pong,
}

/// Buffers bytes read from a stream and cuts them into messages (sans-IO: the driver feeds
/// what it read with [`StreamFramer::push`] and drains [`StreamFramer::next_frame`]).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
}

impl StreamFramer {
    /// An empty framer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet framed.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, `Ok(None)` if more bytes are needed, `Err` if the stream is garbage
    /// (close the connection).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.advance(4);
            return Ok(Some(Frame::Ping));
        }
        if self.buf.len() >= 2 && self.buf.starts_with(b"\r\n") {
            if self.buf.len() == 2 || !self.buf[2..].starts_with(b"\r") {
                self.buf.advance(2);
                return Ok(Some(Frame::Pong));
            }
            if self.buf.len() < 4 {
                return Ok(None);
            }
        }
        if self.buf == b"\r"[..] {
            return Ok(None);
        }
        match frame_len(&self.buf)? {
            None => {
                if self.buf.len() > LIMITS.max_head + LIMITS.max_body {
                    return Err(ErrorKind::TooLarge.into());
                }
                Ok(None)
            }
            Some(n) => {
                let frame: Bytes = self.buf.split_to(n).freeze();
                Ok(Some(match super::parse::parse_stream(&frame) {
                    Ok(m) => Frame::Message(m),
                    Err(e) => Frame::Invalid(e),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nabcd";

    #[test]
    fn incomplete_is_not_invalid() {
        for n in 0..MSG.len() {
            assert_eq!(frame_len(&MSG[..n]).unwrap(), None, "prefix {n}");
        }
        assert_eq!(frame_len(MSG).unwrap(), Some(MSG.len()));
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame_len(&two).unwrap(), Some(MSG.len()));
    }

    #[test]
    fn garbage_is_an_error() {
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert_eq!(
            frame_len(no_cl).unwrap_err().kind(),
            &ErrorKind::MissingContentLength
        );
        let bad_cl = b"OPTIONS sip:a@b SIP/2.0\r\nl: -5\r\n\r\n";
        assert!(frame_len(bad_cl).is_err());
        let two_cl = b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\nContent-Length: 5\r\n\r\n";
        assert!(frame_len(two_cl).is_err());
        let huge = vec![b'a'; LIMITS.max_head + 10];
        assert!(frame_len(&huge).is_err());
    }

    #[test]
    fn framer_cuts_messages_and_pings() {
        let mut f = StreamFramer::new();
        let mut data = b"\r\n\r\n".to_vec();
        data.extend_from_slice(MSG);
        data.extend_from_slice(MSG);
        for chunk in data.chunks(7) {
            f.push(chunk);
        }
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Ping)));
        for _ in 0..2 {
            match f.next_frame().unwrap() {
                Some(Frame::Message(m)) => assert_eq!(&m.body()[..], b"abcd"),
                other => panic!("{other:?}"),
            }
        }
        assert!(f.next_frame().unwrap().is_none());
        assert_eq!(f.buffered(), 0);
    }
}
