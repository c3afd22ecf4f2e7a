//! Standalone registrar (RFC 3261 section 10.3), sans-IO.
//!
//! Bindings are kept per address-of-record (the canonical To URI) with an absolute expiry.
//! The core never reads the clock: [`Registrar::register`], [`Registrar::lookup`] and
//! [`Registrar::expire`] take `now`. The service turns a REGISTER into a [`RegisterRequest`]
//! ([`parse_contacts`] splits the Contact header values) and the outcome into the response:
//! `200 OK` listing every current binding with its remaining `expires`, `400` for `*` without
//! `Expires: 0`, `423 Interval Too Brief` with `Min-Expires`, `500` for an out-of-order CSeq.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::ExpiryBounds;

/// Most bindings one AoR may hold; more is refused (bounded memory under bad input).
pub const MAX_BINDINGS_PER_AOR: usize = 32;
/// Most AoRs the registrar holds.
pub const MAX_AORS: usize = 100_000;

/// One contact of a REGISTER (RFC 3261 section 10.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    /// The contact URI, as written between `<` `>` (or bare).
    pub uri: String,
    /// Its `expires` parameter, if any.
    pub expires: Option<u32>,
}

/// The Contact header(s) of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// No Contact: a query (RFC 3261 section 10.2.3).
    Query,
    /// `Contact: *` (remove all, only with `Expires: 0`; section 10.2.2).
    Star,
    /// Contacts to add, refresh or remove.
    List(Vec<ContactRequest>),
}

/// What the registrar needs of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    /// Address-of-record (the To URI, canonicalised by the caller).
    pub aor: String,
    /// Call-ID of the REGISTER.
    pub call_id: String,
    /// CSeq number of the REGISTER.
    pub cseq: u32,
    /// The `Expires` header value, if present.
    pub expires_header: Option<u32>,
    /// Contact header(s).
    pub contacts: Contacts,
}

/// A binding with the seconds it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentBinding {
    /// Contact URI.
    pub uri: String,
    /// Seconds left (rounded up).
    pub expires: u32,
}

/// Why a REGISTER is refused; each maps to one response code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// `Contact: *` with other contacts or a non-zero Expires: 400.
    #[error("Contact * needs Expires: 0 and no other contact")]
    BadStar,
    /// Requested expiry below the minimum: 423 with `Min-Expires`.
    #[error("Interval Too Brief (min {0} s)")]
    IntervalTooBrief(u32),
    /// Same Call-ID with a CSeq not above the stored one: 500 (section 10.3 step 7).
    #[error("out-of-order REGISTER (CSeq not above the binding's)")]
    OutOfOrder,
    /// Too many bindings for this AoR or too many AoRs: 503.
    #[error("too many bindings")]
    TooMany,
}

impl RegisterError {
    /// Response code for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadStar => 400,
            Self::IntervalTooBrief(_) => 423,
            Self::OutOfOrder => 500,
            Self::TooMany => 503,
        }
    }
}

#[derive(Debug, Clone)]
struct Binding {
    uri: String,
    call_id: String,
    cseq: u32,
    expires_at: Instant,
}

/// The registrar's binding table.
#[derive(Debug)]
pub struct Registrar {
    bounds: ExpiryBounds,
    aors: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    /// An empty registrar granting expiries within `bounds`.
    pub fn new(bounds: ExpiryBounds) -> Self {
        Self {
            bounds,
            aors: HashMap::new(),
        }
    }

    /// Processes a REGISTER (RFC 3261 section 10.3 steps 6-8) and returns the bindings now
    /// current for the AoR (for the 200's Contact headers). All-or-nothing: on error nothing
    /// changed.
    pub fn register(
        &mut self,
        now: Instant,
        req: &RegisterRequest,
    ) -> Result<Vec<CurrentBinding>, RegisterError> {
        self.expire_aor(now, &req.aor);
        match &req.contacts {
            Contacts::Query => {}
            Contacts::Star => {
                if req.expires_header != Some(0) {
                    return Err(RegisterError::BadStar);
                }
                // Section 10.3 step 6: remove only bindings not newer than this request.
                if let Some(list) = self.aors.get_mut(&req.aor) {
                    if list
                        .iter()
                        .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
                    {
                        return Err(RegisterError::OutOfOrder);
                    }
                    list.clear();
                }
            }
            Contacts::List(contacts) => {
                // Grant every expiry first so an error changes nothing.
                let mut granted = Vec::with_capacity(contacts.len());
                for c in contacts {
                    let e = self
                        .bounds
                        .grant(c.expires.or(req.expires_header))
                        .map_err(RegisterError::IntervalTooBrief)?;
                    granted.push((c, e));
                }
                let list = self.aors.get(&req.aor);
                for (c, _) in &granted {
                    if let Some(b) = list.and_then(|l| l.iter().find(|b| b.uri == c.uri)) {
                        if b.call_id == req.call_id && req.cseq <= b.cseq {
                            return Err(RegisterError::OutOfOrder);
                        }
                    }
                }
                let new_count = granted
                    .iter()
                    .filter(|(c, e)| {
                        *e > 0 && !list.is_some_and(|l| l.iter().any(|b| b.uri == c.uri))
                    })
                    .count();
                if list.map_or(0, Vec::len) + new_count > MAX_BINDINGS_PER_AOR
                    || (list.is_none() && self.aors.len() >= MAX_AORS)
                {
                    return Err(RegisterError::TooMany);
                }
                let list = self.aors.entry(req.aor.clone()).or_default();
                for (c, e) in granted {
                    list.retain(|b| b.uri != c.uri);
                    if e > 0 {
                        list.push(Binding {
                            uri: c.uri.clone(),
                            call_id: req.call_id.clone(),
                            cseq: req.cseq,
                            expires_at: now + Duration::from_secs(e.into()),
                        });
                    }
                }
            }
        }
        if self.aors.get(&req.aor).is_some_and(Vec::is_empty) {
            self.aors.remove(&req.aor);
        }
        Ok(self.lookup(now, &req.aor))
    }

    /// Current bindings of an AoR (expired ones are not listed).
    pub fn lookup(&self, now: Instant, aor: &str) -> Vec<CurrentBinding> {
        self.aors
            .get(aor)
            .into_iter()
            .flatten()
            .filter(|b| b.expires_at > now)
            .map(|b| CurrentBinding {
                uri: b.uri.clone(),
                expires: ceil_secs(b.expires_at - now),
            })
            .collect()
    }

    /// Drops every binding expired at `now`.
    pub fn expire(&mut self, now: Instant) {
        self.aors.retain(|_, l| {
            l.retain(|b| b.expires_at > now);
            !l.is_empty()
        });
    }

    /// The earliest binding expiry (when [`Registrar::expire`] next has work).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.aors.values().flatten().map(|b| b.expires_at).min()
    }

    /// Number of AoRs with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    fn expire_aor(&mut self, now: Instant, aor: &str) {
        if let Some(l) = self.aors.get_mut(aor) {
            l.retain(|b| b.expires_at > now);
            if l.is_empty() {
                self.aors.remove(aor);
            }
        }
    }
}

fn ceil_secs(d: Duration) -> u32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// Splits Contact header values (RFC 3261 section 20.10) into a [`Contacts`]; `None` when a
/// value is malformed (unbalanced `<`/`"`, empty element) or there are more than 64 contacts.
/// Commas inside `<...>` and quoted strings do not split.
pub fn parse_contacts<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Contacts> {
    let mut list = Vec::new();
    let mut any = false;
    for value in values {
        any = true;
        for elem in split_top_level(value)? {
            let elem = elem.trim();
            if elem == "*" {
                if !list.is_empty() {
                    return None;
                }
                return Some(Contacts::Star);
            }
            list.push(parse_one(elem)?);
            if list.len() > 64 {
                return None;
            }
        }
    }
    Some(if any {
        Contacts::List(list)
    } else {
        Contacts::Query
    })
}

fn split_top_level(v: &str) -> Option<Vec<&str>> {
    let (mut in_q, mut in_a, mut esc, mut start) = (false, false, false, 0);
    let mut out = Vec::new();
    for (i, c) in v.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if in_q => esc = true,
            '"' if !in_a => in_q = !in_q,
            '<' if !in_q => in_a = true,
            '>' if !in_q => in_a = false,
            ',' if !in_q && !in_a => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_q || in_a {
        return None;
    }
    out.push(&v[start..]);
    Some(out)
}

fn parse_one(elem: &str) -> Option<ContactRequest> {
    if elem.is_empty() {
        return None;
    }
    let (uri, params) = if let Some(lt) = find_unquoted(elem, '<') {
        let gt = elem[lt..].find('>')? + lt;
        (&elem[lt + 1..gt], &elem[gt + 1..])
    } else {
        // Bare addr-spec: parameters after the first ';' are header parameters.
        match elem.find(';') {
            Some(i) => (&elem[..i], &elem[i..]),
            None => (elem, ""),
        }
    };
    let uri = uri.trim();
    if uri.is_empty() || !uri.contains(':') {
        return None;
    }
    let mut expires = None;
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("expires") {
                // RFC 3261 section 10.2.1.1: a malformed value means the default.
                expires = v.trim().parse::<u32>().ok();
            }
        }
    }
    Some(ContactRequest {
        uri: uri.to_owned(),
        expires,
    })
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut in_q = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_q = !in_q,
            c if c == needle && !in_q => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: ExpiryBounds = ExpiryBounds {
        min: 60,
        max: 3600,
        default: 600,
    };

    fn req(cseq: u32, exp: Option<u32>, contacts: Contacts) -> RegisterRequest {
        RegisterRequest {
            aor: "sip:alice@example.com".into(),
            call_id: "c1".into(),
            cseq,
            expires_header: exp,
            contacts,
        }
    }

    fn one(uri: &str, e: Option<u32>) -> Contacts {
        Contacts::List(vec![ContactRequest {
            uri: uri.into(),
            expires: e,
        }])
    }

    /// Origin of the virtual clock (any instant will do; only differences matter).
    #[expect(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn bind_refresh_expire() {
        let t0 = origin();
        let mut r = Registrar::new(B);
        let got = r
            .register(t0, &req(1, None, one("sip:a@10.0.0.1", None)))
            .unwrap();
        assert_eq!(
            got,
            vec![CurrentBinding {
                uri: "sip:a@10.0.0.1".into(),
                expires: 600
            }]
        );
        let got = r
            .register(
                t0 + Duration::from_secs(100),
                &req(2, Some(120), one("sip:b@10.0.0.2", None)),
            )
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].expires, 500);
        assert_eq!(got[1].expires, 120);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(220)));
        r.expire(t0 + Duration::from_secs(221));
        let left = r.lookup(t0 + Duration::from_secs(221), "sip:alice@example.com");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].uri, "sip:a@10.0.0.1");
        r.expire(t0 + Duration::from_secs(601));
        assert_eq!(r.aor_count(), 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn contact_param_beats_header_and_bounds_apply() {
        let t0 = origin();
        let mut r = Registrar::new(B);
        let got = r
            .register(t0, &req(1, Some(300), one("sip:a@h", Some(99_999))))
            .unwrap();
        assert_eq!(got[0].expires, 3600);
        assert_eq!(
            r.register(t0, &req(2, Some(300), one("sip:a@h", Some(5)))),
            Err(RegisterError::IntervalTooBrief(60))
        );
        assert_eq!(r.lookup(t0, "sip:alice@example.com")[0].expires, 3600);
    }

    #[test]
    fn zero_removes_and_star_removes_all() {
        let t0 = origin();
        let mut r = Registrar::new(B);
        r.register(t0, &req(1, None, one("sip:a@h", None))).unwrap();
        r.register(t0, &req(2, None, one("sip:b@h", None))).unwrap();
        let got = r
            .register(t0, &req(3, None, one("sip:a@h", Some(0))))
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            r.register(t0, &req(4, Some(10), Contacts::Star)),
            Err(RegisterError::BadStar)
        );
        assert_eq!(
            r.register(t0, &req(4, None, Contacts::Star)),
            Err(RegisterError::BadStar)
        );
        assert!(r
            .register(t0, &req(5, Some(0), Contacts::Star))
            .unwrap()
            .is_empty());
        assert_eq!(r.aor_count(), 0);
    }

    #[test]
    fn out_of_order_cseq_is_refused() {
        let t0 = origin();
        let mut r = Registrar::new(B);
        r.register(t0, &req(5, None, one("sip:a@h", None))).unwrap();
        assert_eq!(
            r.register(t0, &req(5, None, one("sip:a@h", None))),
            Err(RegisterError::OutOfOrder)
        );
        assert_eq!(RegisterError::OutOfOrder.status(), 500);
    }

    #[test]
    fn query_lists_without_change() {
        let t0 = origin();
        let mut r = Registrar::new(B);
        assert!(r
            .register(t0, &req(1, None, Contacts::Query))
            .unwrap()
            .is_empty());
        r.register(t0, &req(2, None, one("sip:a@h", None))).unwrap();
        assert_eq!(
            r.register(t0, &req(3, None, Contacts::Query))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bindings_per_aor_are_bounded() {
        let t0 = origin();
        let mut r = Registrar::new(B);
        let many = Contacts::List(
            (0..=MAX_BINDINGS_PER_AOR)
                .map(|i| ContactRequest {
                    uri: format!("sip:u{i}@h"),
                    expires: None,
                })
                .collect(),
        );
        assert_eq!(
            r.register(t0, &req(1, None, many)),
            Err(RegisterError::TooMany)
        );
        assert_eq!(r.aor_count(), 0);
    }

    #[test]
    fn contact_header_parsing() {
        let c = parse_contacts([
            "\"Al, ice\" <sip:a@h;transport=tcp>;expires=60, sip:b@h;expires=7",
            "<sip:c@h>;q=0.5;expires=bogus",
        ])
        .unwrap();
        assert_eq!(
            c,
            Contacts::List(vec![
                ContactRequest {
                    uri: "sip:a@h;transport=tcp".into(),
                    expires: Some(60)
                },
                ContactRequest {
                    uri: "sip:b@h".into(),
                    expires: Some(7)
                },
                ContactRequest {
                    uri: "sip:c@h".into(),
                    expires: None
                },
            ])
        );
        assert_eq!(parse_contacts([" * "]), Some(Contacts::Star));
        assert_eq!(parse_contacts(std::iter::empty()), Some(Contacts::Query));
        assert_eq!(parse_contacts(["<sip:a@h"]), None);
        assert_eq!(parse_contacts(["sip:a@h,,sip:b@h"]), None);
        assert_eq!(parse_contacts(["sip:a@h, *"]), None);
    }
}
