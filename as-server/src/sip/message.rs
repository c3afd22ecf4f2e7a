//! SIP messages: [`Request`], [`Response`], [`Message`] (RFC 3261 section 7), their typed
//! header views, building responses (section 8.2.6) and encoding.
//!
//! Parsing lives in [`crate::sip::parse`]; `Message::parse` is the entry point for a datagram.
//! Encoding writes a canonical form: the start line, every header as `Name: value` in order
//! (full names, list elements one per line) and `Content-Length` set from the body, so a
//! parsed message re-parses to an equal one.

use std::fmt;

use bytes::Bytes;

use super::error::{ErrorKind, ParseError};
use super::header::{HeaderName, Headers};
use super::typed::{saturating_delta, CSeq, NameAddr, Via};
use super::uri::Uri;

#[derive(Clone)]
enum MRepr {
    Static(&'static str),
    Ext(Box<str>),
}

/// A SIP method (open newtype: extension methods survive, section 7.1; case-sensitive).
#[derive(Clone)]
pub struct Method(MRepr);

impl Method {
    /// INVITE (RFC 3261)
    pub const INVITE: Method = Method(MRepr::Static("INVITE"));
    /// ACK (RFC 3261)
    pub const ACK: Method = Method(MRepr::Static("ACK"));
    /// BYE (RFC 3261)
    pub const BYE: Method = Method(MRepr::Static("BYE"));
    /// CANCEL (RFC 3261)
    pub const CANCEL: Method = Method(MRepr::Static("CANCEL"));
    /// OPTIONS (RFC 3261)
    pub const OPTIONS: Method = Method(MRepr::Static("OPTIONS"));
    /// REGISTER (RFC 3261)
    pub const REGISTER: Method = Method(MRepr::Static("REGISTER"));
    /// SUBSCRIBE (RFC 6665)
    pub const SUBSCRIBE: Method = Method(MRepr::Static("SUBSCRIBE"));
    /// NOTIFY (RFC 6665)
    pub const NOTIFY: Method = Method(MRepr::Static("NOTIFY"));
    /// MESSAGE (RFC 3428)
    pub const MESSAGE: Method = Method(MRepr::Static("MESSAGE"));
    /// INFO (RFC 6086)
    pub const INFO: Method = Method(MRepr::Static("INFO"));
    /// UPDATE (RFC 3311)
    pub const UPDATE: Method = Method(MRepr::Static("UPDATE"));
    /// PRACK (RFC 3262)
    pub const PRACK: Method = Method(MRepr::Static("PRACK"));
    /// REFER (RFC 3515)
    pub const REFER: Method = Method(MRepr::Static("REFER"));
    /// PUBLISH (RFC 3903)
    pub const PUBLISH: Method = Method(MRepr::Static("PUBLISH"));

    /// A method from its name (the caller checks it is a token).
    #[must_use]
    pub fn new(name: &str) -> Method {
        match name {
            "INVITE" => Method::INVITE,
            "ACK" => Method::ACK,
            "BYE" => Method::BYE,
            "CANCEL" => Method::CANCEL,
            "OPTIONS" => Method::OPTIONS,
            "REGISTER" => Method::REGISTER,
            "SUBSCRIBE" => Method::SUBSCRIBE,
            "NOTIFY" => Method::NOTIFY,
            "MESSAGE" => Method::MESSAGE,
            "INFO" => Method::INFO,
            "UPDATE" => Method::UPDATE,
            "PRACK" => Method::PRACK,
            "REFER" => Method::REFER,
            "PUBLISH" => Method::PUBLISH,
            _ => Method(MRepr::Ext(name.into())),
        }
    }

    /// The method name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            MRepr::Static(s) => s,
            MRepr::Ext(s) => s,
        }
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Method {}
impl std::hash::Hash for Method {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl From<&str> for Method {
    fn from(s: &str) -> Self {
        Method::new(s)
    }
}

/// A status code (section 21), open: any 100..=699 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

macro_rules! status_codes {
    ($( $konst:ident = $code:literal, $reason:literal; )*) => {
        impl StatusCode {
            $(
                #[doc = concat!($code, " ", $reason)]
                pub const $konst: StatusCode = StatusCode($code);
            )*
            /// The reason phrase RFC 3261 section 21 (and extensions) give this code.
            #[must_use]
            pub fn canonical_reason(self) -> Option<&'static str> {
                match self.0 {
                    $( $code => Some($reason), )*
                    _ => None,
                }
            }
        }
    };
}

status_codes! {
    TRYING = 100, "Trying";
    RINGING = 180, "Ringing";
    CALL_IS_BEING_FORWARDED = 181, "Call Is Being Forwarded";
    QUEUED = 182, "Queued";
    SESSION_PROGRESS = 183, "Session Progress";
    OK = 200, "OK";
    ACCEPTED = 202, "Accepted";
    MULTIPLE_CHOICES = 300, "Multiple Choices";
    MOVED_PERMANENTLY = 301, "Moved Permanently";
    MOVED_TEMPORARILY = 302, "Moved Temporarily";
    USE_PROXY = 305, "Use Proxy";
    BAD_REQUEST = 400, "Bad Request";
    UNAUTHORIZED = 401, "Unauthorized";
    PAYMENT_REQUIRED = 402, "Payment Required";
    FORBIDDEN = 403, "Forbidden";
    NOT_FOUND = 404, "Not Found";
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    NOT_ACCEPTABLE = 406, "Not Acceptable";
    PROXY_AUTHENTICATION_REQUIRED = 407, "Proxy Authentication Required";
    REQUEST_TIMEOUT = 408, "Request Timeout";
    GONE = 410, "Gone";
    REQUEST_ENTITY_TOO_LARGE = 413, "Request Entity Too Large";
    REQUEST_URI_TOO_LONG = 414, "Request-URI Too Long";
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    UNSUPPORTED_URI_SCHEME = 416, "Unsupported URI Scheme";
    BAD_EXTENSION = 420, "Bad Extension";
    EXTENSION_REQUIRED = 421, "Extension Required";
    INTERVAL_TOO_BRIEF = 423, "Interval Too Brief";
    TEMPORARILY_UNAVAILABLE = 480, "Temporarily Unavailable";
    CALL_DOES_NOT_EXIST = 481, "Call/Transaction Does Not Exist";
    LOOP_DETECTED = 482, "Loop Detected";
    TOO_MANY_HOPS = 483, "Too Many Hops";
    ADDRESS_INCOMPLETE = 484, "Address Incomplete";
    AMBIGUOUS = 485, "Ambiguous";
    BUSY_HERE = 486, "Busy Here";
    REQUEST_TERMINATED = 487, "Request Terminated";
    NOT_ACCEPTABLE_HERE = 488, "Not Acceptable Here";
    BAD_EVENT = 489, "Bad Event";
    REQUEST_PENDING = 491, "Request Pending";
    UNDECIPHERABLE = 493, "Undecipherable";
    SERVER_INTERNAL_ERROR = 500, "Server Internal Error";
    NOT_IMPLEMENTED = 501, "Not Implemented";
    BAD_GATEWAY = 502, "Bad Gateway";
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    SERVER_TIMEOUT = 504, "Server Time-out";
    VERSION_NOT_SUPPORTED = 505, "Version Not Supported";
    MESSAGE_TOO_LARGE = 513, "Message Too Large";
    BUSY_EVERYWHERE = 600, "Busy Everywhere";
    DECLINE = 603, "Decline";
    DOES_NOT_EXIST_ANYWHERE = 604, "Does Not Exist Anywhere";
    NOT_ACCEPTABLE_ANYWHERE = 606, "Not Acceptable";
}

impl StatusCode {
    /// 1xx
    #[must_use]
    pub fn is_provisional(self) -> bool {
        (100..200).contains(&self.0)
    }
    /// 2xx
    #[must_use]
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
    /// 200..=699
    #[must_use]
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }
    /// The class digit (1..=6).
    #[must_use]
    pub fn class(self) -> u16 {
        self.0 / 100
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Header fields.
    pub headers: Headers,
    /// Body, byte-exact.
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase (may be empty, RFC 4475 3.1.1.13).
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
    /// Body, byte-exact.
    pub body: Bytes,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Request
    Request(Request),
    /// Response
    Response(Response),
}

fn bad(h: &HeaderName) -> ParseError {
    ErrorKind::BadHeader(h.clone()).into()
}

fn missing(h: &HeaderName) -> ParseError {
    ErrorKind::MissingHeader(h.clone()).into()
}

/// Typed header views shared by requests and responses.
macro_rules! header_views {
    () => {
        /// The top Via (section 8.2.6.2, 18.2.2).
        pub fn top_via(&self) -> Result<Via, ParseError> {
            let v = self
                .headers
                .get(&HeaderName::VIA)
                .ok_or_else(|| missing(&HeaderName::VIA))?;
            Via::parse(v).ok_or_else(|| bad(&HeaderName::VIA))
        }

        /// All Via values, top first.
        pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
            self.headers
                .get_all(&HeaderName::VIA)
                .map(|v| Via::parse(v).ok_or_else(|| bad(&HeaderName::VIA)))
                .collect()
        }

        /// CSeq.
        pub fn cseq(&self) -> Result<CSeq, ParseError> {
            let v = self
                .headers
                .get(&HeaderName::CSEQ)
                .ok_or_else(|| missing(&HeaderName::CSEQ))?;
            CSeq::parse(v).ok_or_else(|| bad(&HeaderName::CSEQ))
        }

        /// Call-ID.
        pub fn call_id(&self) -> Result<&str, ParseError> {
            self.headers
                .get(&HeaderName::CALL_ID)
                .ok_or_else(|| missing(&HeaderName::CALL_ID))
        }

        /// From.
        pub fn from(&self) -> Result<NameAddr, ParseError> {
            self.name_addr(&HeaderName::FROM)
        }

        /// To.
        pub fn to(&self) -> Result<NameAddr, ParseError> {
            self.name_addr(&HeaderName::TO)
        }

        /// The first Contact (`Ok(None)` if absent; `*` is refused here, see `contacts`).
        pub fn contact(&self) -> Result<Option<NameAddr>, ParseError> {
            match self.headers.get(&HeaderName::CONTACT) {
                None => Ok(None),
                Some(v) => NameAddr::parse(v)
                    .map(Some)
                    .ok_or_else(|| bad(&HeaderName::CONTACT)),
            }
        }

        /// All Contact values (empty for `Contact: *`, see `is_wildcard_contact`).
        pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
            self.headers
                .get_all(&HeaderName::CONTACT)
                .filter(|v| *v != "*")
                .map(|v| NameAddr::parse(v).ok_or_else(|| bad(&HeaderName::CONTACT)))
                .collect()
        }

        /// Whether the message has `Contact: *` (REGISTER removing all bindings, 10.2.2).
        #[must_use]
        pub fn is_wildcard_contact(&self) -> bool {
            self.headers.get_all(&HeaderName::CONTACT).any(|v| v == "*")
        }

        /// Route / Record-Route style name-addr list.
        pub fn name_addrs(&self, name: &HeaderName) -> Result<Vec<NameAddr>, ParseError> {
            self.headers
                .get_all(name)
                .map(|v| NameAddr::parse(v).ok_or_else(|| bad(name)))
                .collect()
        }

        fn name_addr(&self, name: &HeaderName) -> Result<NameAddr, ParseError> {
            let v = self.headers.get(name).ok_or_else(|| missing(name))?;
            NameAddr::parse(v).ok_or_else(|| bad(name))
        }

        /// Expires (delta-seconds, saturated; section 20.19).
        #[must_use]
        pub fn expires(&self) -> Option<u32> {
            self.headers.get(&HeaderName::EXPIRES).map(saturating_delta)
        }

        /// Content-Type value (media type and parameters), if any.
        #[must_use]
        pub fn content_type(&self) -> Option<&str> {
            self.headers.get(&HeaderName::CONTENT_TYPE)
        }

        /// Whether Content-Type is `ty/subty` (parameters ignored, case-insensitive).
        #[must_use]
        pub fn content_type_is(&self, ty: &str) -> bool {
            self.content_type().is_some_and(|c| {
                let base = c.split(';').next().unwrap_or("");
                let base: String = base.chars().filter(|c| !c.is_whitespace()).collect();
                base.eq_ignore_ascii_case(ty)
            })
        }

        /// Max-Forwards (`None` if absent).
        pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
            match self.headers.get(&HeaderName::MAX_FORWARDS) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u8>()
                    .map(Some)
                    .map_err(|_| bad(&HeaderName::MAX_FORWARDS)),
            }
        }
    };
}

impl Request {
    /// A request with no headers and no body.
    #[must_use]
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    header_views!();

    /// Writes the canonical encoding (see the module docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        encode_rest(&self.headers, &self.body, out);
    }

    /// The encoding as a new vector.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.encode(&mut v);
        v
    }
}

impl Response {
    /// A response with the given status and reason and nothing else.
    #[must_use]
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Response {
        Response {
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` (RFC 3261 section 8.2.6.2): copies every Via (in order), From,
    /// To, Call-ID and CSeq; for 100 Trying also Timestamp (section 8.2.6.1). An empty
    /// `reason` is replaced by the canonical phrase.
    #[must_use]
    pub fn for_request(req: &Request, status: StatusCode, reason: impl Into<String>) -> Response {
        let mut reason = reason.into();
        if reason.is_empty() {
            reason = status.canonical_reason().unwrap_or("").to_owned();
        }
        let mut headers = Headers::new();
        for (n, v) in req.headers.iter() {
            if *n == HeaderName::VIA
                || *n == HeaderName::FROM
                || *n == HeaderName::TO
                || *n == HeaderName::CALL_ID
                || *n == HeaderName::CSEQ
                || (status == StatusCode::TRYING && *n == HeaderName::TIMESTAMP)
            {
                headers.push(n.clone(), v);
            }
        }
        Response {
            status,
            reason,
            headers,
            body: Bytes::new(),
        }
    }

    /// Adds `;tag=` to To if it has none (section 8.2.6.2).
    #[must_use]
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        if let Some(to) = self.headers.get(&HeaderName::TO) {
            let has_tag = NameAddr::parse(to).is_some_and(|n| n.tag().is_some());
            if !has_tag {
                let v = format!("{to};tag={tag}");
                self.headers.set(HeaderName::TO, v);
            }
        }
        self
    }

    header_views!();

    /// Writes the canonical encoding (see the module docs).
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        encode_rest(&self.headers, &self.body, out);
    }

    /// The encoding as a new vector.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.encode(&mut v);
        v
    }
}

fn encode_rest(headers: &Headers, body: &Bytes, out: &mut Vec<u8>) {
    let mut wrote_cl = false;
    for (n, v) in headers.iter() {
        if *n == HeaderName::CONTENT_LENGTH {
            if wrote_cl {
                continue;
            }
            wrote_cl = true;
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            continue;
        }
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_cl {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

impl Message {
    /// Parses one whole message from a datagram (UDP rules for Content-Length, section 18.3:
    /// a longer body is truncated, a shorter one is an error, none means the rest).
    pub fn parse(datagram: &[u8]) -> Result<Message, ParseError> {
        super::parse::parse_datagram(datagram, None)
    }

    /// Like [`Message::parse`] but the body is a zero-copy slice of `datagram`.
    pub fn parse_bytes(datagram: &Bytes) -> Result<Message, ParseError> {
        super::parse::parse_datagram(datagram, Some(datagram))
    }

    /// Parses one message framed from a stream (TCP/TLS, section 18.3): Content-Length is
    /// required; give it exactly one frame as cut by [`crate::sip::framing`] (bytes past
    /// Content-Length are not part of the message).
    pub fn parse_stream(frame: &[u8]) -> Result<Message, ParseError> {
        super::parse::parse_stream(frame)
    }

    /// Writes the canonical encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }

    /// The encoding as a new vector.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The headers.
    #[must_use]
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The request, if it is one.
    #[must_use]
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if it is one.
    #[must_use]
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Request(_) => None,
            Message::Response(r) => Some(r),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}
impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}
