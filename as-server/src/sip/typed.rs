//! Typed views of header values: [`Via`], [`CSeq`], [`NameAddr`] and the scalar headers.
//!
//! Each header grammar of RFC 3261 section 25.1 that the stack relies on has a checker here
//! that runs without allocating (`check_value`, called by the strict parser for every known
//! header) and a typed parser that builds the owned value on demand (`Via::parse`,
//! `NameAddr::parse`...). Values given to these functions are unfolded single list elements,
//! as [`crate::sip::header::Headers`] stores them.

use std::fmt;
use std::net::IpAddr;

use super::header::HeaderName;
use super::lex::{
    all_token, is_token, is_word, is_wsp, parse_u32, scan_generic_params, scan_quoted, skip_ws,
    trim_ws, unquote, Params,
};
use super::message::Method;
use super::uri::{self, parse_port, Host, HostRef, Uri};

/// The RFC 3261 branch magic cookie (section 8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A Via header field value (one via-parm, RFC 3261 section 20.42, RFC 3581 rport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol name and version as written, normally `SIP/2.0`.
    pub protocol: String,
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`... or unknown).
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// via-params in order.
    pub params: Params,
}

struct ViaRef<'a> {
    protocol_name: &'a str,
    version: &'a str,
    transport: &'a str,
    host: HostRef<'a>,
    port: Option<u16>,
    params_at: usize,
}

/// Scans `token SLASH` where SLASH = SWS "/" SWS.
fn scan_token_slash(b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
    let s = skip_ws(b, i);
    let mut e = s;
    while e < b.len() && is_token(b[e]) {
        e += 1;
    }
    if e == s {
        return None;
    }
    let j = skip_ws(b, e);
    if b.get(j) != Some(&b'/') {
        return None;
    }
    Some((s, e, skip_ws(b, j + 1)))
}

fn scan_via(v: &str) -> Option<ViaRef<'_>> {
    let b = v.as_bytes();
    let (ps, pe, i) = scan_token_slash(b, 0)?;
    let (vs, ve, i) = scan_token_slash(b, i)?;
    let ts = i;
    let mut i = i;
    while i < b.len() && is_token(b[i]) {
        i += 1;
    }
    if i == ts {
        return None;
    }
    let te = i;
    // LWS before sent-by is mandatory.
    let j = skip_ws(b, i);
    if j == i {
        return None;
    }
    i = j;
    // sent-by = host [ COLON port ]
    let hs = i;
    let host = if b.get(i) == Some(&b'[') {
        while i < b.len() && b[i] != b']' {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        i += 1;
        uri::parse_host_ref(&v[hs..i])?
    } else {
        let (host, end) = uri::scan_plain_host(v, hs)?;
        i = end;
        host
    };
    let k = skip_ws(b, i);
    let mut port = None;
    if b.get(k) == Some(&b':') {
        let s = skip_ws(b, k + 1);
        let mut e = s;
        while e < b.len() && b[e].is_ascii_digit() {
            e += 1;
        }
        port = Some(parse_port(&v[s..e])?);
        i = e;
    }
    Some(ViaRef {
        protocol_name: &v[ps..pe],
        version: &v[vs..ve],
        transport: &v[ts..te],
        host,
        port,
        params_at: i,
    })
}

/// Checks one via-param (section 25.1 via-ttl, via-maddr, via-received, via-branch, rport).
fn via_param_ok(name: &str, value: Option<&str>) -> bool {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    match value {
        Some(v) if is("ttl") => v.len() <= 3 && v.parse::<u8>().is_ok(),
        Some(v) if is("maddr") => uri::parse_host_ref(v).is_some(),
        Some(v) if is("received") => {
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            v.parse::<IpAddr>().is_ok()
        }
        Some(v) if is("branch") => all_token(v.as_bytes()),
        Some(v) if is("rport") => parse_port(v).is_some(),
        None if is("ttl") || is("maddr") || is("received") || is("branch") => false,
        Some(v) => !v.starts_with('[') || v.ends_with(']'),
        None => true,
    }
}

fn check_via(v: &str) -> bool {
    let Some(r) = scan_via(v) else {
        return false;
    };
    scan_generic_params(v, r.params_at, via_param_ok)
}

impl Via {
    /// Parses one via-parm.
    pub fn parse(v: &str) -> Option<Via> {
        let r = scan_via(v)?;
        let mut params = Params::default();
        let ok = scan_generic_params(v, r.params_at, |n, val| {
            if !via_param_ok(n, val) {
                return false;
            }
            params.0.push((n.to_owned(), val.map(str::to_owned)));
            true
        });
        if !ok {
            return None;
        }
        Some(Via {
            protocol: format!("{}/{}", r.protocol_name, r.version),
            transport: r.transport.to_owned(),
            host: r.host.to_owned_host(),
            port: r.port,
            params,
        })
    }

    /// A new `SIP/2.0/<transport>` Via with a branch (section 8.1.1.7).
    #[must_use]
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::default();
        params.set("branch", Some(branch));
        Via {
            protocol: "SIP/2.0".into(),
            transport: transport.to_owned(),
            host,
            port,
            params,
        }
    }

    /// The `branch` parameter.
    #[must_use]
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch starts with the magic cookie and has something after it, i.e. it
    /// can identify an RFC 3261 transaction (section 17.2.3; RFC 4475 3.2.1 shows a bare
    /// cookie, which does not).
    #[must_use]
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter (section 18.2.1).
    #[must_use]
    pub fn received(&self) -> Option<IpAddr> {
        let v = self.params.get("received").flatten()?;
        let v = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v);
        v.parse().ok()
    }

    /// `rport` (RFC 3581): `None` absent, `Some(None)` asked for, `Some(Some(p))` filled in.
    #[must_use]
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|v| v.parse().ok()))
    }

    /// Sets `received` (section 18.2.1).
    pub fn set_received(&mut self, addr: IpAddr) {
        self.params.set("received", Some(&addr.to_string()));
    }

    /// Fills in `rport` (RFC 3581 section 4).
    pub fn set_rport(&mut self, port: u16) {
        self.params.set("rport", Some(&port.to_string()));
    }

    /// `maddr` parameter.
    #[must_use]
    pub fn maddr(&self) -> Option<&str> {
        self.params.get("maddr").flatten()
    }

    /// Whether the transport is `t` (case-insensitive).
    #[must_use]
    pub fn transport_is(&self, t: &str) -> bool {
        self.transport.eq_ignore_ascii_case(t)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// The CSeq header (section 20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (`1*DIGIT`, below 2**32).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

fn scan_cseq(v: &str) -> Option<(u32, &str)> {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let seq = parse_u32(&v[..i])?;
    let j = skip_ws(b, i);
    if j == i {
        return None;
    }
    let m = &v[j..];
    all_token(m.as_bytes()).then_some((seq, m))
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(v: &str) -> Option<CSeq> {
        let (seq, m) = scan_cseq(v)?;
        Some(CSeq {
            seq,
            method: Method::new(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `name-addr / addr-spec` with header parameters: From, To, Contact, Route, Record-Route,
/// Reply-To... (section 20.10, 20.20, 20.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted (quoted-pairs resolved).
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`...).
    pub params: Params,
}

struct NameAddrRef<'a> {
    /// Raw display name (quoted string with quotes, or tokens).
    display: Option<&'a str>,
    uri: &'a str,
    params_at: usize,
}

/// Scans `[display-name] LAQUOT addr-spec RAQUOT` or `addr-spec` (when `allow_addr_spec`).
fn scan_name_addr(v: &str, allow_addr_spec: bool) -> Option<NameAddrRef<'_>> {
    let b = v.as_bytes();
    let mut i = skip_ws(b, 0);
    let mut display = None;
    if b.get(i) == Some(&b'"') {
        let e = scan_quoted(b, i)?;
        display = Some(&v[i..e]);
        i = skip_ws(b, e);
        if b.get(i) != Some(&b'<') {
            return None;
        }
    } else if b.get(i) != Some(&b'<') {
        // *(token LWS) followed by '<', or an addr-spec.
        let lt = b[i..].iter().position(|&c| c == b'<').map(|p| p + i);
        match lt {
            Some(lt) if b[i..lt].iter().all(|&c| is_token(c) || is_wsp(c)) => {
                let d = trim_ws(&v[i..lt]);
                if !d.is_empty() {
                    display = Some(d);
                }
                i = lt;
            }
            _ => {
                if !allow_addr_spec {
                    return None;
                }
                // addr-spec: the URI cannot hold ';', ',' or '?' here (section 20.10), so it
                // ends at the first ';' or WSP.
                let s = i;
                while i < b.len() && b[i] != b';' && !is_wsp(b[i]) {
                    if b[i] == b'?' || b[i] == b',' || b[i] == b'<' || b[i] == b'>' || b[i] == b'"'
                    {
                        return None;
                    }
                    i += 1;
                }
                return Some(NameAddrRef {
                    display: None,
                    uri: &v[s..i],
                    params_at: i,
                });
            }
        }
    }
    // at '<'
    let s = i + 1;
    let e = b[s..].iter().position(|&c| c == b'>')? + s;
    Some(NameAddrRef {
        display,
        uri: &v[s..e],
        params_at: e + 1,
    })
}

fn check_name_addr(
    v: &str,
    allow_addr_spec: bool,
    param_ok: fn(&str, Option<&str>) -> bool,
) -> bool {
    let Some(r) = scan_name_addr(v, allow_addr_spec) else {
        return false;
    };
    if uri::validate(r.uri).is_err() {
        return false;
    }
    scan_generic_params(v, r.params_at, param_ok)
}

fn any_param(_: &str, _: Option<&str>) -> bool {
    true
}

fn from_to_param_ok(n: &str, v: Option<&str>) -> bool {
    if n.eq_ignore_ascii_case("tag") {
        return v.is_some_and(|v| all_token(v.as_bytes()));
    }
    true
}

fn contact_param_ok(n: &str, v: Option<&str>) -> bool {
    if n.eq_ignore_ascii_case("q") {
        return v.is_some_and(valid_qvalue);
    }
    if n.eq_ignore_ascii_case("expires") {
        // delta-seconds; overlarge values are read as the maximum (section 20.19 and RFC 4475
        // 3.1.2.4 let an element treat them as a default), so only the digits are checked.
        return v.is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    }
    true
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn valid_qvalue(v: &str) -> bool {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || (int == "1" && frac.bytes().all(|b| b == b'0')))
}

impl NameAddr {
    /// Parses `(name-addr / addr-spec) *(SEMI generic-param)`.
    pub fn parse(v: &str) -> Option<NameAddr> {
        let r = scan_name_addr(v, true)?;
        let uri = Uri::parse(r.uri).ok()?;
        let mut params = Params::default();
        let ok = scan_generic_params(v, r.params_at, |n, val| {
            params.0.push((n.to_owned(), val.map(str::to_owned)));
            true
        });
        if !ok {
            return None;
        }
        let display = r.display.map(|d| {
            if d.starts_with('"') {
                unquote(&d[1..d.len() - 1])
            } else {
                d.to_owned()
            }
        });
        Some(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// A name-addr with only a URI.
    #[must_use]
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    /// The `tag` parameter (section 19.3).
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    /// The `expires` parameter of a Contact, saturated to u32 (section 10.2.1.1).
    #[must_use]
    pub fn expires(&self) -> Option<u32> {
        self.params.get("expires").flatten().map(saturating_delta)
    }

    /// The `q` parameter of a Contact.
    #[must_use]
    pub fn q(&self) -> Option<&str> {
        self.params.get("q").flatten()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// Reads delta-seconds, saturating at u32::MAX (RFC 3261 section 20.19 / 20.33).
#[must_use]
pub fn saturating_delta(v: &str) -> u32 {
    parse_u32(v).unwrap_or(u32::MAX)
}

/// `callid = word [ "@" word ]`.
fn check_call_id(v: &str) -> bool {
    let b = v.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut seen_at = false;
    let mut last_at = true;
    for &c in b {
        if c == b'@' {
            if seen_at || last_at {
                return false;
            }
            seen_at = true;
            last_at = true;
        } else if is_word(c) {
            last_at = false;
        } else {
            return false;
        }
    }
    !last_at
}

/// `m-type SLASH m-subtype *(SEMI m-parameter)` (section 20.15; also Accept's media-range,
/// whose `*` is a token character).
fn check_media_type(v: &str) -> bool {
    let b = v.as_bytes();
    let Some((_, _, i)) = scan_token_slash(b, 0) else {
        return false;
    };
    let mut j = i;
    while j < b.len() && is_token(b[j]) {
        j += 1;
    }
    j > i && scan_generic_params(v, j, |_, _| true)
}

/// `token *(SEMI generic-param)` (Event, Subscription-State, Content-Disposition...).
fn check_token_params(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && is_token(b[i]) {
        i += 1;
    }
    i > 0 && scan_generic_params(v, i, any_param)
}

const WKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `rfc1123-date = wkday "," SP date1 SP time SP "GMT"` (section 20.17; RFC 4475 3.1.2.12).
fn check_date(v: &str) -> bool {
    let p: Vec<&str> = v.split(' ').collect();
    if p.len() != 6 {
        return false;
    }
    let two = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    let Some(wk) = p[0].strip_suffix(',') else {
        return false;
    };
    let time: Vec<&str> = p[4].split(':').collect();
    WKDAYS.contains(&wk)
        && two(p[1])
        && MONTHS.contains(&p[2])
        && p[3].len() == 4
        && p[3].bytes().all(|b| b.is_ascii_digit())
        && time.len() == 3
        && time.iter().all(|t| two(t))
        && p[5] == "GMT"
}

/// `warn-code SP warn-agent SP warn-text` (section 20.43).
fn check_warning(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 5 || !b[..3].iter().all(u8::is_ascii_digit) || b[3] != b' ' {
        return false;
    }
    let rest = &v[4..];
    let Some(sp) = rest.find(' ') else {
        return false;
    };
    let agent = &rest[..sp];
    let text = &rest[sp + 1..];
    !agent.is_empty()
        && agent
            .bytes()
            .all(|c| is_token(c) || matches!(c, b':' | b'[' | b']'))
        && text.starts_with('"')
        && scan_quoted(text.as_bytes(), 0) == Some(text.len())
}

/// `delta-seconds [ comment ] *( SEMI retry-param )` (section 20.33).
fn check_retry_after(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if parse_u32(&v[..i]).is_none() {
        return false;
    }
    let mut j = skip_ws(b, i);
    if b.get(j) == Some(&b'(') {
        let mut depth = 0usize;
        while j < b.len() {
            match b[j] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b'\\' => j += 1,
                _ => {}
            }
            j += 1;
        }
        if j >= b.len() {
            return false;
        }
        j += 1;
    }
    scan_generic_params(v, j, |n, val| {
        !n.eq_ignore_ascii_case("duration") || val.is_some_and(|d| parse_u32(d).is_some())
    })
}

/// Checks a (single, unfolded, trimmed) value of a known header against its grammar without
/// allocating. Unknown headers are only checked by the line parser (UTF-8, no control chars).
pub(crate) fn check_value(name: &HeaderName, v: &str) -> bool {
    use super::header::Std;
    let Some(id) = name.std() else {
        return true;
    };
    match id {
        Std::Via => check_via(v),
        Std::From | Std::To => check_name_addr(v, true, from_to_param_ok),
        Std::Contact => v == "*" || check_name_addr(v, true, contact_param_ok),
        Std::Route | Std::RecordRoute | Std::Path | Std::ServiceRoute => {
            check_name_addr(v, false, any_param)
        }
        Std::ReplyTo | Std::ReferTo | Std::PAssertedIdentity => check_name_addr(v, true, any_param),
        Std::CallId => check_call_id(v),
        Std::Cseq => scan_cseq(v).is_some(),
        Std::MaxForwards => parse_u32(v).is_some_and(|x| x <= 255),
        Std::ContentLength | Std::Expires | Std::MinExpires => {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
        }
        Std::ContentType => check_media_type(v),
        Std::Accept => v.is_empty() || check_media_type(v),
        Std::Date => check_date(v),
        Std::Warning => check_warning(v),
        Std::RetryAfter => check_retry_after(v),
        Std::Require | Std::ProxyRequire | Std::Unsupported => all_token(v.as_bytes()),
        Std::Supported | Std::Allow | Std::AllowEvents => v.is_empty() || all_token(v.as_bytes()),
        Std::Event | Std::SubscriptionState | Std::ContentDisposition => check_token_params(v),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.protocol, "SIP/2.0");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse("SIP/2.0/TCP [2001:db8::10]:5070 ; branch = z9hG4bKx ;rport").unwrap();
        assert_eq!(v.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert!(v.has_rfc3261_branch());
        let mut v = v;
        v.set_received("2001:db8::99".parse().unwrap());
        v.set_rport(5999);
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TCP [2001:db8::10]:5070;branch=z9hG4bKx;rport=5999;received=2001:db8::99"
        );
        let again = Via::parse(&v.to_string()).unwrap();
        assert_eq!(again.received(), Some("2001:db8::99".parse().unwrap()));
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP",
            "SIP/2.0/UDPhost",
            "SIP/2.0 host",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;received=foo",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP ho st",
        ] {
            assert!(Via::parse(bad).is_none(), "{bad}");
            assert!(!check_via(bad), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(n.uri.params.is_empty());
        assert!(n.params.contains("unknownparam"));
        let n = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(n.uri.has_param("unknownparam"));
        assert!(n.params.0.is_empty());
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "< sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            r#""Joe" <sip:joe@example.org>;;;;"#,
            "<sip:a@b",
        ] {
            assert!(
                !check_name_addr(bad, true, contact_param_ok),
                "{bad} should be refused"
            );
        }
        let round = NameAddr::parse(r#""a \"b\"" <sip:x@y>;tag=1"#).unwrap();
        assert_eq!(NameAddr::parse(&round.to_string()).unwrap(), round);
    }

    #[test]
    fn scalars_and_misc() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse("1INVITE").is_none());
        assert!(check_call_id(
            "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
        ));
        assert!(!check_call_id("a@b@c"));
        assert!(!check_call_id("a b"));
        assert!(check_date("Sat, 15 Oct 2005 04:44:56 GMT"));
        assert!(!check_date("Fri, 01 Jan 2010 16:00:00 EST"));
        assert!(check_warning("399 as.example.com \"Incompatible media\""));
        assert!(!check_warning("1812 overture \"In Progress\""));
        assert!(check_retry_after("18000;duration=3600"));
        assert!(check_retry_after("120 (I'm in a meeting)"));
        assert!(!check_retry_after("949302838503028349304023988"));
        assert!(valid_qvalue("0.33") && valid_qvalue("1.000") && !valid_qvalue("1.5"));
        assert!(check_value(&HeaderName::MAX_FORWARDS, "0068"));
        assert!(!check_value(&HeaderName::MAX_FORWARDS, "300"));
        assert!(check_value(
            &HeaderName::CONTENT_TYPE,
            "multipart/mixed;boundary=7a9c"
        ));
        assert!(!check_value(&HeaderName::CONTENT_TYPE, "application"));
    }
}
