//! The strict message parser (RFC 3261 section 7 and 25).
//!
//! One pass over the input: skip leading CRLFs (section 7.5), find the end of the header
//! section, check it is UTF-8, parse the start line, then each header line (unfolding
//! continuation lines, mapping compact names, splitting list headers at top-level commas) and
//! check the value of every header the stack knows against its grammar
//! (`typed::check_value`) without building it. The header section is copied
//! once into the [`Headers`] buffer; values are ranges into it. The body is a byte-exact slice
//! (zero-copy when the input is [`Bytes`]).
//!
//! Content-Length follows section 18.3: on a datagram a longer body is truncated, a shorter one
//! is an error, a missing header means "the rest of the datagram"; on a stream it is required.
//! After parsing, the message has exactly one Content-Length equal to the body length, so
//! encode/re-parse is stable.
//!
//! Errors found after the request line do not stop the scan: the rest of the headers is still
//! read so that [`ParseError::error_response`] can answer with a 400 that copies Via, From, To,
//! Call-ID and CSeq.

use bytes::Bytes;

use super::error::{ErrorKind, ParseError};
use super::header::{HeaderName, Headers, Std};
use super::lex::{has_ctl, is_token, split_commas, split_token_list};
use super::message::{Message, Method, Request, Response, StatusCode};
use super::typed::check_value;
use super::uri::{Host, Uri};

/// Size and count limits that keep hostile input from allocating without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line plus header section, bytes.
    pub max_head: usize,
    /// Header fields (list elements count one each).
    pub max_headers: usize,
    /// Body bytes.
    pub max_body: usize,
}

/// The limits the codec applies.
pub const LIMITS: Limits = Limits {
    max_head: 32 * 1024,
    max_headers: 512,
    max_body: 1024 * 1024,
};

/// Where the head ends: `(start, head_end, body_start)`; `head_end` points at the CRLF that
/// ends the last header line (so `head = data[start..head_end + 2]`).
pub(crate) fn find_head(data: &[u8]) -> Result<Option<(usize, usize, usize)>, ParseError> {
    let mut start = 0;
    while data.len() >= start + 2 && &data[start..start + 2] == b"\r\n" {
        start += 2;
    }
    let search = &data[start..data.len().min(start + LIMITS.max_head + 4)];
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    let finder = FINDER.get_or_init(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    match finder.find(search) {
        Some(p) => Ok(Some((start, start + p, start + p + 4))),
        None => {
            if search.len() >= LIMITS.max_head + 4 {
                Err(ErrorKind::TooLarge.into())
            } else {
                Ok(None)
            }
        }
    }
}

/// The value of the (first) Content-Length header in a head, if any; used by stream framing.
/// `Err` when it is malformed or there are several.
pub(crate) fn scan_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    let mut lines = head.split(|&b| b == b'\n').skip(1);
    let mut pending: Option<Vec<u8>> = None;
    let finish = |v: &[u8], found: &mut Option<usize>| -> Result<(), ParseError> {
        let v: Vec<u8> = v
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .collect();
        if found.is_some() {
            return Err(ErrorKind::DuplicateHeader(HeaderName::CONTENT_LENGTH).into());
        }
        if v.is_empty() || v.len() > 12 || !v.iter().all(u8::is_ascii_digit) {
            return Err(ErrorKind::BadHeader(HeaderName::CONTENT_LENGTH).into());
        }
        let n: usize = std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ErrorKind::BadHeader(HeaderName::CONTENT_LENGTH))?;
        *found = Some(n);
        Ok(())
    };
    for line in &mut lines {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some(p) = pending.as_mut() {
                p.extend_from_slice(line);
            }
            continue;
        }
        if let Some(p) = pending.take() {
            finish(&p, &mut found)?;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim_bytes(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            pending = Some(line[colon + 1..].to_vec());
        }
    }
    if let Some(p) = pending.take() {
        finish(&p, &mut found)?;
    }
    Ok(found)
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(s, |p| p + 1);
    &b[s..e]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Datagram,
    Stream,
}

pub(crate) fn parse_datagram(data: &[u8], shared: Option<&Bytes>) -> Result<Message, ParseError> {
    parse_inner(data, shared, Transport::Datagram)
}

pub(crate) fn parse_stream(data: &[u8]) -> Result<Message, ParseError> {
    parse_inner(data, None, Transport::Stream)
}

enum StartLine {
    Request(Method, Uri),
    Response(StatusCode, String),
}

fn placeholder_uri() -> Uri {
    Uri::sip(None, Host::Domain("invalid".into()))
}

/// A request-line error and, when the line looks like a request at all, a best-effort method
/// and URI for the partial request.
type RequestLineError = Box<(ErrorKind, Option<(Method, Uri)>)>;

/// Parses the request line (section 7.1).
fn parse_request_line(line: &str) -> Result<(Method, Uri), RequestLineError> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && is_token(b[i]) {
        i += 1;
    }
    let guess_method = |i: usize| -> Option<Method> {
        let m = &line[..i];
        (!m.is_empty()).then(|| Method::new(m))
    };
    if i == 0 || i == b.len() || b[i] != b' ' {
        let kind = if i == 0 || b.get(i).is_some_and(|&c| c != b' ') {
            ErrorKind::BadMethod
        } else {
            ErrorKind::BadRequestLine
        };
        return Err(Box::new((
            kind,
            guess_method(i).map(|m| (m, placeholder_uri())),
        )));
    }
    let method = Method::new(&line[..i]);
    let rest = &line[i + 1..];
    let Some(sp) = memchr::memchr(b' ', rest.as_bytes()) else {
        return Err(Box::new((
            ErrorKind::BadRequestLine,
            Some((method, placeholder_uri())),
        )));
    };
    let uri_text = &rest[..sp];
    let version = &rest[sp + 1..];
    let uri = match Uri::parse(uri_text) {
        Ok(u) => u,
        Err(_) => {
            return Err(Box::new((
                ErrorKind::BadRequestUri,
                Some((method, placeholder_uri())),
            )));
        }
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let kind = if is_sip_version(version) {
            ErrorKind::VersionNotSupported
        } else {
            ErrorKind::BadRequestLine
        };
        return Err(Box::new((kind, Some((method, uri)))));
    }
    if !uri.headers.is_empty() {
        return Err(Box::new((
            ErrorKind::RequestUriHeaders,
            Some((method, uri)),
        )));
    }
    Ok((method, uri))
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`.
fn is_sip_version(v: &str) -> bool {
    let Some(rest) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &v[4..])
    else {
        return false;
    };
    match rest.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn parse_status_line(line: &str) -> Result<(StatusCode, String), ErrorKind> {
    let rest = &line[4..];
    let Some(sp) = memchr::memchr(b' ', rest.as_bytes()) else {
        return Err(ErrorKind::BadStatusLine);
    };
    let version = &line[..4 + sp];
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(if is_sip_version(version) {
            ErrorKind::VersionNotSupported
        } else {
            ErrorKind::BadStatusLine
        });
    }
    let rest = &rest[sp + 1..];
    let b = rest.as_bytes();
    if b.len() < 4 || b[3] != b' ' {
        // "SIP/2.0 4294967301 x" is a bad code; "SIP/2.0 200" a bad line
        return Err(if b.len() > 3 {
            ErrorKind::BadStatusCode
        } else {
            ErrorKind::BadStatusLine
        });
    }
    if !b[..3].iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::BadStatusCode);
    }
    let code: u16 = rest[..3].parse().map_err(|_| ErrorKind::BadStatusCode)?;
    if !(100..=699).contains(&code) {
        return Err(ErrorKind::BadStatusCode);
    }
    let reason = &rest[4..];
    if !valid_reason(reason.as_bytes()) {
        return Err(ErrorKind::BadReason);
    }
    Ok((StatusCode(code), reason.to_owned()))
}

/// `Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)`.
fn valid_reason(b: &[u8]) -> bool {
    use super::lex::{is_unreserved, is_wsp};
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = is_unreserved(c)
            || is_wsp(c)
            || c >= 0x80
            || matches!(
                c,
                b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
            );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a header value holds a control character the grammar forbids: CTLs other than HT
/// are only legal as the second octet of a quoted-pair.
fn has_bad_ctl(v: &[u8], folded: bool) -> bool {
    let mut prev_backslash = false;
    for &c in v {
        if folded && (c == b'\r' || c == b'\n') {
            prev_backslash = false;
            continue;
        }
        if (c < 0x20 && c != b'\t') || c == 0x7f {
            if !prev_backslash {
                return true;
            }
            prev_backslash = false;
            continue;
        }
        prev_backslash = c == b'\\' && !prev_backslash;
    }
    false
}

fn parse_inner(
    data: &[u8],
    shared: Option<&Bytes>,
    transport: Transport,
) -> Result<Message, ParseError> {
    let (start, head_end, body_start) = match find_head(data)? {
        Some(h) => h,
        // A datagram is complete by definition: one whose last header line ends in CRLF but
        // lacks the empty line is read as having no body (lenient on a missing final CRLF).
        None if transport == Transport::Datagram
            && data.ends_with(b"\r\n")
            && data.len() <= LIMITS.max_head =>
        {
            (0, data.len() - 2, data.len())
        }
        None => {
            if data.len() > LIMITS.max_head {
                return Err(ErrorKind::TooLarge.into());
            }
            return Err(ErrorKind::Truncated.into());
        }
    };
    let head = std::str::from_utf8(&data[start..head_end + 2])
        .map_err(|_| ParseError::new(ErrorKind::NotUtf8))?;
    // The start line ends at the first CRLF; a bare CR or LF in it is malformed.
    let hb = head.as_bytes();
    let first_end = memchr::memchr2(b'\r', b'\n', hb).unwrap_or(hb.len());
    if hb.get(first_end) == Some(&b'\n') || hb.get(first_end + 1).is_some_and(|&c| c != b'\n') {
        return Err(ErrorKind::BadRequestLine.into());
    }
    let first = &head[..first_end];

    let mut first_err: Option<ErrorKind> = None;
    let start_line = if first.len() >= 4 && first.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        match parse_status_line(first) {
            Ok((s, r)) => StartLine::Response(s, r),
            Err(k) => return Err(k.into()),
        }
    } else {
        match parse_request_line(first) {
            Ok((m, u)) => StartLine::Request(m, u),
            Err(e) => match *e {
                (k, Some((m, u))) => {
                    first_err = Some(k);
                    StartLine::Request(m, u)
                }
                (k, None) => return Err(k.into()),
            },
        }
    };

    // Header section (each line ends with CRLF).
    let section = &head[(first_end + 2).min(head.len())..];
    let mut buf = String::with_capacity(section.len() + 16);
    buf.push_str(section);
    let mut headers = Headers::with_buffer(buf, 24);
    let sb = section.as_bytes();
    let mut pos = 0;
    let mut folded_tmp = String::new();
    // Bookkeeping for the message-level rules, kept while the entries are pushed: how many of
    // each known header, the first single-valued one seen twice, the first CSeq and
    // Content-Length values.
    let mut seen = [0u8; 64];
    let mut duplicate: Option<Std> = None;
    let mut cseq_at: Option<(usize, usize)> = None;
    let mut cl_at: Option<(usize, usize)> = None;
    let mut note = |id: Std, vs: usize, ve: usize| {
        let c = &mut seen[id as usize];
        *c = c.saturating_add(1);
        if *c > 1 && id.is_single() && duplicate.is_none() {
            duplicate = Some(id);
        }
        if *c == 1 {
            match id {
                Std::Cseq => cseq_at = Some((vs, ve)),
                Std::ContentLength => cl_at = Some((vs, ve)),
                _ => {}
            }
        }
    };
    while pos < sb.len() {
        // Logical line: this physical line plus continuation lines starting with WSP.
        let line_start = pos;
        let mut folded = false;
        let mut line_end;
        // Fast path: the first control octet of the line is the CR of its CRLF and the next
        // line is not a continuation, so the line is one physical line without CTLs.
        let k = find_ctl(sb, pos);
        let simple = k + 1 < sb.len()
            && sb[k] == b'\r'
            && sb[k + 1] == b'\n'
            && sb.get(k + 2).is_none_or(|&c| c != b' ' && c != b'\t');
        if simple {
            line_end = k;
            pos = k + 2;
        } else {
            loop {
                let Some(nl) = memchr::memchr2(b'\r', b'\n', &sb[pos..]) else {
                    // unreachable for a head that ends in CRLF; treat as malformed
                    first_err.get_or_insert(ErrorKind::BadHeaderLine);
                    line_end = sb.len();
                    pos = sb.len();
                    break;
                };
                let cr = pos + nl;
                // a line ends with CRLF; a bare CR or LF is malformed
                if sb[cr] != b'\r' || sb.get(cr + 1) != Some(&b'\n') {
                    first_err.get_or_insert(ErrorKind::BadHeaderLine);
                }
                let nl = if sb[cr] == b'\r' && sb.get(cr + 1) == Some(&b'\n') {
                    cr + 1
                } else {
                    cr
                };
                line_end = cr;
                pos = nl + 1;
                if pos < sb.len() && (sb[pos] == b' ' || sb[pos] == b'\t') {
                    folded = true;
                    continue;
                }
                break;
            }
        }
        let line = &section[line_start..line_end.max(line_start)];
        let lb = line.as_bytes();
        if line_start == 0 && lb.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            // a continuation line with nothing to continue
            first_err.get_or_insert(ErrorKind::BadHeaderLine);
            continue;
        }
        // name HCOLON value
        let mut i = 0;
        while i < lb.len() && is_token(lb[i]) {
            i += 1;
        }
        let name_end = i;
        while i < lb.len() && (lb[i] == b' ' || lb[i] == b'\t') {
            i += 1;
        }
        if name_end == 0 || i >= lb.len() || lb[i] != b':' {
            first_err.get_or_insert(ErrorKind::BadHeaderLine);
            continue;
        }
        let id = Std::lookup(&lb[..name_end]);
        let name = match id {
            Some(id) => HeaderName::from_std(id),
            None => HeaderName::new(&line[..name_end]),
        };
        let raw_value = &lb[i + 1..];
        if !simple && (folded || has_ctl(raw_value)) && has_bad_ctl(raw_value, folded) {
            first_err.get_or_insert(ErrorKind::BadHeader(name.clone()));
            continue;
        }
        // value range in the buffer
        let (vs, ve) = if folded {
            folded_tmp.clear();
            unfold(&line[i + 1..], &mut folded_tmp);
            let b = headers.buf_mut();
            let s = b.len();
            b.push_str(folded_tmp.trim_matches(|c| c == ' ' || c == '\t'));
            (s, b.len())
        } else {
            let (a, b) = trim_wsp(raw_value);
            let off = line_start + i + 1;
            (off + a, off + b)
        };
        if let Some(list_id) = id.filter(|id| id.is_list()) {
            let mut elems = smallvec_lite::Elems::new();
            let ok = {
                let value = headers.value_at_range(vs, ve);
                if value.is_empty() {
                    elems.push((0, 0));
                    check_value(&name, "")
                } else if matches!(
                    list_id,
                    Std::Allow
                        | Std::Supported
                        | Std::AllowEvents
                        | Std::Require
                        | Std::ProxyRequire
                        | Std::Unsupported
                ) {
                    // `#token` lists: `check_value` is "a non-empty token" for each element
                    split_token_list(value.as_bytes(), |a, b| elems.push((a, b)))
                } else {
                    split_commas(value, |a, b| elems.push((a, b))).is_some()
                        && elems
                            .iter()
                            .all(|&(a, b)| a != b && check_value(&name, &value[a..b]))
                }
            };
            if !ok {
                // kept whole in the partial request: a 400 copies what was received
                first_err.get_or_insert(ErrorKind::BadHeader(name.clone()));
                headers.push_range(name, vs, ve);
                note(list_id, vs, ve);
                continue;
            }
            for &(a, b) in elems.iter() {
                headers.push_range(name.clone(), vs + a, vs + b);
                note(list_id, vs + a, vs + b);
            }
        } else {
            if !check_value(&name, headers.value_at_range(vs, ve)) {
                // kept in the partial request: a 400 copies what was received
                first_err.get_or_insert(ErrorKind::BadHeader(name.clone()));
            }
            headers.push_range(name, vs, ve);
            if let Some(id) = id {
                note(id, vs, ve);
            }
        }
        if headers.len() > LIMITS.max_headers {
            return Err(ErrorKind::TooManyHeaders.into());
        }
    }

    // Message-level rules.
    if first_err.is_none() {
        // single-valued headers appearing twice (RFC 4475 3.3.8, 3.3.9); required ones absent
        if let Some(id) = duplicate {
            first_err = Some(ErrorKind::DuplicateHeader(HeaderName::from_std(id)));
        } else if let Some(id) = [Std::Via, Std::From, Std::To, Std::CallId, Std::Cseq]
            .into_iter()
            .find(|&id| seen[id as usize] == 0)
        {
            first_err = Some(ErrorKind::MissingHeader(HeaderName::from_std(id)));
        }
    }
    if first_err.is_none() {
        if let StartLine::Request(m, _) = &start_line {
            let cseq_method = cseq_at
                .map(|(a, b)| headers.value_at_range(a, b))
                .and_then(|v| v.rsplit([' ', '\t']).next());
            if cseq_method != Some(m.as_str()) {
                first_err = Some(ErrorKind::CSeqMethodMismatch);
            }
        }
    }

    // Body (section 18.3).
    let available = data.len() - body_start.min(data.len());
    let cl = match cl_at.map(|(a, b)| headers.value_at_range(a, b)) {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                first_err.get_or_insert(ErrorKind::BadHeader(HeaderName::CONTENT_LENGTH));
                None
            }
        },
    };
    let body_len = match (cl, transport) {
        (Some(n), _) if n > LIMITS.max_body => {
            first_err.get_or_insert(ErrorKind::TooLarge);
            0
        }
        (Some(n), _) if n > available => {
            first_err.get_or_insert(ErrorKind::BodyTooShort);
            0
        }
        (Some(n), _) => n,
        (None, Transport::Datagram) => available.min(LIMITS.max_body),
        (None, Transport::Stream) => {
            first_err.get_or_insert(ErrorKind::MissingContentLength);
            0
        }
    };

    if let Some(kind) = first_err {
        return Err(match start_line {
            StartLine::Request(method, uri) => ParseError::new(kind).with_partial(Request {
                method,
                uri,
                headers,
                body: Bytes::new(),
            }),
            StartLine::Response(..) => ParseError::new(kind),
        });
    }

    let body = match shared {
        Some(b) => b.slice(body_start..body_start + body_len),
        None => Bytes::copy_from_slice(&data[body_start..body_start + body_len]),
    };
    // Exactly one Content-Length, equal to the body length: the one received is kept when
    // it is the only one and already canonical (no leading zeros).
    let canonical = cl_at.is_some_and(|(a, b)| {
        seen[Std::ContentLength as usize] == 1 && (b - a == 1 || sb_at(&headers, a) != b'0')
    });
    if !canonical {
        let mut itoa = [0u8; 20];
        headers.set(HeaderName::CONTENT_LENGTH, fmt_usize(body_len, &mut itoa));
    }

    Ok(match start_line {
        StartLine::Request(method, uri) => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response(status, reason) => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

/// The first octet of the value stored at `at`.
fn sb_at(headers: &Headers, at: usize) -> u8 {
    headers.value_at_range(at, at + 1).as_bytes()[0]
}

/// `(start, end)` of `v` without leading and trailing WSP.
fn trim_wsp(v: &[u8]) -> (usize, usize) {
    let mut a = 0;
    let mut b = v.len();
    while a < b && (v[a] == b' ' || v[a] == b'\t') {
        a += 1;
    }
    while b > a && (v[b - 1] == b' ' || v[b - 1] == b'\t') {
        b -= 1;
    }
    (a, b)
}

/// Index of the first control octet (CTL other than HT, or DEL; CR and LF included) in
/// `b[i..]`, or `b.len()`. Eight octets at a time: header lines are mostly printable. The
/// SWAR test flags octets whose low seven bits plus one (mod 128) are below 0x21: every CTL
/// and DEL, and also HT, 0x80-0x9f and 0xff, so the lowest flagged octet (exact, as borrows
/// only run upwards) is checked and the scan goes on after it when it is not a control.
#[inline]
fn find_ctl(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let x = u64::from_le_bytes(w);
        // per octet: z = (c + 1) & 0x7f, no carry between octets (each sum is at most 0x80)
        let z = ((x & LOW7) + LO) & LOW7;
        let m = z.wrapping_sub(0x21 * LO) & HI;
        if m == 0 {
            i += 8;
            continue;
        }
        let j = i + (m.trailing_zeros() / 8) as usize;
        let c = b[j];
        if (c < 0x20 && c != b'\t') || c == 0x7f {
            return j;
        }
        i = j + 1;
    }
    while i < b.len() {
        let c = b[i];
        if (c < 0x20 && c != b'\t') || c == 0x7f {
            return i;
        }
        i += 1;
    }
    b.len()
}

fn fmt_usize(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Replaces every fold (`*WSP CRLF 1*WSP`) by one SP (section 7.3.1).
fn unfold(v: &str, out: &mut String) {
    let mut rest = v;
    while let Some(p) = rest.find("\r\n") {
        out.push_str(rest[..p].trim_end_matches([' ', '\t']));
        out.push(' ');
        rest = rest[p + 2..].trim_start_matches([' ', '\t']);
    }
    out.push_str(rest);
}

mod smallvec_lite {
    /// A small list of ranges kept on the stack for the common case.
    pub(super) struct Elems {
        inline: [(usize, usize); 8],
        n: usize,
        spill: Vec<(usize, usize)>,
    }
    impl Elems {
        pub(super) fn new() -> Self {
            Elems {
                inline: [(0, 0); 8],
                n: 0,
                spill: Vec::new(),
            }
        }
        pub(super) fn push(&mut self, r: (usize, usize)) {
            if self.n < 8 {
                self.inline[self.n] = r;
                self.n += 1;
            } else {
                self.spill.push(r);
            }
        }
        pub(super) fn iter(&self) -> impl Iterator<Item = &(usize, usize)> {
            self.inline[..self.n].iter().chain(self.spill.iter())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    const HEAD: &str = "INVITE sip:news@tv.example.org SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK0\r\nf: <sip:a@b.example.com>;tag=1\r\nt: <sip:news@tv.example.org>\r\ni: c1@h\r\nCSeq: 1 INVITE\r\nm: <sip:a@192.0.2.1>\r\nX-Custom: kept as written\r\n";

    fn with_body(cl: Option<&str>, body: &str) -> Vec<u8> {
        let mut s = HEAD.to_owned();
        if let Some(cl) = cl {
            s.push_str(&format!("l: {cl}\r\n"));
        }
        s.push_str("\r\n");
        s.push_str(body);
        s.into_bytes()
    }

    #[test]
    fn udp_content_length_rules() {
        // longer body: truncated to Content-Length (RFC 3261 18.3)
        let m = Message::parse(&with_body(Some("3"), "abcdef")).unwrap();
        assert_eq!(&m.body()[..], b"abc");
        // shorter body: refused
        let e = Message::parse(&with_body(Some("10"), "abc")).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::BodyTooShort);
        assert!(e.error_response().is_some());
        // missing: the rest of the datagram, and the header is added
        let m = Message::parse(&with_body(None, "abcdef")).unwrap();
        assert_eq!(&m.body()[..], b"abcdef");
        assert_eq!(m.headers().get(&HeaderName::CONTENT_LENGTH), Some("6"));
        // leading zeros are normalised
        let m = Message::parse(&with_body(Some("0003"), "abc")).unwrap();
        assert_eq!(m.headers().get(&HeaderName::CONTENT_LENGTH), Some("3"));
    }

    #[test]
    fn stream_requires_content_length() {
        let e = Message::parse_stream(&with_body(None, "")).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::MissingContentLength);
        assert!(Message::parse_stream(&with_body(Some("2"), "ab")).is_ok());
    }

    #[test]
    fn compact_forms_lists_and_canonical_encoding() {
        let m = Message::parse(&with_body(Some("0"), "")).unwrap();
        let r = m.as_request().unwrap();
        assert_eq!(r.headers.count(&HeaderName::VIA), 2);
        assert_eq!(r.vias().unwrap()[1].port, Some(5070));
        assert_eq!(r.call_id().unwrap(), "c1@h");
        let enc = String::from_utf8(m.to_bytes()).unwrap();
        assert_eq!(
            enc,
            "INVITE sip:news@tv.example.org SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK0\r\n\
             From: <sip:a@b.example.com>;tag=1\r\n\
             To: <sip:news@tv.example.org>\r\n\
             Call-ID: c1@h\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:a@192.0.2.1>\r\n\
             X-Custom: kept as written\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(Message::parse(enc.as_bytes()).unwrap(), m);
    }

    #[test]
    fn leading_crlf_and_bare_line_ends() {
        let mut d = b"\r\n\r\n".to_vec();
        d.extend_from_slice(&with_body(Some("0"), ""));
        assert!(Message::parse(&d).is_ok());
        let bare_lf = String::from_utf8(with_body(Some("0"), ""))
            .unwrap()
            .replace("X-Custom: kept as written\r\n", "X-Custom: a\nX-B: b\r\n");
        assert_eq!(
            Message::parse(bare_lf.as_bytes()).unwrap_err().kind(),
            &ErrorKind::BadHeaderLine
        );
        let bare_cr = String::from_utf8(with_body(Some("0"), ""))
            .unwrap()
            .replace("kept as", "kept\ras");
        assert!(Message::parse(bare_cr.as_bytes()).is_err());
        let ctl = String::from_utf8(with_body(Some("0"), ""))
            .unwrap()
            .replace("kept as", "kept\u{1}as");
        assert!(Message::parse(ctl.as_bytes()).is_err());
    }

    #[test]
    fn limits_bound_hostile_input() {
        let mut many = HEAD.to_owned();
        for i in 0..LIMITS.max_headers {
            many.push_str(&format!("X-{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            Message::parse(many.as_bytes()).unwrap_err().kind(),
            &ErrorKind::TooManyHeaders
        );
        let mut big = HEAD.to_owned();
        big.push_str(&format!("X-Big: {}\r\n\r\n", "a".repeat(LIMITS.max_head)));
        assert_eq!(
            Message::parse(big.as_bytes()).unwrap_err().kind(),
            &ErrorKind::TooLarge
        );
        let e = Message::parse(&with_body(Some("99999999999999999999"), "")).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::BadHeader(HeaderName::CONTENT_LENGTH));
        let e = Message::parse(&with_body(Some("2000000"), "")).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TooLarge);
        assert_eq!(e.status(), StatusCode::MESSAGE_TOO_LARGE);
    }

    #[test]
    fn responses_for_requests() {
        let m = Message::parse(&with_body(Some("0"), "")).unwrap();
        let req = m.as_request().unwrap();
        let resp = Response::for_request(req, StatusCode::OK, "").with_to_tag("as1");
        assert_eq!(resp.reason, "OK");
        assert_eq!(resp.headers.count(&HeaderName::VIA), 2);
        assert_eq!(resp.to().unwrap().tag(), Some("as1"));
        assert_eq!(resp.from().unwrap().tag(), Some("1"));
        assert!(resp.headers.get(&HeaderName::CONTACT).is_none());
        let again = Message::parse(&resp.to_bytes()).unwrap();
        let mut again = again.as_response().unwrap().clone();
        // the parser adds Content-Length; with_to_tag keeps an existing tag
        assert_eq!(again.headers.remove(&HeaderName::CONTENT_LENGTH), 1);
        assert_eq!(again, resp.clone().with_to_tag("x"));
        let b = Message::parse(b"SIP/2.0 700 Nope\r\n\r\n").unwrap_err();
        assert_eq!(b.kind(), &ErrorKind::BadStatusCode);
        assert!(b.error_response().is_none());
    }

    /// The SWAR control scan agrees with an octet-by-octet one for every pair of octet
    /// values at every pair of positions in a 17-octet line (both words and the tail).
    #[test]
    fn find_ctl_matches_naive() {
        let naive = |b: &[u8], i: usize| {
            b[i..]
                .iter()
                .position(|&c| (c < 0x20 && c != b'\t') || c == 0x7f)
                .map_or(b.len(), |p| p + i)
        };
        let mut line = [b'a'; 17];
        for p in 0..line.len() {
            for q in p..line.len() {
                for c in 0..=255u8 {
                    for d in [b'\t', 0x00, b'\r', 0x7f, 0x80, 0x9f, 0xff, b' '] {
                        line.fill(b'a');
                        line[p] = c;
                        line[q] = d;
                        for start in [0, 1, 9] {
                            assert_eq!(find_ctl(&line, start), naive(&line, start), "{line:?}");
                        }
                    }
                }
            }
        }
    }
}
