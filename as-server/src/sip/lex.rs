//! Character classes and small scanners of the RFC 3261 section 25.1 grammar.
//!
//! Everything here works on already-unfolded header values (the header parser replaced every
//! `CRLF 1*WSP` fold with one SP), so LWS is just `*WSP`. Scanners return the consumed length
//! and never allocate.

/// Bit flags of the character-class table.
const ALNUM: u16 = 1;
/// `mark` of RFC 3261 25.1 (`unreserved = alphanum / mark`).
const MARK: u16 = 2;
/// `token` characters (besides alphanum).
const TOKEN: u16 = 4;
/// `user-unreserved`.
const USER: u16 = 8;
/// `param-unreserved`.
const PARAM: u16 = 16;
/// `hnv-unreserved`.
const HNV: u16 = 32;
/// `word` extra characters (Call-ID).
const WORD: u16 = 64;
/// `reserved`.
const RESERVED: u16 = 128;
/// The extra characters of `password` (`"&" / "=" / "+" / "$" / ","`).
const PASSWORD: u16 = 256;
/// Octets that need a look in [`split_commas`] (`"`, `<`, `>`, `,`).
const COMMA_SPECIAL: u16 = 512;
/// `:` (a `gen-value` is a token or a host, so it may hold colons).
const COLON: u16 = 1024;
/// `-` and `.`, which join alphanumerics into a hostname or IPv4 address.
const HOST_JOIN: u16 = 2048;

/// Octets of `hostname / IPv4address` (alphanumerics, `-`, `.`).
pub(crate) const C_HOST: u16 = ALNUM | HOST_JOIN;

/// `user = 1*( unreserved / escaped / user-unreserved )` (besides `%`).
pub(crate) const C_USER: u16 = ALNUM | MARK | USER;
/// `password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )` (besides `%`).
pub(crate) const C_PASSWORD: u16 = ALNUM | MARK | PASSWORD;
/// `paramchar` (besides `%`).
pub(crate) const C_PARAM: u16 = ALNUM | MARK | PARAM;
/// `hnv-unreserved / unreserved` (besides `%`).
pub(crate) const C_HNV: u16 = ALNUM | MARK | HNV;

const fn table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut f = 0;
        if b.is_ascii_alphanumeric() {
            f |= ALNUM;
        }
        if matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        ) {
            f |= MARK;
        }
        if matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        ) {
            f |= TOKEN;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            f |= USER;
        }
        if matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            f |= PARAM;
        }
        if matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            f |= HNV;
        }
        if matches!(
            b,
            b'-' | b'.'
                | b'!'
                | b'%'
                | b'*'
                | b'_'
                | b'+'
                | b'`'
                | b'\''
                | b'~'
                | b'('
                | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        ) {
            f |= WORD;
        }
        if matches!(
            b,
            b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
        ) {
            f |= RESERVED;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            f |= PASSWORD;
        }
        if matches!(b, b'"' | b'<' | b'>' | b',') {
            f |= COMMA_SPECIAL;
        }
        if b == b':' {
            f |= COLON;
        }
        if matches!(b, b'-' | b'.') {
            f |= HOST_JOIN;
        }
        t[c] = f;
        c += 1;
    }
    t
}

static CLASS: [u16; 256] = table();

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASS[b as usize] & (ALNUM | TOKEN) != 0
}
#[inline]
pub(crate) fn is_unreserved(b: u8) -> bool {
    CLASS[b as usize] & (ALNUM | MARK) != 0
}
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    CLASS[b as usize] & (ALNUM | WORD) != 0
}
/// `uric` = reserved / unreserved / escaped ('%' handled by the caller).
#[inline]
pub(crate) fn is_uric(b: u8) -> bool {
    CLASS[b as usize] & (ALNUM | MARK | RESERVED) != 0
}
#[inline]
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Scans `*( class / escaped )` from `s[i]` (escaped = "%" HEXDIG HEXDIG) and returns where
/// it stops, or `None` at a malformed escape.
#[inline]
pub(crate) fn scan_escaped(s: &[u8], mut i: usize, mask: u16) -> Option<usize> {
    loop {
        while i < s.len() && CLASS[s[i] as usize] & mask != 0 {
            i += 1;
        }
        if i < s.len() && s[i] == b'%' {
            if i + 2 >= s.len() || !s[i + 1].is_ascii_hexdigit() || !s[i + 2].is_ascii_hexdigit() {
                return None;
            }
            i += 3;
        } else {
            return Some(i);
        }
    }
}

/// Whether `b` is in one of the classes of `mask` (the `C_*` constants).
#[inline]
pub(crate) fn in_class(b: u8, mask: u16) -> bool {
    CLASS[b as usize] & mask != 0
}

/// Splits a `#token` list value (Allow, Supported, Require...) at its commas, calling `f`
/// with each element's range, and says whether every element is a non-empty token: the
/// verdict [`split_commas`] plus a per-element token check give for these headers, in one
/// pass. `v` is trimmed and not empty.
pub(crate) fn split_token_list(v: &[u8], mut f: impl FnMut(usize, usize)) -> bool {
    let mut i = 0;
    loop {
        i = skip_ws(v, i);
        let s = i;
        while i < v.len() && is_token(v[i]) {
            i += 1;
        }
        if i == s {
            return false;
        }
        f(s, i);
        i = skip_ws(v, i);
        if i == v.len() {
            return true;
        }
        if v[i] != b',' {
            return false;
        }
        i += 1;
    }
}

/// Whether the whole string is a non-empty token.
pub(crate) fn all_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Checks `1*(allowed / escaped)` (or `*` when `allow_empty`), escaped = "%" HEXDIG HEXDIG.
#[inline]
pub(crate) fn check_escaped(s: &[u8], allow_empty: bool, allowed: impl Fn(u8) -> bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            if i + 2 >= s.len() {
                return false;
            }
            if !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if allowed(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Whether `v` holds a control character (CTL other than HT, or DEL). Eight octets at a
/// time: values are mostly printable.
#[inline]
pub(crate) fn has_ctl(v: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let below_space = x.wrapping_sub(0x20 * LO) & !x & HI;
        let y = x ^ (0x7f * LO);
        let del = y.wrapping_sub(LO) & !y & HI;
        if (below_space | del) != 0 && c.iter().any(|&b| is_ctl(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| is_ctl(b))
}

#[inline]
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Skips `*WSP` from `i`.
#[inline]
pub(crate) fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_wsp(s[i]) {
        i += 1;
    }
    i
}

/// Trims leading and trailing WSP.
pub(crate) fn trim_ws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Scans a quoted-string starting at `s[i] == '"'`; returns the index just past the closing
/// quote, or `None` if unterminated or holding a character the grammar forbids
/// (`qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII`, `quoted-pair = "\" (%x00-09 /
/// %x0B-0C / %x0E-7F)`).
pub(crate) fn scan_quoted(s: &[u8], i: usize) -> Option<usize> {
    debug_assert_eq!(s.get(i), Some(&b'"'));
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Some(j + 1),
            b'\\' => {
                let n = *s.get(j + 1)?;
                if n == b'\r' || n == b'\n' || n >= 0x80 {
                    return None;
                }
                j += 2;
            }
            b' ' | b'\t' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => j += 1,
            _ => return None,
        }
    }
    None
}

/// Unquotes a quoted-string body (without the surrounding quotes), resolving quoted-pairs.
pub(crate) fn unquote(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a header value at top-level commas (not inside quoted strings or `<...>`), as the
/// `#element` list rule of RFC 3261 section 7.3.1 allows. Yields trimmed elements, including
/// empty ones (the caller decides whether they are legal). Returns `None` when a quote or
/// angle bracket is unbalanced.
pub(crate) fn split_commas(v: &str, mut f: impl FnMut(usize, usize)) -> Option<()> {
    let s = v.as_bytes();
    if memchr::memchr(b',', s).is_none() {
        // one element (quotes and brackets are checked by the element's grammar)
        let (a, b) = trim_range(s, 0, s.len());
        f(a, b);
        return Some(());
    }
    let mut start = 0;
    let mut i = 0;
    let mut in_angle = false;
    while i < s.len() {
        // skip ordinary octets quickly
        while i < s.len() && CLASS[s[i] as usize] & COMMA_SPECIAL == 0 {
            i += 1;
        }
        if i == s.len() {
            break;
        }
        match s[i] {
            b'"' if !in_angle => {
                i = scan_quoted(s, i)?;
                continue;
            }
            b'<' if !in_angle => in_angle = true,
            b'>' if in_angle => in_angle = false,
            b',' if !in_angle => {
                let (a, b) = trim_range(s, start, i);
                f(a, b);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_angle {
        return None;
    }
    let (a, b) = trim_range(s, start, s.len());
    f(a, b);
    Some(())
}

fn trim_range(s: &[u8], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && is_wsp(s[a]) {
        a += 1;
    }
    while b > a && is_wsp(s[b - 1]) {
        b -= 1;
    }
    (a, b)
}

/// Parses `1*DIGIT` into a u32, refusing overflow (RFC 4475 3.1.2.4 overlarge scalars).
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = s.trim_start_matches('0');
    if t.len() > 10 {
        return None;
    }
    if t.is_empty() {
        return Some(0);
    }
    t.parse().ok()
}

/// A `;name[=value]` parameter list as found after a Via, name-addr or media type. Each
/// parameter is returned as raw `(name, value)`; `value` keeps quotes if it was quoted.
/// `SEMI = SWS ";" SWS`, `EQUAL = SWS "=" SWS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// The value of parameter `name` (case-insensitive); `Some(None)` for a flag parameter.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    /// Whether parameter `name` is present.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Sets (replaces) parameter `name`.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let v = value.map(str::to_owned);
        if let Some(e) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            e.1 = v;
        } else {
            self.0.push((name.to_owned(), v));
        }
    }
    /// Removes parameter `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Scans `*( SEMI generic-param )` from `s[i..]` to the end of `s`, where
/// `generic-param = token [ EQUAL gen-value ]`, `gen-value = token / host / quoted-string`.
/// Calls `f(name, value)` for each. Returns `false` on a grammar error (empty parameter,
/// bad character, trailing garbage).
pub(crate) fn scan_generic_params(
    s: &str,
    mut i: usize,
    mut f: impl FnMut(&str, Option<&str>) -> bool,
) -> bool {
    let b = s.as_bytes();
    loop {
        i = skip_ws(b, i);
        if i == b.len() {
            return true;
        }
        if b[i] != b';' {
            return false;
        }
        i = skip_ws(b, i + 1);
        let ns = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if ns == i {
            return false;
        }
        let name = &s[ns..i];
        let j = skip_ws(b, i);
        if j < b.len() && b[j] == b'=' {
            i = skip_ws(b, j + 1);
            let vs = i;
            if i < b.len() && b[i] == b'"' {
                match scan_quoted(b, i) {
                    Some(e) => i = e,
                    None => return false,
                }
            } else if i < b.len() && b[i] == b'[' {
                // IPv6reference as gen-value (host)
                while i < b.len() && b[i] != b']' {
                    if !(b[i].is_ascii_hexdigit() || b[i] == b':' || b[i] == b'.' || b[i] == b'[') {
                        return false;
                    }
                    i += 1;
                }
                if i == b.len() {
                    return false;
                }
                i += 1;
            } else {
                while i < b.len() && CLASS[b[i] as usize] & (ALNUM | TOKEN | COLON) != 0 {
                    i += 1;
                }
            }
            if vs == i {
                return false;
            }
            if !f(name, Some(&s[vs..i])) {
                return false;
            }
        } else {
            i = j;
            if !f(name, None) {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings() {
        assert_eq!(scan_quoted(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(scan_quoted(br#""abc"#, 0), None);
        assert_eq!(scan_quoted(b"\"a\x01\"", 0), None);
        assert_eq!(scan_quoted(b"\"a\\\x00\"", 0), Some(5));
        assert_eq!(unquote(r#"J Rosenberg \\\""#), r#"J Rosenberg \""#);
    }

    #[test]
    fn control_chars() {
        assert!(!has_ctl(
            b"plain value with tabs\tand UTF-8 \xc3\xa9 and more text"
        ));
        assert!(has_ctl(b"0123456789abcdef\x01"));
        assert!(has_ctl(b"01234567\x7f"));
        assert!(has_ctl(b"\x00"));
        assert!(has_ctl(b"abcdefgh\rijklmnop"));
        assert!(!has_ctl(b""));
    }

    #[test]
    fn escapes() {
        assert!(check_escaped(b"%75se%72", false, |b| CLASS[b as usize]
            & C_USER
            != 0));
        assert!(!check_escaped(b"%7", false, |b| CLASS[b as usize] & C_USER != 0));
        assert!(!check_escaped(b"%zz", false, |b| CLASS[b as usize]
            & C_USER
            != 0));
        assert!(!check_escaped(b"a b", false, |b| CLASS[b as usize]
            & C_USER
            != 0));
        assert!(!check_escaped(b"", false, |b| CLASS[b as usize] & C_USER != 0));
    }

    #[test]
    fn commas() {
        let v = r#""a,b" <sip:x@y;p=1,2>, <sip:z>,"#;
        let mut parts = Vec::new();
        split_commas(v, |a, b| parts.push(&v[a..b])).unwrap();
        assert_eq!(parts, vec![r#""a,b" <sip:x@y;p=1,2>"#, "<sip:z>", ""]);
        assert!(split_commas("<sip:a,b", |_, _| {}).is_none());
    }

    #[test]
    fn scalars() {
        assert_eq!(parse_u32("0068"), Some(68));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("36893488147419103232"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32(""), None);
    }

    #[test]
    fn generic_params() {
        let mut got = Vec::new();
        assert!(scan_generic_params(
            " ; tag = 98asjd8 ;lr; x=\"q;v\"",
            0,
            |n, v| {
                got.push((n.to_owned(), v.map(str::to_owned)));
                true
            }
        ));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ("tag".into(), Some("98asjd8".into())));
        assert!(!scan_generic_params(";;", 0, |_, _| true));
        assert!(!scan_generic_params(";a=", 0, |_, _| true));
    }
}
