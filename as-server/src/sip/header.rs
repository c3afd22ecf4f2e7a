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

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Custom(Box<str>),
}

/// A header field name (open newtype; see the module docs).
#[derive(Clone)]
pub struct HeaderName(Repr);

macro_rules! std_headers {
    ($( $konst:ident = $full:literal $(, $compact:literal)? ; )*) => {
        impl HeaderName {
            $(
                #[doc = concat!("`", $full, "`")]
                pub const $konst: HeaderName = HeaderName(Repr::Static($full));
            )*
        }

        /// Maps a lower-cased name (full or compact) to its constant.
        fn lookup_lower(lower: &[u8]) -> Option<HeaderName> {
            const fn lower_of(s: &str) -> [u8; 40] {
                let b = s.as_bytes();
                let mut out = [0u8; 40];
                let mut i = 0;
                while i < b.len() {
                    out[i] = b[i].to_ascii_lowercase();
                    i += 1;
                }
                out
            }
            $(
                {
                    const L: [u8; 40] = lower_of($full);
                    if lower.len() == $full.len() && lower == &L[..$full.len()] {
                        return Some(HeaderName::$konst);
                    }
                    $( if lower == $compact.as_bytes() { return Some(HeaderName::$konst); } )?
                }
            )*
            None
        }
    };
}

std_headers! {
    VIA = "Via", "v";
    FROM = "From", "f";
    TO = "To", "t";
    CALL_ID = "Call-ID", "i";
    CSEQ = "CSeq";
    CONTACT = "Contact", "m";
    MAX_FORWARDS = "Max-Forwards";
    CONTENT_TYPE = "Content-Type", "c";
    CONTENT_LENGTH = "Content-Length", "l";
    CONTENT_ENCODING = "Content-Encoding", "e";
    CONTENT_DISPOSITION = "Content-Disposition";
    CONTENT_LANGUAGE = "Content-Language";
    EXPIRES = "Expires";
    SUBJECT = "Subject", "s";
    EVENT = "Event", "o";
    ALLOW_EVENTS = "Allow-Events", "u";
    SUBSCRIPTION_STATE = "Subscription-State";
    ALLOW = "Allow";
    SUPPORTED = "Supported", "k";
    REQUIRE = "Require";
    PROXY_REQUIRE = "Proxy-Require";
    UNSUPPORTED = "Unsupported";
    WARNING = "Warning";
    RETRY_AFTER = "Retry-After";
    ROUTE = "Route";
    RECORD_ROUTE = "Record-Route";
    PATH = "Path";
    SERVICE_ROUTE = "Service-Route";
    ACCEPT = "Accept";
    ACCEPT_ENCODING = "Accept-Encoding";
    ACCEPT_LANGUAGE = "Accept-Language";
    USER_AGENT = "User-Agent";
    SERVER = "Server";
    DATE = "Date";
    AUTHORIZATION = "Authorization";
    PROXY_AUTHORIZATION = "Proxy-Authorization";
    WWW_AUTHENTICATE = "WWW-Authenticate";
    PROXY_AUTHENTICATE = "Proxy-Authenticate";
    REFER_TO = "Refer-To", "r";
    REFERRED_BY = "Referred-By", "b";
    REPLY_TO = "Reply-To";
    IN_REPLY_TO = "In-Reply-To";
    ORGANIZATION = "Organization";
    PRIORITY = "Priority";
    MIN_EXPIRES = "Min-Expires";
    MIME_VERSION = "MIME-Version";
    TIMESTAMP = "Timestamp";
    ALERT_INFO = "Alert-Info";
    CALL_INFO = "Call-Info";
    ERROR_INFO = "Error-Info";
    RSEQ = "RSeq";
    RACK = "RAck";
    SESSION_EXPIRES = "Session-Expires", "x";
    MIN_SE = "Min-SE";
    P_ASSERTED_IDENTITY = "P-Asserted-Identity";
    IDENTITY = "Identity", "y";
    CONTENT_TRANSFER_ENCODING = "Content-Transfer-Encoding";
}

impl HeaderName {
    /// A header name from its text: known names (full or compact, any case) become the
    /// constant, others are kept as written. The caller checks it is a token.
    #[must_use]
    pub fn new(name: &str) -> HeaderName {
        let b = name.as_bytes();
        if b.len() <= 40 {
            let mut buf = [0u8; 40];
            for (d, s) in buf.iter_mut().zip(b) {
                *d = s.to_ascii_lowercase();
            }
            if let Some(h) = lookup_lower(&buf[..b.len()]) {
                return h;
            }
        }
        HeaderName(Repr::Custom(name.into()))
    }

    /// The name as it is written on the wire (full form for known names).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Custom(s) => s,
        }
    }

    /// Whether this is a header whose value is a comma-separated list split into one entry per
    /// element at parse time (RFC 3261 section 7.3.1).
    #[must_use]
    pub fn is_list(&self) -> bool {
        matches!(&self.0, Repr::Static(s) if LIST_HEADERS.contains(s))
    }

    /// Whether the header may appear at most once (RFC 3261 section 20 table; RFC 4475 3.3.8).
    #[must_use]
    pub fn is_single(&self) -> bool {
        matches!(&self.0, Repr::Static(s) if SINGLE_HEADERS.contains(s))
    }
}

const LIST_HEADERS: &[&str] = &[
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "Path",
    "Service-Route",
    "Allow",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow-Events",
    "Content-Encoding",
    "Content-Language",
    "Alert-Info",
    "Call-Info",
    "Error-Info",
    "In-Reply-To",
    "Warning",
];

const SINGLE_HEADERS: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
    "Content-Length",
    "Expires",
    "Date",
    "Min-Expires",
    "Retry-After",
    "Subscription-State",
    "Event",
    "Refer-To",
    "RSeq",
    "RAck",
    "MIME-Version",
];

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Static(a), Repr::Static(b)) => std::ptr::eq(*a, *b) || a == b,
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
        let trimmed = v.trim_matches(|c| c == ' ' || c == '\t');
        let off = v.len() - v.trim_start_matches(|c| c == ' ' || c == '\t').len();
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
