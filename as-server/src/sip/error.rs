//! Errors of the SIP codec.
//!
//! [`ParseError`] says *why* a message was refused (an [`ErrorKind`], split by cause so the
//! caller can pick the answer: 400 with a reason phrase, 505, 413...) and, when the request line
//! and enough headers could be read, carries the partially parsed [`Request`] so a stateless
//! error response can be built ([`ParseError::error_response`], RFC 3261 section 8.2.6 and
//! 16.3). Incomplete stream input is not an error: [`crate::sip::framing`] reports it as
//! `Ok(None)`.

use super::header::HeaderName;
use super::message::{Request, Response, StatusCode};

/// What was wrong with the bytes (RFC 3261 section 25 grammar, section 7 message rules, and the
/// codec's own size limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No complete start line / header section (datagram cut short).
    #[error("message truncated")]
    Truncated,
    /// Message is larger than the codec accepts (see [`crate::sip::parse::Limits`]).
    #[error("message too large")]
    TooLarge,
    /// More header fields than the codec accepts.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Header section is not valid UTF-8 (RFC 3261 section 7.3.1: TEXT-UTF8).
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// Request line does not follow `Method SP Request-URI SP SIP-Version CRLF` (section 7.1).
    #[error("malformed request line")]
    BadRequestLine,
    /// Status line does not follow `SIP-Version SP Status-Code SP Reason-Phrase CRLF`.
    #[error("malformed status line")]
    BadStatusLine,
    /// Method is not a token (section 25.1).
    #[error("malformed method")]
    BadMethod,
    /// Request-URI does not follow the grammar.
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// Request-URI carries `?headers`, forbidden there (section 19.1.1 table, RFC 4475 3.1.2.11).
    #[error("headers not allowed in Request-URI")]
    RequestUriHeaders,
    /// A well-formed SIP-Version that is not 2.0: answered with 505 (section 21.5.6).
    #[error("SIP version not supported")]
    VersionNotSupported,
    /// Status code outside 100..=699 or not 3 digits (section 7.2).
    #[error("bad status code")]
    BadStatusCode,
    /// Reason phrase with characters outside the grammar.
    #[error("bad reason phrase")]
    BadReason,
    /// A header line without a colon or with a name that is not a token.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A header value that does not follow the grammar of that header.
    #[error("malformed {0} header")]
    BadHeader(HeaderName),
    /// A header that may appear once appears several times (RFC 4475 3.3.8, 3.3.9).
    #[error("multiple {0} headers")]
    DuplicateHeader(HeaderName),
    /// A mandatory header is absent (section 8.1.1).
    #[error("missing {0} header")]
    MissingHeader(HeaderName),
    /// Content-Length is larger than the body received on a datagram (section 18.3).
    #[error("body shorter than Content-Length")]
    BodyTooShort,
    /// Content-Length absent on a stream transport (section 18.3, 20.14).
    #[error("missing Content-Length on stream")]
    MissingContentLength,
    /// CSeq method differs from the request method (section 8.1.1.5, RFC 4475 3.1.2.17).
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
}

impl ErrorKind {
    /// The status code a UAS or proxy answers a request with when it fails this way.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ErrorKind::VersionNotSupported => StatusCode::VERSION_NOT_SUPPORTED,
            ErrorKind::TooLarge => StatusCode::MESSAGE_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A message the codec refused. See the module docs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    kind: ErrorKind,
    partial: Option<Box<Request>>,
}

impl From<ErrorKind> for ParseError {
    fn from(kind: ErrorKind) -> Self {
        ParseError {
            kind,
            partial: None,
        }
    }
}

impl ParseError {
    /// An error of this kind, with no partial request.
    #[must_use]
    pub fn new(kind: ErrorKind) -> Self {
        kind.into()
    }

    pub(crate) fn with_partial(mut self, req: Request) -> Self {
        self.partial = Some(Box::new(req));
        self
    }

    /// Why the message was refused.
    #[must_use]
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The status code to answer with (400, 505, 513).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// A reason phrase naming the cause, e.g. `Bad Request (malformed Via header)`; it is
    /// used in the 4xx/5xx status line (RFC 3261 section 21.4.1 lets the phrase say why).
    #[must_use]
    pub fn reason_phrase(&self) -> String {
        let base = self.status().canonical_reason().unwrap_or("Bad Request");
        format!("{base} ({})", self.kind)
    }

    /// What could be read of the request before the error: the request line and the header
    /// lines that parsed. `None` for responses and when the request line itself was bad.
    #[must_use]
    pub fn partial_request(&self) -> Option<&Request> {
        self.partial.as_deref()
    }

    /// The stateless error response (400/505/513 with [`Self::reason_phrase`]) for a refused
    /// request, if it can be routed back: the request line and a well-formed top Via were read
    /// (RFC 3261 section 8.2.6, 18.2.2). Via, From, To, Call-ID and CSeq are copied as far as
    /// they exist. `None` when the message was a response or cannot be answered.
    #[must_use]
    pub fn error_response(&self) -> Option<Response> {
        let req = self.partial.as_deref()?;
        req.top_via().ok()?;
        Some(Response::for_request(
            req,
            self.status(),
            self.reason_phrase(),
        ))
    }
}
