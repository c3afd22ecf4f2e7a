//! Header names and the ordered header list of a SIP message (RFC 3261 section 7.3, 20).
//!
//! [`HeaderName`] is an open newtype: the names the stack knows are constants (full names;
//! compact forms such as `v`, `f`, `m` map to them at parse time, section 7.3.3), any other
//! token survives as written. Comparison is case-insensitive.
//!
//! [`Headers`] keeps the fields in message order. Values live in one string buffer and entries
//! are ranges into it, so parsing a message costs two allocations for all of its headers;
//! values are typed lazily by the views in [`crate::sip::typed`]. Values are stored unfolded
//! (every `CRLF 1*WSP` replaced by one SP, section 7.3.1) and trimmed; list headers (Via,
//! Contact, Route...) are split at top-level commas into one entry per element, so
//! `get_all(&HeaderName::VIA)` yields each via-parm.

use std::fmt;

/// The header names the stack knows (index into the tables below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Std {
    Via,
    From,
    To,
    CallId,
    Cseq,
    Contact,
    MaxForwards,
    ContentType,
    ContentLength,
    ContentEncoding,
    ContentDisposition,
    ContentLanguage,
    Expires,
    Subject,
    Event,
    AllowEvents,
    SubscriptionState,
    Allow,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Warning,
    RetryAfter,
    Route,
    RecordRoute,
    Path,
    ServiceRoute,
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    UserAgent,
    Server,
    Date,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    ReferTo,
    ReferredBy,
    ReplyTo,
    InReplyTo,
    Organization,
    Priority,
    MinExpires,
    MimeVersion,
    Timestamp,
    AlertInfo,
    CallInfo,
    ErrorInfo,
    Rseq,
    Rack,
    SessionExpires,
    MinSe,
    PAssertedIdentity,
    Identity,
    ContentTransferEncoding,
}

impl Std {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Std::Via => "Via",
            Std::From => "From",
            Std::To => "To",
            Std::CallId => "Call-ID",
            Std::Cseq => "CSeq",
            Std::Contact => "Contact",
            Std::MaxForwards => "Max-Forwards",
            Std::ContentType => "Content-Type",
            Std::ContentLength => "Content-Length",
            Std::ContentEncoding => "Content-Encoding",
            Std::ContentDisposition => "Content-Disposition",
            Std::ContentLanguage => "Content-Language",
            Std::Expires => "Expires",
            Std::Subject => "Subject",
            Std::Event => "Event",
            Std::AllowEvents => "Allow-Events",
            Std::SubscriptionState => "Subscription-State",
            Std::Allow => "Allow",
            Std::Supported => "Supported",
            Std::Require => "Require",
            Std::ProxyRequire => "Proxy-Require",
            Std::Unsupported => "Unsupported",
            Std::Warning => "Warning",
            Std::RetryAfter => "Retry-After",
            Std::Route => "Route",
            Std::RecordRoute => "Record-Route",
            Std::Path => "Path",
            Std::ServiceRoute => "Service-Route",
            Std::Accept => "Accept",
            Std::AcceptEncoding => "Accept-Encoding",
            Std::AcceptLanguage => "Accept-Language",
            Std::UserAgent => "User-Agent",
            Std::Server => "Server",
            Std::Date => "Date",
            Std::Authorization => "Authorization",
            Std::ProxyAuthorization => "Proxy-Authorization",
            Std::WwwAuthenticate => "WWW-Authenticate",
            Std::ProxyAuthenticate => "Proxy-Authenticate",
            Std::ReferTo => "Refer-To",
            Std::ReferredBy => "Referred-By",
            Std::ReplyTo => "Reply-To",
            Std::InReplyTo => "In-Reply-To",
            Std::Organization => "Organization",
            Std::Priority => "Priority",
            Std::MinExpires => "Min-Expires",
            Std::MimeVersion => "MIME-Version",
            Std::Timestamp => "Timestamp",
            Std::AlertInfo => "Alert-Info",
            Std::CallInfo => "Call-Info",
            Std::ErrorInfo => "Error-Info",
            Std::Rseq => "RSeq",
            Std::Rack => "RAck",
            Std::SessionExpires => "Session-Expires",
            Std::MinSe => "Min-SE",
            Std::PAssertedIdentity => "P-Asserted-Identity",
            Std::Identity => "Identity",
            Std::ContentTransferEncoding => "Content-Transfer-Encoding",
        }
    }

    pub(crate) const fn is_list(self) -> bool {
        matches!(
            self,
            Std::Via
                | Std::Contact
                | Std::ContentEncoding
                | Std::ContentLanguage
                | Std::AllowEvents
                | Std::Allow
                | Std::Supported
                | Std::Require
                | Std::ProxyRequire
                | Std::Unsupported
                | Std::Warning
                | Std::Route
                | Std::RecordRoute
                | Std::Path
                | Std::ServiceRoute
                | Std::Accept
                | Std::AcceptEncoding
                | Std::AcceptLanguage
                | Std::InReplyTo
                | Std::AlertInfo
                | Std::CallInfo
                | Std::ErrorInfo
        )
    }

    pub(crate) const fn is_single(self) -> bool {
        matches!(
            self,
            Std::From
                | Std::To
                | Std::CallId
                | Std::Cseq
                | Std::MaxForwards
                | Std::ContentType
                | Std::ContentLength
                | Std::Expires
                | Std::Event
                | Std::SubscriptionState
                | Std::RetryAfter
                | Std::Date
                | Std::ReferTo
                | Std::MinExpires
                | Std::MimeVersion
                | Std::Rseq
                | Std::Rack
        )
    }

    /// Maps a name in any case (full or compact form, RFC 3261 section 7.3.3) to its id:
    /// dispatch on length and first octet, then one case-insensitive comparison. `name` is
    /// a token, so OR-ing 0x20 into each octet folds exactly the letters (see [`eq_lc`]).
    pub(crate) fn lookup(name: &[u8]) -> Option<Std> {
        let first = *name.first()? | 0x20;
        let found = match (name.len(), first) {
            (1, b'b') => Std::ReferredBy,
            (1, b'c') => Std::ContentType,
            (1, b'e') => Std::ContentEncoding,
            (1, b'f') => Std::From,
            (1, b'i') => Std::CallId,
            (1, b'k') => Std::Supported,
            (1, b'l') => Std::ContentLength,
            (1, b'm') => Std::Contact,
            (1, b'o') => Std::Event,
            (1, b'r') => Std::ReferTo,
            (1, b's') => Std::Subject,
            (1, b't') => Std::To,
            (1, b'u') => Std::AllowEvents,
            (1, b'v') => Std::Via,
            (1, b'x') => Std::SessionExpires,
            (1, b'y') => Std::Identity,
            (2, b't') if eq_lc(name, b"to") => Std::To,
            (3, b'v') if eq_lc(name, b"via") => Std::Via,
            (4, b'c') if eq_lc(name, b"cseq") => Std::Cseq,
            (4, b'd') if eq_lc(name, b"date") => Std::Date,
            (4, b'f') if eq_lc(name, b"from") => Std::From,
            (4, b'p') if eq_lc(name, b"path") => Std::Path,
            (4, b'r') => {
                if eq_lc(name, b"rseq") {
                    Std::Rseq
                } else if eq_lc(name, b"rack") {
                    Std::Rack
                } else {
                    return None;
                }
            }
            (5, b'a') if eq_lc(name, b"allow") => Std::Allow,
            (5, b'e') if eq_lc(name, b"event") => Std::Event,
            (5, b'r') if eq_lc(name, b"route") => Std::Route,
            (6, b'a') if eq_lc(name, b"accept") => Std::Accept,
            (6, b'm') if eq_lc(name, b"min-se") => Std::MinSe,
            (6, b's') if eq_lc(name, b"server") => Std::Server,
            (7, b'c') => {
                if eq_lc(name, b"call-id") {
                    Std::CallId
                } else if eq_lc(name, b"contact") {
                    Std::Contact
                } else {
                    return None;
                }
            }
            (7, b'e') if eq_lc(name, b"expires") => Std::Expires,
            (7, b'r') if eq_lc(name, b"require") => Std::Require,
            (7, b's') if eq_lc(name, b"subject") => Std::Subject,
            (7, b'w') if eq_lc(name, b"warning") => Std::Warning,
            (8, b'i') if eq_lc(name, b"identity") => Std::Identity,
            (8, b'p') if eq_lc(name, b"priority") => Std::Priority,
            (8, b'r') => {
                if eq_lc(name, b"refer-to") {
                    Std::ReferTo
                } else if eq_lc(name, b"reply-to") {
                    Std::ReplyTo
                } else {
                    return None;
                }
            }
            (9, b'c') if eq_lc(name, b"call-info") => Std::CallInfo,
            (9, b's') if eq_lc(name, b"supported") => Std::Supported,
            (9, b't') if eq_lc(name, b"timestamp") => Std::Timestamp,
            (10, b'a') if eq_lc(name, b"alert-info") => Std::AlertInfo,
            (10, b'e') if eq_lc(name, b"error-info") => Std::ErrorInfo,
            (10, b'u') if eq_lc(name, b"user-agent") => Std::UserAgent,
            (11, b'i') if eq_lc(name, b"in-reply-to") => Std::InReplyTo,
            (11, b'm') if eq_lc(name, b"min-expires") => Std::MinExpires,
            (11, b'r') => {
                if eq_lc(name, b"retry-after") {
                    Std::RetryAfter
                } else if eq_lc(name, b"referred-by") {
                    Std::ReferredBy
                } else {
                    return None;
                }
            }
            (11, b'u') if eq_lc(name, b"unsupported") => Std::Unsupported,
            (12, b'a') if eq_lc(name, b"allow-events") => Std::AllowEvents,
            (12, b'c') if eq_lc(name, b"content-type") => Std::ContentType,
            (12, b'm') => {
                if eq_lc(name, b"max-forwards") {
                    Std::MaxForwards
                } else if eq_lc(name, b"mime-version") {
                    Std::MimeVersion
                } else {
                    return None;
                }
            }
            (12, b'o') if eq_lc(name, b"organization") => Std::Organization,
            (12, b'r') if eq_lc(name, b"record-route") => Std::RecordRoute,
            (13, b'a') if eq_lc(name, b"authorization") => Std::Authorization,
            (13, b'p') if eq_lc(name, b"proxy-require") => Std::ProxyRequire,
            (13, b's') if eq_lc(name, b"service-route") => Std::ServiceRoute,
            (14, b'c') if eq_lc(name, b"content-length") => Std::ContentLength,
            (15, b'a') => {
                if eq_lc(name, b"accept-encoding") {
                    Std::AcceptEncoding
                } else if eq_lc(name, b"accept-language") {
                    Std::AcceptLanguage
                } else {
                    return None;
                }
            }
            (15, b's') if eq_lc(name, b"session-expires") => Std::SessionExpires,
            (16, b'c') => {
                if eq_lc(name, b"content-encoding") {
                    Std::ContentEncoding
                } else if eq_lc(name, b"content-language") {
                    Std::ContentLanguage
                } else {
                    return None;
                }
            }
            (16, b'w') if eq_lc(name, b"www-authenticate") => Std::WwwAuthenticate,
            (18, b'p') if eq_lc(name, b"proxy-authenticate") => Std::ProxyAuthenticate,
            (18, b's') if eq_lc(name, b"subscription-state") => Std::SubscriptionState,
            (19, b'c') if eq_lc(name, b"content-disposition") => Std::ContentDisposition,
            (19, b'p') => {
                if eq_lc(name, b"proxy-authorization") {
                    Std::ProxyAuthorization
                } else if eq_lc(name, b"p-asserted-identity") {
                    Std::PAssertedIdentity
                } else {
                    return None;
                }
            }
            (25, b'c') if eq_lc(name, b"content-transfer-encoding") => Std::ContentTransferEncoding,
            _ => return None,
        };
        Some(found)
    }
}

/// Whether token `name` equals the lower-case `lower` ignoring ASCII case. For token octets
/// `c | 0x20` maps a letter to its lower case and leaves `-`, digits and the other token
/// marks on values no letter maps to, so the word-wise OR-compare is exact.
#[inline]
fn eq_lc(name: &[u8], lower: &[u8]) -> bool {
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    if n >= 8 {
        const M: u64 = 0x2020_2020_2020_2020;
        let ld = |s: &[u8], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let mut i = 0;
        while i + 8 < n {
            if ld(name, i) | M != ld(lower, i) {
                return false;
            }
            i += 8;
        }
        return ld(name, n - 8) | M == ld(lower, n - 8);
    }
    if n >= 4 {
        const M: u32 = 0x2020_2020;
        let ld = |s: &[u8], i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&s[i..i + 4]);
            u32::from_le_bytes(w)
        };
        return ld(name, 0) | M == ld(lower, 0) && ld(name, n - 4) | M == ld(lower, n - 4);
    }
    name.iter().zip(lower).all(|(&c, &l)| c | 0x20 == l)
}

const _: () = assert!(
    (Std::ContentTransferEncoding as usize) < 64,
    "parse.rs `seen` table"
);

#[derive(Clone)]
enum Repr {
    Std(Std),
    Custom(Box<str>),
}

/// A header field name (open newtype; see the module docs).
#[derive(Clone)]
pub struct HeaderName(Repr);

impl HeaderName {
    #[doc = "`Via`"]
    pub const VIA: HeaderName = HeaderName(Repr::Std(Std::Via));
    #[doc = "`From`"]
    pub const FROM: HeaderName = HeaderName(Repr::Std(Std::From));
    #[doc = "`To`"]
    pub const TO: HeaderName = HeaderName(Repr::Std(Std::To));
    #[doc = "`Call-ID`"]
    pub const CALL_ID: HeaderName = HeaderName(Repr::Std(Std::CallId));
    #[doc = "`CSeq`"]
    pub const CSEQ: HeaderName = HeaderName(Repr::Std(Std::Cseq));
    #[doc = "`Contact`"]
    pub const CONTACT: HeaderName = HeaderName(Repr::Std(Std::Contact));
    #[doc = "`Max-Forwards`"]
    pub const MAX_FORWARDS: HeaderName = HeaderName(Repr::Std(Std::MaxForwards));
    #[doc = "`Content-Type`"]
    pub const CONTENT_TYPE: HeaderName = HeaderName(Repr::Std(Std::ContentType));
    #[doc = "`Content-Length`"]
    pub const CONTENT_LENGTH: HeaderName = HeaderName(Repr::Std(Std::ContentLength));
    #[doc = "`Content-Encoding`"]
    pub const CONTENT_ENCODING: HeaderName = HeaderName(Repr::Std(Std::ContentEncoding));
    #[doc = "`Content-Disposition`"]
    pub const CONTENT_DISPOSITION: HeaderName = HeaderName(Repr::Std(Std::ContentDisposition));
    #[doc = "`Content-Language`"]
    pub const CONTENT_LANGUAGE: HeaderName = HeaderName(Repr::Std(Std::ContentLanguage));
    #[doc = "`Expires`"]
    pub const EXPIRES: HeaderName = HeaderName(Repr::Std(Std::Expires));
    #[doc = "`Subject`"]
    pub const SUBJECT: HeaderName = HeaderName(Repr::Std(Std::Subject));
    #[doc = "`Event`"]
    pub const EVENT: HeaderName = HeaderName(Repr::Std(Std::Event));
    #[doc = "`Allow-Events`"]
    pub const ALLOW_EVENTS: HeaderName = HeaderName(Repr::Std(Std::AllowEvents));
    #[doc = "`Subscription-State`"]
    pub const SUBSCRIPTION_STATE: HeaderName = HeaderName(Repr::Std(Std::SubscriptionState));
    #[doc = "`Allow`"]
    pub const ALLOW: HeaderName = HeaderName(Repr::Std(Std::Allow));
    #[doc = "`Supported`"]
    pub const SUPPORTED: HeaderName = HeaderName(Repr::Std(Std::Supported));
    #[doc = "`Require`"]
    pub const REQUIRE: HeaderName = HeaderName(Repr::Std(Std::Require));
    #[doc = "`Proxy-Require`"]
    pub const PROXY_REQUIRE: HeaderName = HeaderName(Repr::Std(Std::ProxyRequire));
    #[doc = "`Unsupported`"]
    pub const UNSUPPORTED: HeaderName = HeaderName(Repr::Std(Std::Unsupported));
    #[doc = "`Warning`"]
    pub const WARNING: HeaderName = HeaderName(Repr::Std(Std::Warning));
    #[doc = "`Retry-After`"]
    pub const RETRY_AFTER: HeaderName = HeaderName(Repr::Std(Std::RetryAfter));
    #[doc = "`Route`"]
    pub const ROUTE: HeaderName = HeaderName(Repr::Std(Std::Route));
    #[doc = "`Record-Route`"]
    pub const RECORD_ROUTE: HeaderName = HeaderName(Repr::Std(Std::RecordRoute));
    #[doc = "`Path`"]
    pub const PATH: HeaderName = HeaderName(Repr::Std(Std::Path));
    #[doc = "`Service-Route`"]
    pub const SERVICE_ROUTE: HeaderName = HeaderName(Repr::Std(Std::ServiceRoute));
    #[doc = "`Accept`"]
    pub const ACCEPT: HeaderName = HeaderName(Repr::Std(Std::Accept));
    #[doc = "`Accept-Encoding`"]
    pub const ACCEPT_ENCODING: HeaderName = HeaderName(Repr::Std(Std::AcceptEncoding));
    #[doc = "`Accept-Language`"]
    pub const ACCEPT_LANGUAGE: HeaderName = HeaderName(Repr::Std(Std::AcceptLanguage));
    #[doc = "`User-Agent`"]
    pub const USER_AGENT: HeaderName = HeaderName(Repr::Std(Std::UserAgent));
    #[doc = "`Server`"]
    pub const SERVER: HeaderName = HeaderName(Repr::Std(Std::Server));
    #[doc = "`Date`"]
    pub const DATE: HeaderName = HeaderName(Repr::Std(Std::Date));
    #[doc = "`Authorization`"]
    pub const AUTHORIZATION: HeaderName = HeaderName(Repr::Std(Std::Authorization));
    #[doc = "`Proxy-Authorization`"]
    pub const PROXY_AUTHORIZATION: HeaderName = HeaderName(Repr::Std(Std::ProxyAuthorization));
    #[doc = "`WWW-Authenticate`"]
    pub const WWW_AUTHENTICATE: HeaderName = HeaderName(Repr::Std(Std::WwwAuthenticate));
    #[doc = "`Proxy-Authenticate`"]
    pub const PROXY_AUTHENTICATE: HeaderName = HeaderName(Repr::Std(Std::ProxyAuthenticate));
    #[doc = "`Refer-To`"]
    pub const REFER_TO: HeaderName = HeaderName(Repr::Std(Std::ReferTo));
    #[doc = "`Referred-By`"]
    pub const REFERRED_BY: HeaderName = HeaderName(Repr::Std(Std::ReferredBy));
    #[doc = "`Reply-To`"]
    pub const REPLY_TO: HeaderName = HeaderName(Repr::Std(Std::ReplyTo));
    #[doc = "`In-Reply-To`"]
    pub const IN_REPLY_TO: HeaderName = HeaderName(Repr::Std(Std::InReplyTo));
    #[doc = "`Organization`"]
    pub const ORGANIZATION: HeaderName = HeaderName(Repr::Std(Std::Organization));
    #[doc = "`Priority`"]
    pub const PRIORITY: HeaderName = HeaderName(Repr::Std(Std::Priority));
    #[doc = "`Min-Expires`"]
    pub const MIN_EXPIRES: HeaderName = HeaderName(Repr::Std(Std::MinExpires));
    #[doc = "`MIME-Version`"]
    pub const MIME_VERSION: HeaderName = HeaderName(Repr::Std(Std::MimeVersion));
    #[doc = "`Timestamp`"]
    pub const TIMESTAMP: HeaderName = HeaderName(Repr::Std(Std::Timestamp));
    #[doc = "`Alert-Info`"]
    pub const ALERT_INFO: HeaderName = HeaderName(Repr::Std(Std::AlertInfo));
    #[doc = "`Call-Info`"]
    pub const CALL_INFO: HeaderName = HeaderName(Repr::Std(Std::CallInfo));
    #[doc = "`Error-Info`"]
    pub const ERROR_INFO: HeaderName = HeaderName(Repr::Std(Std::ErrorInfo));
    #[doc = "`RSeq`"]
    pub const RSEQ: HeaderName = HeaderName(Repr::Std(Std::Rseq));
    #[doc = "`RAck`"]
    pub const RACK: HeaderName = HeaderName(Repr::Std(Std::Rack));
    #[doc = "`Session-Expires`"]
    pub const SESSION_EXPIRES: HeaderName = HeaderName(Repr::Std(Std::SessionExpires));
    #[doc = "`Min-SE`"]
    pub const MIN_SE: HeaderName = HeaderName(Repr::Std(Std::MinSe));
    #[doc = "`P-Asserted-Identity`"]
    pub const P_ASSERTED_IDENTITY: HeaderName = HeaderName(Repr::Std(Std::PAssertedIdentity));
    #[doc = "`Identity`"]
    pub const IDENTITY: HeaderName = HeaderName(Repr::Std(Std::Identity));
    #[doc = "`Content-Transfer-Encoding`"]
    pub const CONTENT_TRANSFER_ENCODING: HeaderName =
        HeaderName(Repr::Std(Std::ContentTransferEncoding));

    /// A header name from its text: known names (full or compact, any case) become the
    /// constant, others are kept as written. The caller checks it is a token.
    #[must_use]
    pub fn new(name: &str) -> HeaderName {
        let b = name.as_bytes();
        // `Std::lookup` folds case by OR-ing 0x20, exact for token octets; a CR would fold to
        // '-', so names with control octets (never tokens) are kept as written.
        if !b.iter().any(|&c| c < 0x20) {
            if let Some(h) = Std::lookup(b) {
                return HeaderName(Repr::Std(h));
            }
        }
        HeaderName(Repr::Custom(name.into()))
    }

    /// The constant for a known id.
    pub(crate) const fn from_std(id: Std) -> HeaderName {
        HeaderName(Repr::Std(id))
    }

    pub(crate) fn std(&self) -> Option<Std> {
        match self.0 {
            Repr::Std(s) => Some(s),
            Repr::Custom(_) => None,
        }
    }

    /// The name as it is written on the wire (full form for known names).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Std(s) => s.name(),
            Repr::Custom(s) => s,
        }
    }

    /// Whether this is a header whose value is a comma-separated list split into one entry per
    /// element at parse time (RFC 3261 section 7.3.1).
    #[must_use]
    pub fn is_list(&self) -> bool {
        self.std().is_some_and(Std::is_list)
    }

    /// Whether the header may appear at most once (RFC 3261 section 20 table; RFC 4475 3.3.8).
    #[must_use]
    pub fn is_single(&self) -> bool {
        self.std().is_some_and(Std::is_single)
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Std(a), Repr::Std(b)) => a == b,
            (Repr::Custom(a), Repr::Custom(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}
impl Eq for HeaderName {}

impl std::hash::Hash for HeaderName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.as_str().bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::new(s)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    name: HeaderName,
    start: u32,
    end: u32,
}

/// The ordered header fields of a message (see the module docs).
#[derive(Clone, Default)]
pub struct Headers {
    buf: String,
    entries: Vec<Entry>,
    garbage: usize,
}

impl Headers {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_buffer(buf: String, cap: usize) -> Self {
        Headers {
            buf,
            entries: Vec::with_capacity(cap),
            garbage: 0,
        }
    }

    pub(crate) fn buf_mut(&mut self) -> &mut String {
        &mut self.buf
    }

    pub(crate) fn push_range(&mut self, name: HeaderName, start: usize, end: usize) {
        self.entries.push(Entry {
            name,
            start: start as u32,
            end: end as u32,
        });
    }

    pub(crate) fn value_at_range(&self, start: usize, end: usize) -> &str {
        &self.buf[start..end]
    }

    /// Number of header fields (list headers count one per element).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of `name`.
    #[must_use]
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.name == *name)
            .map(|e| &self.buf[e.start as usize..e.end as usize])
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.name == *name)
            .map(|e| &self.buf[e.start as usize..e.end as usize])
    }

    /// Number of values of `name`.
    #[must_use]
    pub fn count(&self, name: &HeaderName) -> usize {
        self.entries.iter().filter(|e| e.name == *name).count()
    }

    /// Whether `name` is present.
    #[must_use]
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.entries.iter().any(|e| e.name == *name)
    }

    fn store(&mut self, value: &str) -> (u32, u32) {
        if self.garbage > 4096 && self.garbage > self.buf.len() / 2 {
            self.compact();
        }
        let start = self.buf.len();
        // No header injection: a value never carries a line break (section 7.3.1 folding
        // is only a way of writing LWS, so replacing it with SP keeps the meaning).
        for c in value.chars() {
            self.buf.push(if c == '\r' || c == '\n' { ' ' } else { c });
        }
        let v = &self.buf[start..];
        let trimmed = v.trim_matches([' ', '\t']);
        let off = v.len() - v.trim_start_matches([' ', '\t']).len();
        let (s, e) = (start + off, start + off + trimmed.len());
        (s as u32, e as u32)
    }

    fn compact(&mut self) {
        let mut buf = String::with_capacity(self.buf.len() - self.garbage);
        for e in &mut self.entries {
            let v = &self.buf[e.start as usize..e.end as usize];
            let s = buf.len();
            buf.push_str(v);
            e.start = s as u32;
            e.end = buf.len() as u32;
        }
        self.buf = buf;
        self.garbage = 0;
    }

    /// Appends a field. CR/LF in the value are replaced by SP and the value is trimmed.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        let (start, end) = self.store(&value);
        self.entries.push(Entry { name, start, end });
    }

    /// Inserts a field before all others (e.g. a new top Via, RFC 3261 section 16.6).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        let (start, end) = self.store(&value);
        self.entries.insert(0, Entry { name, start, end });
    }

    /// Replaces all fields `name` with one value (at the place of the first, or at the end).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        let (start, end) = self.store(&value);
        if let Some(pos) = self.entries.iter().position(|e| e.name == name) {
            self.garbage += (self.entries[pos].end - self.entries[pos].start) as usize;
            self.entries[pos].start = start;
            self.entries[pos].end = end;
            let mut i = pos + 1;
            while i < self.entries.len() {
                if self.entries[i].name == name {
                    let e = self.entries.remove(i);
                    self.garbage += (e.end - e.start) as usize;
                } else {
                    i += 1;
                }
            }
        } else {
            self.entries.push(Entry { name, start, end });
        }
    }

    /// Replaces the first value of `name` only (e.g. the top Via after adding `received`).
    pub fn set_first(&mut self, name: &HeaderName, value: impl Into<String>) {
        let value = value.into();
        let (start, end) = self.store(&value);
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == *name) {
            self.garbage += (e.end - e.start) as usize;
            e.start = start;
            e.end = end;
        } else {
            self.entries.push(Entry {
                name: name.clone(),
                start,
                end,
            });
        }
    }

    /// Removes every field `name`; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.entries.len();
        let mut garbage = 0;
        self.entries.retain(|e| {
            let keep = e.name != *name;
            if !keep {
                garbage += (e.end - e.start) as usize;
            }
            keep
        });
        self.garbage += garbage;
        before - self.entries.len()
    }

    /// Removes the first field `name` (e.g. the top Via, section 8.1.3.3).
    pub fn remove_first(&mut self, name: &HeaderName) -> bool {
        if let Some(pos) = self.entries.iter().position(|e| e.name == *name) {
            let e = self.entries.remove(pos);
            self.garbage += (e.end - e.start) as usize;
            true
        } else {
            false
        }
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> + '_ {
        self.entries
            .iter()
            .map(|e| (&e.name, &self.buf[e.start as usize..e.end as usize]))
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}
impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<N: Into<HeaderName>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.push(n.into(), v);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_compact() {
        assert_eq!(HeaderName::new("v"), HeaderName::VIA);
        assert_eq!(HeaderName::new("VIA"), HeaderName::VIA);
        assert_eq!(HeaderName::new("call-id"), HeaderName::CALL_ID);
        assert_eq!(HeaderName::new("I"), HeaderName::CALL_ID);
        assert_eq!(HeaderName::new("l"), HeaderName::CONTENT_LENGTH);
        assert_eq!(HeaderName::new("X-Foo"), HeaderName::new("x-foo"));
        assert_ne!(HeaderName::new("C%6Fntact"), HeaderName::CONTACT);
        assert_eq!(HeaderName::new("x-foo").as_str(), "x-foo");
        assert_eq!(HeaderName::new("cseq").as_str(), "CSeq");
    }

    #[test]
    fn ordered_list_operations() {
        let mut h = Headers::new();
        h.push(HeaderName::VIA, "SIP/2.0/UDP a");
        h.push(HeaderName::TO, "<sip:b@c>");
        h.push(HeaderName::VIA, " SIP/2.0/UDP b\r\n x ");
        assert_eq!(h.get(&HeaderName::VIA), Some("SIP/2.0/UDP a"));
        let vias: Vec<_> = h.get_all(&HeaderName::VIA).collect();
        assert_eq!(vias, vec!["SIP/2.0/UDP a", "SIP/2.0/UDP b   x"]);
        h.set(HeaderName::VIA, "SIP/2.0/TCP z");
        assert_eq!(h.count(&HeaderName::VIA), 1);
        assert_eq!(h.iter().next().unwrap().1, "SIP/2.0/TCP z");
        h.push_front(HeaderName::new("X-A"), "1");
        assert_eq!(h.iter().next().unwrap().0.as_str(), "X-A");
        assert_eq!(h.remove(&HeaderName::VIA), 1);
        assert!(!h.contains(&HeaderName::VIA));
        for i in 0..10_000 {
            h.set(HeaderName::SUBJECT, format!("subject number {i}"));
        }
        assert!(h.buf.len() < 20_000, "buffer is compacted");
        assert_eq!(h.get(&HeaderName::SUBJECT), Some("subject number 9999"));
        assert_eq!(h.get(&HeaderName::TO), Some("<sip:b@c>"));
    }
}
