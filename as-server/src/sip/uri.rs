//! SIP, SIPS, tel and other URIs (RFC 3261 section 19.1 and 25.1, RFC 3966 for tel).
//!
//! [`Uri::parse`] checks the full section 25.1 grammar (user, password, host, port, uri
//! parameters, headers, `%HH` escapes) and keeps every part as written (still escaped), so
//! `Display` gives back an equivalent URI and a parse/print round trip is exact.
//! [`Uri::equivalent`] compares the section 19.1.4 way (escapes decoded, host case-folded,
//! significant parameters). Non-SIP schemes are kept opaque.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::lex::{
    check_escaped, in_class, is_token, is_uric, scan_escaped, C_HNV, C_HOST, C_PARAM, C_PASSWORD,
    C_USER,
};

/// The URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS all the way, section 19.1)
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other absolute URI scheme (RFC 4475 3.3.2 / 3.3.4 show they must parse).
    Other(String),
}

impl Scheme {
    /// The scheme name, lower case for the known ones.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// The host part of a URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name, as written.
    Domain(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written as an `[IPv6reference]`).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses `hostname / IPv4address / IPv6reference` (section 25.1).
    pub fn parse(s: &str) -> Option<Host> {
        parse_host_ref(s).map(HostRef::to_owned_host)
    }

    /// Whether this is `host` ignoring case (domain names) or equal addresses.
    #[must_use]
    pub fn eq_ignore_case(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            _ => self == other,
        }
    }
}

/// `hostname = *( domainlabel "." ) toplabel [ "." ]`; labels are alphanum with inner '-'
/// and the top label starts with a letter.
pub(crate) fn valid_hostname(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 255 {
        return false;
    }
    let b = b.strip_suffix(b".").unwrap_or(b);
    // one pass: no label starts with '.' or '-' or ends with '-'; `top` is where the last
    // label starts (it must start with a letter)
    let mut prev = b'.';
    let mut top = 0;
    for (i, &c) in b.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            match c {
                b'.' if prev != b'.' && prev != b'-' => top = i + 1,
                b'-' if prev != b'.' => {}
                _ => return false,
            }
        }
        prev = c;
    }
    prev != b'.' && prev != b'-' && b.get(top).is_some_and(u8::is_ascii_alphabetic)
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A URI. For `sip:`/`sips:` every field is filled; for `tel:` and other schemes the text
/// after the colon is in `opaque` (for `tel:` `user` also holds the number and `params` its
/// parameters) and `host` is an empty domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme.
    pub scheme: Scheme,
    /// User part, still `%`-escaped as written (see [`Uri::user_unescaped`]).
    pub user: Option<String>,
    /// Password (deprecated, section 19.1.1), escaped as written.
    pub password: Option<String>,
    /// Host.
    pub host: Host,
    /// Port.
    pub port: Option<u16>,
    /// `;name[=value]` uri-parameters in order, escaped as written.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers in order, escaped as written.
    pub headers: Vec<(String, String)>,
    /// Everything after `scheme:` for non-SIP schemes.
    pub opaque: Option<String>,
}

/// A URI that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed URI")]
pub struct UriError;

impl Uri {
    /// A `sip:` URI with the given user and host and nothing else.
    #[must_use]
    pub fn sip(user: Option<&str>, host: Host) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_owned),
            password: None,
            host,
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
            opaque: None,
        }
    }

    /// Parses a URI (SIP-URI / SIPS-URI / absoluteURI of section 25.1).
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let colon = find_byte(s, b':').ok_or(UriError)?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        check_scheme(scheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other(scheme.to_owned())
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip(scheme, rest),
            _ => parse_absolute(scheme, rest),
        }
    }

    /// The user part with `%HH` escapes decoded (section 19.1.2; may hold any octet, even NUL,
    /// RFC 4475 3.1.1.4).
    #[must_use]
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user.as_deref().map(unescape)
    }

    /// The value of uri-parameter `name` (case-insensitive); `Some(None)` for a flag.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Whether the uri-parameter `name` is present (e.g. `lr`).
    #[must_use]
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// Whether this is a sip: or sips: URI.
    #[must_use]
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// URI comparison of RFC 3261 section 19.1.4: scheme, user and password (escapes decoded,
    /// case-sensitive), host (case-insensitive), port; `user`, `ttl`, `method`, `maddr` and
    /// `transport` parameters must match when either side has them, other parameters when
    /// both do; headers must match.
    #[must_use]
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if !self.is_sip() {
            return self.opaque == other.opaque;
        }
        if self.user_unescaped() != other.user_unescaped()
            || self.password.as_deref().map(unescape) != other.password.as_deref().map(unescape)
            || !self.host.eq_ignore_case(&other.host)
            || self.port != other.port
        {
            return false;
        }
        let decoded = |v: Option<&str>| v.map(|v| unescape(v).to_ascii_lowercase());
        for (n, v) in &self.params {
            match other.param(n) {
                Some(ov) => {
                    if decoded(v.as_deref()) != decoded(ov) {
                        return false;
                    }
                }
                None => {
                    if is_significant(n) {
                        return false;
                    }
                }
            }
        }
        for (n, _) in &other.params {
            if is_significant(n) && self.param(n).is_none() {
                return false;
            }
        }
        let mut a: Vec<_> = self
            .headers
            .iter()
            .map(|(n, v)| (unescape(n).to_ascii_lowercase(), unescape(v).into_owned()))
            .collect();
        let mut b: Vec<_> = other
            .headers
            .iter()
            .map(|(n, v)| (unescape(n).to_ascii_lowercase(), unescape(v).into_owned()))
            .collect();
        a.sort();
        b.sort();
        a == b
    }
}

fn is_significant(name: &str) -> bool {
    ["user", "ttl", "method", "maddr", "transport"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Decodes `%HH` escapes (invalid escapes are kept as written).
#[must_use]
pub fn unescape(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = |c: u8| (c as char).to_digit(16);
            if let (Some(x), Some(y)) = (h(b[i + 1]), h(b[i + 2])) {
                out.push((x * 16 + y) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A SIP URI scanned in place (no allocation); see [`validate`].
struct SipRef<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: HostRef<'a>,
    port: Option<u16>,
    /// Raw `;p;q=v` text (with the leading ';') or empty.
    params: &'a str,
    /// Raw `?h=v&...` text (with the leading '?') or empty.
    headers: &'a str,
}

#[derive(Clone, Copy)]
pub(crate) enum HostRef<'a> {
    Domain(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostRef<'_> {
    pub(crate) fn to_owned_host(self) -> Host {
        match self {
            HostRef::Domain(d) => Host::Domain(d.to_owned()),
            HostRef::V4(a) => Host::Ipv4(a),
            HostRef::V6(a) => Host::Ipv6(a),
        }
    }
}

pub(crate) fn parse_host_ref(s: &str) -> Option<HostRef<'_>> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        let inner = s.strip_prefix('[')?.strip_suffix(']')?;
        return inner.parse().ok().map(HostRef::V6);
    }
    if b.first().is_some_and(u8::is_ascii_digit) {
        if let Some(a) = parse_ipv4(b) {
            return Some(HostRef::V4(a));
        }
    }
    valid_hostname(b).then_some(HostRef::Domain(s))
}

/// The `hostname / IPv4address` starting at `s[hs..]` (the run of alphanum, '-' and '.') and
/// where it ends. A host that starts with a letter cannot be an IPv4address: the rules of
/// [`valid_hostname`] are then checked in the scanning pass; other hosts go through
/// [`parse_host_ref`].
pub(crate) fn scan_plain_host(s: &str, hs: usize) -> Option<(HostRef<'_>, usize)> {
    let b = s.as_bytes();
    let mut i = hs;
    if !b.get(hs).is_some_and(u8::is_ascii_alphabetic) {
        while i < b.len() && in_class(b[i], C_HOST) {
            i += 1;
        }
        return Some((parse_host_ref(&s[hs..i])?, i));
    }
    // `top`: where the last label starts; `last_top`: where the one before it starts (the
    // top label when the hostname ends in '.')
    let mut prev = b[hs];
    let mut top = hs;
    let mut last_top = hs;
    i += 1;
    while i < b.len() {
        let c = b[i];
        if !c.is_ascii_alphanumeric() {
            match c {
                b'.' if prev != b'.' && prev != b'-' => {
                    last_top = top;
                    top = i + 1;
                }
                b'-' if prev != b'.' => {}
                b'.' | b'-' => return None,
                _ => break,
            }
        }
        prev = c;
        i += 1;
    }
    let top = if prev == b'.' { last_top } else { top };
    let ok = i - hs <= 255 && prev != b'-' && b[top].is_ascii_alphabetic();
    ok.then_some((HostRef::Domain(&s[hs..i]), i))
}

/// `IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`, each at most 255, with
/// the rules of `Ipv4Addr::from_str` (no leading zero in a multi-digit octet), in one pass.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut out = [0u8; 4];
    let mut i = 0;
    for (k, o) in out.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let s = i;
        let mut v = 0u32;
        while i < b.len() && i - s < 3 && b[i].is_ascii_digit() {
            v = v * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        let n = i - s;
        if n == 0 || v > 255 || (n > 1 && b[s] == b'0') {
            return None;
        }
        *o = v as u8;
    }
    (i == b.len()).then(|| Ipv4Addr::from(out))
}

/// Position of `b` in a short string (a plain loop beats memchr's dispatch here).
#[inline]
fn find_byte(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

fn scan_sip(rest: &str) -> Result<SipRef<'_>, UriError> {
    let b = rest.as_bytes();
    // userinfo: everything before the first '@' (user and password cannot hold a raw '@').
    let (user, password, hs) = match b.iter().position(|&c| c == b'@') {
        None => (None, None, 0),
        Some(at) => {
            // user = 1*( unreserved / escaped / user-unreserved ), then [ ":" password ]
            let ue = scan_escaped(b, 0, C_USER).ok_or(UriError)?;
            if ue == 0 {
                return Err(UriError);
            }
            let password = if ue == at {
                None
            } else if b[ue] == b':' {
                let pe = scan_escaped(b, ue + 1, C_PASSWORD).ok_or(UriError)?;
                if pe != at {
                    return Err(UriError);
                }
                Some(&rest[ue + 1..at])
            } else {
                return Err(UriError);
            };
            (Some(&rest[..ue]), password, at + 1)
        }
    };
    // hostport = host [ ":" port ], ending at ';' (params), '?' (headers) or the end.
    let mut i = hs;
    let host = if b.get(i) == Some(&b'[') {
        i += b[i..].iter().position(|&c| c == b']').ok_or(UriError)? + 1;
        parse_host_ref(&rest[hs..i]).ok_or(UriError)?
    } else {
        let (host, end) = scan_plain_host(rest, hs).ok_or(UriError)?;
        i = end;
        host
    };
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let ps = i + 1;
        i = ps;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        port = Some(parse_port(&rest[ps..i]).ok_or(UriError)?);
    }
    // uri-parameters = *( ";" pname [ "=" pvalue ] ), both 1*paramchar
    let params_start = i;
    while b.get(i) == Some(&b';') {
        let ne = scan_escaped(b, i + 1, C_PARAM).ok_or(UriError)?;
        if ne == i + 1 {
            return Err(UriError);
        }
        i = ne;
        if b.get(i) == Some(&b'=') {
            let ve = scan_escaped(b, i + 1, C_PARAM).ok_or(UriError)?;
            if ve == i + 1 {
                return Err(UriError);
            }
            i = ve;
        }
    }
    let params = &rest[params_start..i];
    // headers = "?" header *( "&" header ), header = hname "=" hvalue
    let headers_start = i;
    if b.get(i) == Some(&b'?') {
        loop {
            let ne = scan_escaped(b, i + 1, C_HNV).ok_or(UriError)?;
            if ne == i + 1 || b.get(ne) != Some(&b'=') {
                return Err(UriError);
            }
            i = scan_escaped(b, ne + 1, C_HNV).ok_or(UriError)?;
            if b.get(i) != Some(&b'&') {
                break;
            }
        }
    }
    if i != b.len() {
        return Err(UriError);
    }
    Ok(SipRef {
        user,
        password,
        host,
        port,
        params,
        headers: &rest[headers_start..i],
    })
}

fn parse_sip(scheme: Scheme, rest: &str) -> Result<Uri, UriError> {
    let r = scan_sip(rest)?;
    let params = if r.params.is_empty() {
        Vec::new()
    } else {
        r.params[1..]
            .split(';')
            .map(|p| match p.find('=') {
                Some(e) => (p[..e].to_owned(), Some(p[e + 1..].to_owned())),
                None => (p.to_owned(), None),
            })
            .collect()
    };
    let headers = if r.headers.is_empty() {
        Vec::new()
    } else {
        r.headers[1..]
            .split('&')
            .map(|h| {
                let e = h.find('=').unwrap_or(h.len());
                (h[..e].to_owned(), h[(e + 1).min(h.len())..].to_owned())
            })
            .collect()
    };
    Ok(Uri {
        scheme,
        user: r.user.map(str::to_owned),
        password: r.password.map(str::to_owned),
        host: r.host.to_owned_host(),
        port: r.port,
        params,
        headers,
        opaque: None,
    })
}

/// What [`validate`] found out about a URI without building it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UriShape {
    pub is_sip: bool,
    pub has_headers: bool,
}

/// Checks the grammar of a URI without allocating (used by the strict message parser; the
/// typed views build a [`Uri`] later, on demand).
pub(crate) fn validate(s: &str) -> Result<UriShape, UriError> {
    let colon = find_byte(s, b':').ok_or(UriError)?;
    let scheme = &s[..colon];
    check_scheme(scheme)?;
    let rest = &s[colon + 1..];
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let r = scan_sip(rest)?;
        Ok(UriShape {
            is_sip: true,
            has_headers: !r.headers.is_empty(),
        })
    } else {
        check_absolute(rest)?;
        Ok(UriShape {
            is_sip: false,
            has_headers: false,
        })
    }
}

fn check_scheme(sb: &str) -> Result<(), UriError> {
    let sb = sb.as_bytes();
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err(UriError);
    }
    Ok(())
}

fn check_absolute(rest: &str) -> Result<(), UriError> {
    // absoluteURI = scheme ":" ( hier-part / opaque-part ): 1*( uric / escaped ).
    if rest.is_empty() || !check_escaped(rest.as_bytes(), false, is_uric) {
        return Err(UriError);
    }
    Ok(())
}

pub(crate) fn parse_port(p: &str) -> Option<u16> {
    let b = p.as_bytes();
    if b.is_empty() || b.len() > 5 {
        return None;
    }
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    u16::try_from(v).ok()
}

fn parse_absolute(scheme: Scheme, rest: &str) -> Result<Uri, UriError> {
    check_absolute(rest)?;
    let mut uri = Uri {
        scheme,
        user: None,
        password: None,
        host: Host::Domain(String::new()),
        port: None,
        params: Vec::new(),
        headers: Vec::new(),
        opaque: Some(rest.to_owned()),
    };
    if uri.scheme == Scheme::Tel {
        let mut parts = rest.split(';');
        let number = parts.next().unwrap_or_default();
        if number.is_empty() {
            return Err(UriError);
        }
        uri.user = Some(number.to_owned());
        for p in parts {
            let (n, v) = match p.find('=') {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            if n.is_empty() || !n.bytes().all(is_token) {
                return Err(UriError);
            }
            uri.params.push((n.to_owned(), v.map(str::to_owned)));
        }
    }
    Ok(uri)
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_str(":")?;
        if let Some(o) = &self.opaque {
            return f.write_str(o);
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u =
            Uri::parse("sip:alice:pw@[2001:db8::10]:5070;transport=tcp;lr?Subject=hi&X=").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert!(u.has_param("lr"));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sip:alice:pw@[2001:db8::10]:5070;transport=tcp;lr?Subject=hi&X="
        );
    }

    #[test]
    fn escapes_and_equivalence() {
        let a = Uri::parse("sip:%75se%72@example.com").unwrap();
        let b = Uri::parse("SIP:user@EXAMPLE.com").unwrap();
        assert!(a.equivalent(&b));
        assert_eq!(a.user_unescaped().unwrap().as_ref(), b"user");
        let n = Uri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(n.user_unescaped().unwrap().as_ref(), b"null-\0-null");
        let c = Uri::parse("sip:user@example.com;transport=tcp").unwrap();
        assert!(!c.equivalent(&b));
        let d = Uri::parse("sip:user@example.com;foo=bar").unwrap();
        assert!(d.equivalent(&b));
    }

    #[test]
    fn odd_but_valid() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(
            t.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let o = Uri::parse("urn:service:sos").unwrap();
        assert_eq!(o.scheme, Scheme::Other("urn".into()));
        assert_eq!(o.to_string(), "urn:service:sos");
        assert!(Uri::parse("soap.beep://192.0.2.103:3002").is_ok());
    }

    #[test]
    fn malformed() {
        for bad in [
            "sip:",
            "sip:user@",
            "sip:user@host:",
            "sip:user@host:99999",
            "sip:user@host;",
            "sip:user@host;a=",
            "sip:us er@host",
            "sip:user@ho st",
            "sip:user@[::1",
            "sip:user@-host",
            "sip:%zz@host",
            "<sip:user@host>",
            "sip:user@host?x",
            "1abc:x",
            "nocolon",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    /// The one-pass host scan agrees with "scan the run, then `parse_host_ref`" on every
    /// string of up to 6 octets over letters, digits, '-', '.' and a terminator.
    #[test]
    fn scan_plain_host_matches_two_pass() {
        let alphabet = b"a1-.;";
        let mut buf = Vec::new();
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                buf.clear();
                for _ in 0..len {
                    buf.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let s = std::str::from_utf8(&buf).unwrap();
                let end = s
                    .bytes()
                    .position(|c| !in_class(c, C_HOST))
                    .unwrap_or(s.len());
                let want = parse_host_ref(&s[..end]).map(|h| (h.to_owned_host(), end));
                let got = scan_plain_host(s, 0).map(|(h, e)| (h.to_owned_host(), e));
                assert_eq!(got, want, "{s:?}");
            }
        }
        let long = format!("{}.b", "a".repeat(253));
        assert!(scan_plain_host(&long, 0).is_some());
        assert!(scan_plain_host(&format!("{long}."), 0).is_none());
        assert!(scan_plain_host(&format!("{long}a"), 0).is_none());
    }
}
