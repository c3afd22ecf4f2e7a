//! Errors of the Diameter codec, shaped so an answer can be built from them (RFC 6733
//! section 7: Result-Code, E bit for protocol errors, Failed-AVP).
//!
//! [`DecodeError`] says why bytes or a message were refused ([`DecodeErrorKind`], each with
//! its Result-Code), which AVP was at fault (the Failed-AVP to return, section 7.5), and — when
//! the 20-byte header could be read — that header and the Session-Id if one was read before the
//! fault, so [`DecodeError::error_answer`] can answer the request (section 7.2). A stream that
//! has not delivered a whole message yet is not an error: [`crate::diameter::frame_len`] says
//! `Ok(None)`. [`FrameError`] is for a stream that cannot carry on (close the connection), and
//! [`EncodeError`] for a caller that built something the wire cannot carry.

use super::avp::Avp;
use super::dict;
use super::message::{Header, Message};
use super::types::{CommandFlags, ResultCode};

/// Why a message was refused; each maps to a Result-Code ([`DecodeErrorKind::result_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Shorter than the header, or the header's Message Length does not match the bytes, is
    /// not a multiple of 4 or is below 20 (5015 DIAMETER_INVALID_MESSAGE_LENGTH).
    #[error("invalid message length")]
    InvalidMessageLength,
    /// Version is not 1 (5011 DIAMETER_UNSUPPORTED_VERSION).
    #[error("unsupported Diameter version")]
    UnsupportedVersion,
    /// Header flags inconsistent (E bit on a request): 3008 DIAMETER_INVALID_HDR_BITS.
    #[error("invalid header bits")]
    InvalidHeaderBits,
    /// AVP Length below the header size, past the end of the message/group, or wrong for the
    /// AVP's data type (5014 DIAMETER_INVALID_AVP_LENGTH).
    #[error("invalid AVP length")]
    InvalidAvpLength,
    /// AVP data not valid for its type (bad UTF-8, bad DiameterIdentity...), 5004.
    #[error("invalid AVP value")]
    InvalidAvpValue,
    /// Grouped AVPs nested deeper than [`crate::diameter::MAX_GROUP_DEPTH`] (5012
    /// DIAMETER_UNABLE_TO_COMPLY).
    #[error("grouped AVPs nested too deep")]
    NestingTooDeep,
    /// An AVP with the M bit that the message's application does not define (5001).
    #[error("unsupported mandatory AVP")]
    AvpUnsupported,
    /// AVP flags inconsistent with the AVP's definition (M set where it must not be), 3009.
    #[error("invalid AVP bits")]
    InvalidAvpBits,
    /// A required AVP is missing (5005 DIAMETER_MISSING_AVP).
    #[error("missing AVP")]
    MissingAvp,
    /// An AVP occurs more often than the command allows (5009).
    #[error("AVP occurs too many times")]
    AvpOccursTooManyTimes,
    /// The message is not the command/direction the typed parser expected (3001
    /// DIAMETER_COMMAND_UNSUPPORTED).
    #[error("unexpected command")]
    UnexpectedCommand,
}

impl DecodeErrorKind {
    /// The Result-Code to answer with (RFC 6733 section 7.1).
    #[must_use]
    pub fn result_code(self) -> ResultCode {
        match self {
            Self::InvalidMessageLength => ResultCode::DIAMETER_INVALID_MESSAGE_LENGTH,
            Self::UnsupportedVersion => ResultCode::DIAMETER_UNSUPPORTED_VERSION,
            Self::InvalidHeaderBits => ResultCode::DIAMETER_INVALID_HDR_BITS,
            Self::InvalidAvpLength => ResultCode::DIAMETER_INVALID_AVP_LENGTH,
            Self::InvalidAvpValue => ResultCode::DIAMETER_INVALID_AVP_VALUE,
            Self::NestingTooDeep => ResultCode::DIAMETER_UNABLE_TO_COMPLY,
            Self::AvpUnsupported => ResultCode::DIAMETER_AVP_UNSUPPORTED,
            Self::InvalidAvpBits => ResultCode::DIAMETER_INVALID_AVP_BITS,
            Self::MissingAvp => ResultCode::DIAMETER_MISSING_AVP,
            Self::AvpOccursTooManyTimes => ResultCode::DIAMETER_AVP_OCCURS_TOO_MANY_TIMES,
            Self::UnexpectedCommand => ResultCode::DIAMETER_COMMAND_UNSUPPORTED,
        }
    }
}

/// A refused message: the cause, the Failed-AVP, and what of the request could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}{}", .failed_avp.as_ref().map(|a| format!(" (AVP {} vendor {})", a.code.0, a.vendor.0)).unwrap_or_default())]
pub struct DecodeError {
    kind: DecodeErrorKind,
    failed_avp: Option<Box<Avp>>,
    header: Option<Header>,
    session_id: Option<String>,
}

impl DecodeError {
    /// An error of `kind` with no Failed-AVP.
    #[must_use]
    pub fn new(kind: DecodeErrorKind) -> Self {
        Self {
            kind,
            failed_avp: None,
            header: None,
            session_id: None,
        }
    }

    /// An error of `kind` naming `avp` as the Failed-AVP.
    #[must_use]
    pub fn with_avp(kind: DecodeErrorKind, avp: Avp) -> Self {
        Self {
            failed_avp: Some(Box::new(avp)),
            ..Self::new(kind)
        }
    }

    /// 5005 for a missing AVP: the Failed-AVP is the AVP with an empty/zero value of its
    /// type, as RFC 6733 section 7.5 asks ("the AVP that could not be found").
    #[must_use]
    pub fn missing(def: &dict::AvpDef) -> Self {
        Self::with_avp(DecodeErrorKind::MissingAvp, Avp::placeholder(def))
    }

    /// Attach the header of the message being read (done by the decoder).
    #[must_use]
    pub fn with_header(mut self, header: Header) -> Self {
        self.header = Some(header);
        self
    }

    /// Attach the Session-Id read before the fault.
    #[must_use]
    pub fn with_session_id(mut self, session_id: Option<String>) -> Self {
        if self.session_id.is_none() {
            self.session_id = session_id;
        }
        self
    }

    /// Why.
    #[must_use]
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// The Result-Code for the answer.
    #[must_use]
    pub fn result_code(&self) -> ResultCode {
        self.kind.result_code()
    }

    /// The AVP to put in Failed-AVP, if one is at fault.
    #[must_use]
    pub fn failed_avp(&self) -> Option<&Avp> {
        self.failed_avp.as_deref()
    }

    /// The header of the refused message, if it could be read.
    #[must_use]
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The Session-Id of the refused message, if it was read before the fault.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The answer to send back for a refused *request* (RFC 6733 sections 7.2 and 7.5):
    /// same command code, application, Hop-by-Hop and End-to-End identifiers; R cleared, P
    /// copied, E set for a protocol error (3xxx); Session-Id (if read) first, then
    /// Result-Code, Origin-Host, Origin-Realm, and Failed-AVP when an AVP is at fault.
    /// `None` when the header could not be read or the message was an answer (answers are
    /// never answered; the connection-level action is the caller's).
    #[must_use]
    pub fn error_answer(&self, origin_host: &str, origin_realm: &str) -> Option<Message> {
        let h = self.header.as_ref()?;
        if !h.flags.is_request() {
            return None;
        }
        let rc = self.result_code();
        let mut flags = CommandFlags(h.flags.0 & CommandFlags::PROXIABLE.0);
        if rc.is_protocol_error() {
            flags = flags | CommandFlags::ERROR;
        }
        let mut avps = Vec::with_capacity(5);
        if let Some(sid) = &self.session_id {
            avps.push(Avp::utf8(&dict::SESSION_ID, sid.clone()));
        }
        avps.push(Avp::u32(&dict::RESULT_CODE, rc.0));
        avps.push(Avp::identity(&dict::ORIGIN_HOST, origin_host));
        avps.push(Avp::identity(&dict::ORIGIN_REALM, origin_realm));
        if let Some(a) = &self.failed_avp {
            avps.push(Avp::grouped(&dict::FAILED_AVP, vec![(**a).clone()]));
        }
        Some(Message {
            flags,
            code: h.code,
            application: h.application,
            hop_by_hop: h.hop_by_hop,
            end_to_end: h.end_to_end,
            avps,
        })
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        Self::new(kind)
    }
}

/// A stream cannot be framed (close the connection; RFC 6733 section 3 header checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Version is not 1.
    #[error("unsupported Diameter version {0}")]
    UnsupportedVersion(u8),
    /// Message Length below 20 or not a multiple of 4.
    #[error("invalid message length {0}")]
    InvalidLength(u32),
    /// Message Length above the configured maximum.
    #[error("message length {len} exceeds the maximum {max}")]
    TooLarge {
        /// Declared length.
        len: u32,
        /// Configured maximum.
        max: usize,
    },
}

/// A message this codec cannot put on the wire (the caller built it wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Command code over 24 bits.
    #[error("command code {0} does not fit in 24 bits")]
    CommandCodeTooLarge(u32),
    /// An AVP or the whole message is longer than the 24-bit length field allows.
    #[error("AVP {0} longer than 16 MiB")]
    TooLong(u32),
}
