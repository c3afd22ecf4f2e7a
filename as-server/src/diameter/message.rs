//! Diameter messages (RFC 6733 section 3): the 20-byte header, the owned [`Message`] with its
//! AVPs, the borrowed [`MessageRef`], stream framing ([`frame_len`]) and the checks of
//! sections 4.1 (M bit) and 7 that need the whole message.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Version    |                 Message Length                |
//! | command flags |                  Command Code                 |
//! |                         Application-ID                        |
//! |                      Hop-by-Hop Identifier                    |
//! |                      End-to-End Identifier                    |
//! |  AVPs ...
//! ```

use bytes::Bytes;

use super::avp::{decode_avps, pad4, Avp, AvpIter, AvpList, AvpValue, MAX_LEN24};
use super::dict::{self, MRule};
use super::error::{DecodeError, DecodeErrorKind, EncodeError, FrameError};
use super::types::{ApplicationId, AvpFlags, CommandCode, CommandFlags, ResultCode};

/// Size of the Diameter header.
pub const HEADER_LEN: usize = 20;

/// Default largest message [`frame_len`] accepts from a peer (a UDA with a big User-Data fits
/// easily; RFC 6733 sets no limit below the 24-bit length).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// The fixed header (RFC 6733 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Message Length (header + AVPs).
    pub length: u32,
    /// Command flags.
    pub flags: CommandFlags,
    /// Command code (24 bits).
    pub code: CommandCode,
    /// Application-Id.
    pub application: ApplicationId,
    /// Hop-by-Hop Identifier.
    pub hop_by_hop: u32,
    /// End-to-End Identifier.
    pub end_to_end: u32,
}

impl Header {
    /// Read the header at the start of `buf` without checking the length against `buf`
    /// (5015 if `buf` is shorter than 20 bytes, 5011 for a version other than 1).
    pub fn parse(buf: &[u8]) -> Result<Header, DecodeError> {
        let Some((h, _)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(DecodeErrorKind::InvalidMessageLength.into());
        };
        let be = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let header = Header {
            length: be(0) & 0x00ff_ffff,
            flags: CommandFlags(h[4]),
            code: CommandCode(be(4) & 0x00ff_ffff),
            application: ApplicationId(be(8)),
            hop_by_hop: be(12),
            end_to_end: be(16),
        };
        if h[0] != 1 {
            return Err(DecodeError::new(DecodeErrorKind::UnsupportedVersion).with_header(header));
        }
        Ok(header)
    }

    /// Read the header of the complete message `buf` and check it: version 1 (5011), Message
    /// Length equal to `buf.len()`, at least 20 and a multiple of 4 (5015), no E bit on a
    /// request (3008).
    pub fn parse_checked(buf: &[u8]) -> Result<Header, DecodeError> {
        let header = Header::parse(buf)?;
        let len = header.length as usize;
        if len != buf.len() || len < HEADER_LEN || len % 4 != 0 {
            return Err(DecodeError::new(DecodeErrorKind::InvalidMessageLength).with_header(header));
        }
        if header.flags.is_request() && header.flags.is_error() {
            return Err(DecodeError::new(DecodeErrorKind::InvalidHeaderBits).with_header(header));
        }
        Ok(header)
    }
}

/// Length of the first Diameter message in a stream buffer (RFC 6733 section 3; TCP/TLS
/// carry messages back to back): `Ok(Some(n))` when the first `n` bytes are a whole message,
/// `Ok(None)` when more bytes are needed, `Err` when the stream is garbage or announces a
/// message over `max_message_size` (close the connection; nothing is allocated for it).
pub fn frame_len(buf: &[u8], max_message_size: usize) -> Result<Option<usize>, FrameError> {
    let Some(h) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    if h[0] != 1 {
        return Err(FrameError::UnsupportedVersion(h[0]));
    }
    let len = u32::from_be_bytes([0, h[1], h[2], h[3]]);
    if (len as usize) < HEADER_LEN || len % 4 != 0 {
        return Err(FrameError::InvalidLength(len));
    }
    if len as usize > max_message_size {
        return Err(FrameError::TooLarge {
            len,
            max: max_message_size,
        });
    }
    Ok((buf.len() >= len as usize).then_some(len as usize))
}

/// A Diameter message: header fields and AVPs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Command flags (R, P, E, T).
    pub flags: CommandFlags,
    /// Command code.
    pub code: CommandCode,
    /// Application-Id.
    pub application: ApplicationId,
    /// Hop-by-Hop Identifier (set by the peer layer).
    pub hop_by_hop: u32,
    /// End-to-End Identifier (set by the peer layer).
    pub end_to_end: u32,
    /// The AVPs.
    pub avps: Vec<Avp>,
}

impl AvpList for Message {
    fn avps(&self) -> &[Avp] {
        &self.avps
    }
}

impl Message {
    /// A request (R bit; P bit when `proxiable`) with identifiers 0 and no AVPs.
    #[must_use]
    pub fn request(code: CommandCode, application: ApplicationId, proxiable: bool) -> Message {
        Message {
            flags: CommandFlags::REQUEST.with(CommandFlags::PROXIABLE, proxiable),
            code,
            application,
            hop_by_hop: 0,
            end_to_end: 0,
            avps: Vec::new(),
        }
    }

    /// An empty answer to `req` (RFC 6733 section 6.2): same code, application and
    /// identifiers, R cleared, P copied.
    #[must_use]
    pub fn answer_to(req: &Message) -> Message {
        Message {
            flags: CommandFlags(req.flags.0 & CommandFlags::PROXIABLE.0),
            code: req.code,
            application: req.application,
            hop_by_hop: req.hop_by_hop,
            end_to_end: req.end_to_end,
            avps: Vec::new(),
        }
    }

    /// The header fields of this message (length computed).
    #[must_use]
    pub fn header(&self) -> Header {
        Header {
            length: self.wire_len().min(MAX_LEN24) as u32,
            flags: self.flags,
            code: self.code,
            application: self.application,
            hop_by_hop: self.hop_by_hop,
            end_to_end: self.end_to_end,
        }
    }

    /// Whether the R bit is set.
    #[must_use]
    pub fn is_request(&self) -> bool {
        self.flags.is_request()
    }

    /// Message Length on the wire.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.avps.iter().map(|a| pad4(a.wire_len())).sum::<usize>()
    }

    /// Decode one complete message (exactly `buf`). Header checks as
    /// [`Header::parse_checked`]; AVP lengths (5014), known AVPs' values (5004/5014) and
    /// nesting depth (5012) checked; unknown AVPs kept as raw bytes. The input is copied once;
    /// OctetString values share that copy.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let header = Header::parse_checked(buf)?;
        Self::decode_body(header, Bytes::copy_from_slice(&buf[HEADER_LEN..]))
    }

    /// As [`Message::decode`], sharing `buf` (OctetString values are slices of it).
    pub fn decode_bytes(buf: &Bytes) -> Result<Message, DecodeError> {
        let header = Header::parse_checked(buf)?;
        Self::decode_body(header, buf.slice(HEADER_LEN..))
    }

    fn decode_body(header: Header, body: Bytes) -> Result<Message, DecodeError> {
        let mut sid = None;
        let avps = decode_avps(&body, 0, body.len(), 0, &mut sid)
            .map_err(|e| e.with_header(header).with_session_id(sid.clone()))?;
        Ok(Message {
            flags: header.flags,
            code: header.code,
            application: header.application,
            hop_by_hop: header.hop_by_hop,
            end_to_end: header.end_to_end,
            avps,
        })
    }

    /// Append the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.code.0 > 0x00ff_ffff {
            return Err(EncodeError::CommandCodeTooLarge(self.code.0));
        }
        let start = out.len();
        out.reserve(self.wire_len().min(MAX_LEN24));
        out.extend_from_slice(&[1, 0, 0, 0]);
        let cc = self.code.0.to_be_bytes();
        out.extend_from_slice(&[self.flags.0, cc[1], cc[2], cc[3]]);
        out.extend_from_slice(&self.application.0.to_be_bytes());
        out.extend_from_slice(&self.hop_by_hop.to_be_bytes());
        out.extend_from_slice(&self.end_to_end.to_be_bytes());
        for a in &self.avps {
            if let Err(e) = a.encode(out) {
                out.truncate(start);
                return Err(e);
            }
        }
        let len = out.len() - start;
        if len > MAX_LEN24 {
            out.truncate(start);
            return Err(EncodeError::TooLong(0));
        }
        let l = (len as u32).to_be_bytes();
        out[start + 1..start + 4].copy_from_slice(&l[1..]);
        Ok(())
    }

    /// The encoded message as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.encode(&mut v)?;
        Ok(v)
    }

    /// The Session-Id, if present and the first such AVP is text.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.find(&dict::SESSION_ID).and_then(|a| a.as_str().ok())
    }

    /// The Result-Code, if present.
    #[must_use]
    pub fn result_code(&self) -> Option<ResultCode> {
        self.find(&dict::RESULT_CODE)
            .and_then(|a| a.as_u32().ok())
            .map(ResultCode)
    }

    /// The M-bit and flag checks of RFC 6733 sections 4.1 and 7 over every AVP (members of
    /// known Grouped AVPs included): an AVP with the M bit that the dictionary does not know,
    /// or that the message's application does not define, is 5001 DIAMETER_AVP_UNSUPPORTED;
    /// a known AVP whose rule is "M must not" but carries the M bit is 3009
    /// DIAMETER_INVALID_AVP_BITS. Unknown AVPs without the M bit pass (they are kept and
    /// forwarded). Members of Failed-AVP are not checked. The error names the offending AVP as Failed-AVP and carries the header.
    pub fn check_avps(&self) -> Result<(), DecodeError> {
        fn walk(avps: &[Avp], app: ApplicationId) -> Result<(), DecodeError> {
            for a in avps {
                let m = a.flags.contains(AvpFlags::MANDATORY);
                match a.def() {
                    None if m => {
                        return Err(DecodeError::with_avp(
                            DecodeErrorKind::AvpUnsupported,
                            a.clone(),
                        ))
                    }
                    None => {}
                    Some(d) => {
                        if m && !d.apps.allows(app) {
                            return Err(DecodeError::with_avp(
                                DecodeErrorKind::AvpUnsupported,
                                a.clone(),
                            ));
                        }
                        if m && d.m == MRule::MustNot {
                            return Err(DecodeError::with_avp(
                                DecodeErrorKind::InvalidAvpBits,
                                a.clone(),
                            ));
                        }
                        // Failed-AVP reports someone else's AVPs: not ours to check.
                        if let AvpValue::Grouped(members) = &a.value {
                            if !a.is(&dict::FAILED_AVP) {
                                walk(members, app)?;
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        walk(&self.avps, self.application).map_err(|e| {
            e.with_header(self.header())
                .with_session_id(self.session_id().map(str::to_owned))
        })
    }

    /// A [`DecodeError`] for this message (so a typed parser's 5005/5009 can be answered with
    /// [`DecodeError::error_answer`]).
    #[must_use]
    pub fn error(&self, e: DecodeError) -> DecodeError {
        e.with_header(self.header())
            .with_session_id(self.session_id().map(str::to_owned))
    }
}

/// A borrowed view of a complete message: the checked header and an iterator over the
/// top-level AVPs. Reading a message this way allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    /// The header.
    pub header: Header,
    body: &'a [u8],
}

impl<'a> MessageRef<'a> {
    /// Check the header of the complete message `buf` (as [`Header::parse_checked`]).
    pub fn parse(buf: &'a [u8]) -> Result<MessageRef<'a>, DecodeError> {
        let header = Header::parse_checked(buf)?;
        Ok(MessageRef {
            header,
            body: &buf[HEADER_LEN..],
        })
    }

    /// The top-level AVPs.
    #[must_use]
    pub fn avps(&self) -> AvpIter<'a> {
        AvpIter::new(self.body)
    }
}
