//! HTTP Digest for SIP REGISTER (RFC 3261 section 22.4 over RFC 2617, MD5 per RFC 7616):
//! HA1, the expected `response`, verification, an `Authorization` header parser, and
//! stateless nonces.
//!
//! The AS's registrar challenges a REGISTER with `401` + `WWW-Authenticate: Digest
//! realm=..., nonce=<NonceKey::issue>, qop="auth", algorithm=MD5`; on the retry it parses
//! the `Authorization` header ([`Credentials::parse`]), checks the nonce
//! ([`NonceKey::check`]: not forged, not expired), looks the subscriber's HA1 up in the
//! store (`Store::get_subscriber_by_username`) and calls [`verify`].
//!
//! Nonces carry their issue time and a random value, authenticated with HMAC-SHA-256 under
//! a server secret (RFC 7616 section 3.3 suggests a time stamp and a private key): no
//! server state, forged or altered nonces fail, and old ones expire. Nothing here reads the
//! clock: the time is an argument. Nonce-count replay tracking (`nc`) is the registrar's
//! (it needs per-nonce state).

use md5::{Digest as _, Md5};

/// Lower-case hex of MD5(`data`).
#[must_use]
pub fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[usize::from(b >> 4)] as char);
        s.push(H[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// HA1 = MD5(username ":" realm ":" password) (RFC 2617 section 3.2.2.2), what the store
/// keeps instead of the password.
#[must_use]
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// Digest algorithm (RFC 7616 section 3.4.2; SIP uses MD5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (the default when absent).
    Md5,
    /// `MD5-sess`: HA1 is re-hashed with the nonce and cnonce.
    Md5Sess,
}

/// Quality of protection (RFC 2617 section 3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// No qop (RFC 2069 compatibility): response = MD5(HA1:nonce:HA2).
    None,
    /// `auth`.
    Auth,
    /// `auth-int` (HA2 covers the body's hash).
    AuthInt,
}

/// The fields of a Digest `Authorization` / `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri).
    pub uri: String,
    /// `response` (32 hex digits).
    pub response: String,
    /// `algorithm` as sent (`None`: MD5).
    pub algorithm: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `opaque`.
    pub opaque: Option<String>,
    /// `qop` (a token).
    pub qop: Option<String>,
    /// `nc` (8 hex digits).
    pub nc: Option<String>,
}

/// Why credentials cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Not a `Digest` challenge response, or not `name=value` pairs.
    #[error("malformed Authorization header")]
    Malformed,
    /// A required parameter is missing.
    #[error("missing digest parameter {0}")]
    Missing(&'static str),
    /// An algorithm other than MD5 / MD5-sess.
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
    /// A qop other than auth / auth-int.
    #[error("unsupported qop {0:?}")]
    Qop(String),
    /// qop given without nc/cnonce (RFC 2617 section 3.2.2).
    #[error("qop without nc and cnonce")]
    QopParams,
}

impl Credentials {
    /// Parse the header value: `Digest username="...", realm="...", ...` (RFC 2617
    /// section 3.2.2, RFC 3261 section 25.1 `digest-response`). Bounded: at most 32
    /// parameters; unknown ones are ignored.
    pub fn parse(value: &str) -> Result<Credentials, DigestError> {
        let v = value.trim_start();
        let rest = match v.get(..6) {
            Some(s) if s.eq_ignore_ascii_case("digest") => &v[6..],
            _ => return Err(DigestError::Malformed),
        };
        if !rest.starts_with([' ', '\t']) {
            return Err(DigestError::Malformed);
        }
        let mut c = Credentials::default();
        let (mut user, mut realm, mut nonce, mut uri, mut resp) = (None, None, None, None, None);
        let mut s = rest.trim_start();
        for _ in 0..32 {
            if s.is_empty() {
                break;
            }
            let eq = s.find('=').ok_or(DigestError::Malformed)?;
            let name = s[..eq].trim();
            if name.is_empty() || name.contains([' ', ',', '"']) {
                return Err(DigestError::Malformed);
            }
            s = s[eq + 1..].trim_start();
            let val;
            if let Some(q) = s.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => match chars.next() {
                            Some((_, e)) => out.push(e),
                            None => return Err(DigestError::Malformed),
                        },
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        ch => out.push(ch),
                    }
                }
                let end = end.ok_or(DigestError::Malformed)?;
                val = out;
                s = q[end + 1..].trim_start();
            } else {
                let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
                val = s[..end].to_owned();
                s = s[end..].trim_start();
            }
            match s.strip_prefix(',') {
                Some(r) => s = r.trim_start(),
                None if s.is_empty() => {}
                None => return Err(DigestError::Malformed),
            }
            match name.to_ascii_lowercase().as_str() {
                "username" => user = Some(val),
                "realm" => realm = Some(val),
                "nonce" => nonce = Some(val),
                "uri" => uri = Some(val),
                "response" => resp = Some(val),
                "algorithm" => c.algorithm = Some(val),
                "cnonce" => c.cnonce = Some(val),
                "opaque" => c.opaque = Some(val),
                "qop" => c.qop = Some(val),
                "nc" => c.nc = Some(val),
                _ => {}
            }
        }
        if !s.is_empty() {
            return Err(DigestError::Malformed);
        }
        c.username = user.ok_or(DigestError::Missing("username"))?;
        c.realm = realm.ok_or(DigestError::Missing("realm"))?;
        c.nonce = nonce.ok_or(DigestError::Missing("nonce"))?;
        c.uri = uri.ok_or(DigestError::Missing("uri"))?;
        c.response = resp.ok_or(DigestError::Missing("response"))?;
        Ok(c)
    }

    /// The algorithm named (MD5 when absent).
    pub fn algorithm(&self) -> Result<Algorithm, DigestError> {
        match self.algorithm.as_deref() {
            None => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5-sess") => Ok(Algorithm::Md5Sess),
            Some(a) => Err(DigestError::Algorithm(a.to_owned())),
        }
    }

    /// The qop named.
    pub fn qop(&self) -> Result<Qop, DigestError> {
        match self.qop.as_deref() {
            None => Ok(Qop::None),
            Some(q) if q.eq_ignore_ascii_case("auth") => Ok(Qop::Auth),
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Ok(Qop::AuthInt),
            Some(q) => Err(DigestError::Qop(q.to_owned())),
        }
    }
}

/// The `response` the client must send (RFC 2617 section 3.2.2.1), from the stored `ha1`,
/// the request `method` and, for `auth-int`, the message `body`.
pub fn expected_response(
    ha1: &str,
    c: &Credentials,
    method: &str,
    body: &[u8],
) -> Result<String, DigestError> {
    let qop = c.qop()?;
    let ha1 = match c.algorithm()? {
        Algorithm::Md5 => ha1.to_owned(),
        Algorithm::Md5Sess => {
            let cnonce = c.cnonce.as_deref().ok_or(DigestError::Missing("cnonce"))?;
            md5_hex(format!("{ha1}:{}:{cnonce}", c.nonce).as_bytes())
        }
    };
    let ha2 = match qop {
        Qop::AuthInt => md5_hex(format!("{method}:{}:{}", c.uri, md5_hex(body)).as_bytes()),
        _ => md5_hex(format!("{method}:{}", c.uri).as_bytes()),
    };
    Ok(match qop {
        Qop::None => md5_hex(format!("{ha1}:{}:{ha2}", c.nonce).as_bytes()),
        Qop::Auth | Qop::AuthInt => {
            let (Some(nc), Some(cnonce)) = (&c.nc, &c.cnonce) else {
                return Err(DigestError::QopParams);
            };
            let q = if qop == Qop::Auth { "auth" } else { "auth-int" };
            md5_hex(format!("{ha1}:{}:{nc}:{cnonce}:{q}:{ha2}", c.nonce).as_bytes())
        }
    })
}

/// Whether `c.response` is right for `ha1` (compared in constant time). Unsupported
/// algorithms/qops and missing parameters are `false`. The nonce is checked separately
/// ([`NonceKey::check`]).
#[must_use]
pub fn verify(ha1: &str, c: &Credentials, method: &str, body: &[u8]) -> bool {
    match expected_response(ha1, c, method, body) {
        Ok(want) => constant_time_eq(want.as_bytes(), c.response.to_ascii_lowercase().as_bytes()),
        Err(_) => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `WWW-Authenticate` (401) / `Proxy-Authenticate` (407) value challenging a request
/// (RFC 3261 section 22.4, RFC 2617 section 3.2.1): `Digest realm="..", nonce="..",
/// algorithm=MD5, qop="auth"`, with `stale=TRUE` when the client's credentials were right
/// but its nonce expired (it retries without asking the user).
#[must_use]
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{}",
        q(realm),
        q(nonce),
        if stale { ", stale=TRUE" } else { "" }
    )
}

/// Why a nonce is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Not one of ours (wrong length or not hex).
    #[error("malformed nonce")]
    Malformed,
    /// The MAC does not match: forged or altered.
    #[error("nonce not issued by this server")]
    Forged,
    /// Older than the allowed age: challenge again with `stale=true` (RFC 2617 section
    /// 3.2.1).
    #[error("nonce expired")]
    Expired,
    /// Issued in the future (clock moved back, or another server's clock is ahead).
    #[error("nonce from the future")]
    FromFuture,
}

/// Length of the MAC kept in a nonce (bytes).
const NONCE_MAC: usize = 16;

/// The server secret nonces are authenticated with (HMAC-SHA-256).
#[derive(Clone)]
pub struct NonceKey {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// A key from secret bytes (at least 16 recommended; from the config or random at
    /// start-up: nonces then do not survive a restart, which only costs a new challenge).
    #[must_use]
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// A nonce issued at `now_secs` (Unix seconds), with `random` making it unique: 64 hex
    /// digits = time (8 bytes) | random (8 bytes) | HMAC (16 bytes).
    #[must_use]
    pub fn issue(&self, now_secs: u64, random: u64) -> String {
        let mut b = Vec::with_capacity(16 + NONCE_MAC);
        b.extend_from_slice(&now_secs.to_be_bytes());
        b.extend_from_slice(&random.to_be_bytes());
        let tag = ring::hmac::sign(&self.key, &b);
        b.extend_from_slice(&tag.as_ref()[..NONCE_MAC]);
        hex(&b)
    }

    /// Check a nonce at `now_secs`: ours, and at most `max_age_secs` old (a small skew
    /// into the future, 5 s, is tolerated). Returns its issue time.
    pub fn check(&self, nonce: &str, now_secs: u64, max_age_secs: u64) -> Result<u64, NonceError> {
        if nonce.len() != 2 * (16 + NONCE_MAC) {
            return Err(NonceError::Malformed);
        }
        let b = unhex(nonce).ok_or(NonceError::Malformed)?;
        let tag = ring::hmac::sign(&self.key, &b[..16]);
        if !constant_time_eq(&tag.as_ref()[..NONCE_MAC], &b[16..]) {
            return Err(NonceError::Forged);
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[..8]);
        let issued = u64::from_be_bytes(t);
        if issued > now_secs.saturating_add(5) {
            return Err(NonceError::FromFuture);
        }
        if now_secs.saturating_sub(issued) > max_age_secs {
            return Err(NonceError::Expired);
        }
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 section 3.5's worked example.
    fn rfc2617() -> Credentials {
        Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            algorithm: None,
            cnonce: Some("0a4f113b".into()),
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
        }
    }

    #[test]
    fn rfc2617_example() {
        let h = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(h, "939e7578ed9e3c518a452acee763bce9");
        let c = rfc2617();
        assert_eq!(
            expected_response(&h, &c, "GET", b"").unwrap(),
            "6629fae49393a05397450978507c4ef1"
        );
        assert!(verify(&h, &c, "GET", b""));
        // Wrong password, method, uri or nc: refused.
        assert!(!verify(
            &ha1("Mufasa", "testrealm@host.com", "Circle of Life"),
            &c,
            "GET",
            b""
        ));
        assert!(!verify(&h, &c, "POST", b""));
        let mut bad = c.clone();
        bad.nc = Some("00000002".into());
        assert!(!verify(&h, &bad, "GET", b""));
        let mut bad = c;
        bad.uri = "/dir/other.html".into();
        assert!(!verify(&h, &bad, "GET", b""));
    }

    #[test]
    fn parse_the_rfc2617_header() {
        let hdr = "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\", \
                   nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
                   qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
                   response=\"6629fae49393a05397450978507c4ef1\", \
                   opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let hdr = hdr.replace("\r\n", "");
        let c = Credentials::parse(&hdr).unwrap();
        assert_eq!(c, rfc2617());
        assert_eq!(c.algorithm().unwrap(), Algorithm::Md5);
        assert_eq!(c.qop().unwrap(), Qop::Auth);
    }

    #[test]
    fn parse_refuses_garbage() {
        for bad in [
            "",
            "Basic dXNlcjpwYXNz",
            "Digest",
            "Digestusername=\"a\"",
            "Digest username=\"a",
            "Digest username=\"a\" realm=\"b\"",
            "Digest =x",
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Credentials::parse("Digest username=\"a\", realm=\"b\""),
            Err(DigestError::Missing("nonce"))
        );
        // Escapes in quoted strings.
        let c = Credentials::parse(
            "digest username=\"a\\\"b\", realm=r, nonce=n, uri=\"sip:x\", response=00",
        )
        .unwrap();
        assert_eq!(c.username, "a\"b");
        assert_eq!(c.uri, "sip:x");
    }

    #[test]
    fn sip_register_without_qop_and_md5_sess() {
        // RFC 2069 style (no qop) as some SIP phones still send.
        let h = ha1("alice@iptv.example", "iptv.example", "secret");
        let mut c = Credentials {
            username: "alice@iptv.example".into(),
            realm: "iptv.example".into(),
            nonce: "abc".into(),
            uri: "sip:iptv.example".into(),
            ..Credentials::default()
        };
        let ha2 = md5_hex(b"REGISTER:sip:iptv.example");
        c.response = md5_hex(format!("{h}:abc:{ha2}").as_bytes());
        assert!(verify(&h, &c, "REGISTER", b""));
        // MD5-sess with qop auth-int over a body.
        c.algorithm = Some("MD5-sess".into());
        c.qop = Some("auth-int".into());
        c.nc = Some("00000001".into());
        c.cnonce = Some("xyz".into());
        let sess = md5_hex(format!("{h}:abc:xyz").as_bytes());
        let ha2 = md5_hex(format!("REGISTER:sip:iptv.example:{}", md5_hex(b"body")).as_bytes());
        c.response =
            md5_hex(format!("{sess}:abc:00000001:xyz:auth-int:{ha2}").as_bytes()).to_uppercase();
        assert!(verify(&h, &c, "REGISTER", b"body"));
        assert!(!verify(&h, &c, "REGISTER", b"other"));
        // qop without nc: refused, not a panic.
        c.nc = None;
        assert!(!verify(&h, &c, "REGISTER", b"body"));
        c.algorithm = Some("SHA-256".into());
        assert!(matches!(c.algorithm(), Err(DigestError::Algorithm(_))));
    }

    #[test]
    fn challenge_then_answer() {
        let k = NonceKey::new(b"secret-secret-secret");
        let nonce = k.issue(1_800_000_000, 7);
        let ch = challenge("iptv.example", &nonce, false);
        assert_eq!(
            ch,
            format!(
                "Digest realm=\"iptv.example\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\""
            )
        );
        assert!(challenge("a\"b", "n", true).ends_with("qop=\"auth\", stale=TRUE"));
        assert!(challenge("a\"b", "n", true).starts_with("Digest realm=\"a\\\"b\""));
        // A UE answering the challenge: parse, check the nonce, verify against HA1.
        let h = ha1("alice@iptv.example", "iptv.example", "alice-secret");
        let ha2 = md5_hex(b"REGISTER:sip:iptv.example");
        let resp = md5_hex(format!("{h}:{nonce}:00000001:c0ffee:auth:{ha2}").as_bytes());
        let auth = format!(
            "Digest username=\"alice@iptv.example\", realm=\"iptv.example\", \
             nonce=\"{nonce}\", uri=\"sip:iptv.example\", response=\"{resp}\", \
             algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001"
        );
        let c = Credentials::parse(&auth).unwrap();
        assert_eq!(k.check(&c.nonce, 1_800_000_010, 300), Ok(1_800_000_000));
        assert!(verify(&h, &c, "REGISTER", b""));
        assert!(!verify(
            &ha1("alice@iptv.example", "iptv.example", "wrong"),
            &c,
            "REGISTER",
            b""
        ));
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let k = NonceKey::new(b"0123456789abcdef-server-secret");
        let n = k.issue(1_800_000_000, 42);
        assert_eq!(n.len(), 64);
        assert_eq!(k.check(&n, 1_800_000_000, 300), Ok(1_800_000_000));
        assert_eq!(k.check(&n, 1_800_000_300, 300), Ok(1_800_000_000));
        assert_eq!(k.check(&n, 1_800_000_301, 300), Err(NonceError::Expired));
        assert_eq!(k.check(&n, 1_799_999_000, 300), Err(NonceError::FromFuture));
        // Different random part: a different nonce.
        assert_ne!(k.issue(1_800_000_000, 43), n);
        // Another key's nonce, or an altered time stamp: forged.
        let other = NonceKey::new(b"another secret of some length");
        assert_eq!(other.check(&n, 1_800_000_000, 300), Err(NonceError::Forged));
        let mut altered = n.clone().into_bytes();
        altered[15] = if altered[15] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            k.check(&altered, 1_800_000_000, 300),
            Err(NonceError::Forged)
        );
        for bad in ["", "zz", &n[..62], &format!("{}zz", &n[..62])] {
            assert_eq!(k.check(bad, 1_800_000_000, 300), Err(NonceError::Malformed));
        }
    }
}
