//! Request checks above the grammar: what a UAS/TU answers to a request that parsed.
//!
//! Who answers what (RFC 3261, RFC 4475 section 3.3):
//! - **codec** ([`crate::sip::Message::parse`]): grammar, duplicate single-valued headers,
//!   missing Via/From/To/Call-ID/CSeq, CSeq method mismatch, Content-Length rules -> 400
//!   (505 for another SIP version) through [`crate::sip::ParseError::error_response`];
//!   bad responses are dropped.
//! - **this module** ([`validate_request`], run by the UAS core before the TU sees the
//!   request, section 8.2): unsupported Request-URI scheme -> 416 (8.2.2.1), To of a REGISTER
//!   not SIP/SIPS -> 400 (10.3), branch that is a bare magic cookie -> 400 (17.2.3),
//!   unsupported `Require` -> 420 with Unsupported (8.2.2.3), `Proxy-Require` when acting
//!   as a proxy -> 420, Content-Type the TU cannot read -> 415 with Accept (8.2.3), Accept
//!   that excludes the only type we answer with -> 406 (21.4.7), Max-Forwards 0 when
//!   forwarding -> 483 (16.3; a UAS answers OPTIONS itself).
//! - **transaction layer**: responses whose top Via does not match are dropped
//!   (e.g. RFC 4475 3.3.10 broadcast Via, 18.1.2).
//! - **TU** (service): 404, 486, 488... application decisions.

use super::header::HeaderName;
use super::message::{Method, Request, Response, StatusCode};

/// What the local element supports, for [`validate_request`].
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// Option tags the element supports (for `Require`, section 8.2.2.3).
    pub supported: &'a [&'a str],
    /// Body types the element can read (section 8.2.3); empty = any.
    pub accepted_types: &'a [&'a str],
    /// The content type responses with bodies are given in (checked against Accept);
    /// `None` to skip that check.
    pub answer_type: Option<&'a str>,
    /// Whether the element is forwarding the request (proxy: 483 at Max-Forwards 0 and
    /// Proxy-Require checked).
    pub forwarding: bool,
}

impl Default for Policy<'_> {
    fn default() -> Self {
        Policy {
            supported: &[],
            accepted_types: &[
                "application/sdp",
                "text/plain",
                "application/json",
                "multipart/mixed",
                "message/sipfrag",
            ],
            answer_type: Some("application/sdp"),
            forwarding: false,
        }
    }
}

/// Why a request that parsed is refused, and the headers the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status to answer with.
    pub status: StatusCode,
    /// Reason phrase.
    pub reason: &'static str,
    /// Extra headers for the response (Unsupported, Accept...).
    pub headers: Vec<(HeaderName, String)>,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str) -> Self {
        Rejection {
            status,
            reason,
            headers: Vec::new(),
        }
    }

    /// The response to `req` for this rejection.
    #[must_use]
    pub fn response(&self, req: &Request) -> Response {
        let mut r = Response::for_request(req, self.status, self.reason);
        for (n, v) in &self.headers {
            r.headers.push(n.clone(), v.clone());
        }
        r
    }
}

/// Checks a parsed request per the module docs. ACK is never answered, so it is never
/// rejected (section 17.2.3... an ACK gets no response).
pub fn validate_request(req: &Request, policy: &Policy<'_>) -> Result<(), Rejection> {
    if req.method == Method::ACK {
        return Ok(());
    }
    if !req.uri.is_sip() && req.uri.scheme != super::uri::Scheme::Tel {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_URI_SCHEME,
            "Unsupported URI Scheme",
        ));
    }
    if let Ok(via) = req.top_via() {
        if via.branch() == Some(super::typed::MAGIC_COOKIE) {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "Bad Request (branch is only the magic cookie)",
            ));
        }
    }
    if req.method == Method::REGISTER {
        if let Ok(to) = req.to() {
            if !to.uri.is_sip() {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "Bad Request (To of REGISTER is not a SIP URI)",
                ));
            }
        }
    }
    if policy.forwarding && matches!(req.max_forwards(), Ok(Some(0))) {
        return Err(Rejection::new(StatusCode::TOO_MANY_HOPS, "Too Many Hops"));
    }
    let mut unsupported: Vec<&str> = req
        .headers
        .get_all(&HeaderName::REQUIRE)
        .filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if policy.forwarding {
        unsupported.extend(
            req.headers
                .get_all(&HeaderName::PROXY_REQUIRE)
                .filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t))),
        );
    }
    if !unsupported.is_empty() && req.method != Method::CANCEL {
        let mut r = Rejection::new(StatusCode::BAD_EXTENSION, "Bad Extension");
        for t in unsupported {
            r.headers.push((HeaderName::UNSUPPORTED, t.to_owned()));
        }
        return Err(r);
    }
    if !req.body.is_empty() && !policy.accepted_types.is_empty() {
        let ok = policy.accepted_types.iter().any(|t| req.content_type_is(t));
        if !ok {
            let mut r =
                Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
            r.headers
                .push((HeaderName::ACCEPT, policy.accepted_types.join(", ")));
            return Err(r);
        }
    }
    if let Some(answer) = policy.answer_type {
        if req.method == Method::INVITE && req.headers.contains(&HeaderName::ACCEPT) {
            let (ty, _) = answer.split_once('/').unwrap_or((answer, ""));
            let ok = req.headers.get_all(&HeaderName::ACCEPT).any(|a| {
                let base: String = a
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                base.is_empty()
                    || base.eq_ignore_ascii_case(answer)
                    || base == "*/*"
                    || base.eq_ignore_ascii_case(&format!("{ty}/*"))
            });
            if !ok {
                let mut r = Rejection::new(StatusCode::NOT_ACCEPTABLE, "Not Acceptable");
                r.headers.push((
                    HeaderName::WARNING,
                    format!("399 as \"only {answer} answers are possible\""),
                ));
                return Err(r);
            }
        }
    }
    Ok(())
}
