//! SIP message helpers of the service (UAS side of RFC 3261 sections 8.2 and 12): responses
//! from a [`Reject`], the UAS dialog state kept per session/subscription, and in-dialog
//! requests (NOTIFY, BYE) built from it (section 12.2.1.1). Pure functions over codec types.

use std::net::SocketAddr;

use crate::sip::transaction::Transport;
use crate::sip::{HeaderName, Method, Request, Response, StatusCode, Uri};

use super::rules::Reject;

/// `Server` / `User-Agent` header value.
pub const AGENT: &str = concat!("iptv-as/", env!("CARGO_PKG_VERSION"));

/// Identifies a dialog at the UAS: Call-ID, the UAC's tag, our tag (section 12).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogKey {
    /// Call-ID.
    pub call_id: String,
    /// The peer's tag (From tag of its requests).
    pub remote_tag: String,
    /// Our tag (To tag of its requests).
    pub local_tag: String,
}

/// What the AS keeps of a dialog it accepted, to send requests within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDialog {
    /// The dialog's id.
    pub key: DialogKey,
    /// The peer's From header value (with its tag): our To.
    pub remote: String,
    /// The peer's To header value without tag: our From (our tag is added).
    pub local: String,
    /// The peer's Contact URI (remote target, section 12.1.1).
    pub remote_target: String,
    /// Record-Route values in order: the route set of the UAS (section 12.1.1).
    pub route_set: Vec<String>,
    /// Where requests go: the address the peer's requests came from (its transport flow).
    pub dest: SocketAddr,
    /// Transport the peer used.
    pub transport: Transport,
    /// Our CSeq (incremented before each request we send).
    pub local_cseq: u32,
}

impl PeerDialog {
    /// Dialog state from a dialog-creating request (INVITE, SUBSCRIBE) we answer with a 2xx
    /// carrying `local_tag`. `Err` when the request has no Contact or From tag (400).
    pub fn from_request(
        req: &Request,
        source: SocketAddr,
        transport: Transport,
        local_tag: &str,
    ) -> Result<Self, Reject> {
        let call_id = req
            .headers
            .get(&HeaderName::CALL_ID)
            .ok_or_else(|| Reject::new(400, "Missing Call-ID"))?;
        let from = req
            .headers
            .get(&HeaderName::FROM)
            .ok_or_else(|| Reject::new(400, "Missing From"))?;
        let to = req
            .headers
            .get(&HeaderName::TO)
            .ok_or_else(|| Reject::new(400, "Missing To"))?;
        let from_na = req.from().map_err(|_| Reject::new(400, "Bad From"))?;
        let remote_tag = from_na
            .tag()
            .ok_or_else(|| Reject::new(400, "Missing From tag"))?
            .to_owned();
        let contact = req
            .contact()
            .map_err(|_| Reject::new(400, "Bad Contact"))?
            .ok_or_else(|| Reject::new(400, "Missing Contact"))?;
        Ok(Self {
            key: DialogKey {
                call_id: call_id.to_owned(),
                remote_tag,
                local_tag: local_tag.to_owned(),
            },
            remote: from.to_owned(),
            local: to.to_owned(),
            remote_target: contact.uri.to_string(),
            route_set: req
                .headers
                .get_all(&HeaderName::RECORD_ROUTE)
                .map(str::to_owned)
                .collect(),
            dest: source,
            transport,
            local_cseq: 0,
        })
    }

    /// A request within the dialog (section 12.2.1.1): Request-URI the remote target, To the
    /// peer with its tag, From us with our tag, the dialog's Call-ID, the next CSeq, Route the
    /// route set, Max-Forwards 70, our Contact. The endpoint adds the Via.
    pub fn request(&mut self, method: Method, contact: &str) -> Request {
        self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
        let uri = Uri::parse(&self.remote_target)
            .unwrap_or_else(|_| Uri::sip(None, crate::sip::Host::Domain("invalid".into())));
        let mut r = Request::new(method.clone(), uri);
        let h = &mut r.headers;
        h.push(HeaderName::MAX_FORWARDS, "70");
        h.push(
            HeaderName::FROM,
            format!("{};tag={}", self.local, self.key.local_tag),
        );
        h.push(HeaderName::TO, self.remote.clone());
        h.push(HeaderName::CALL_ID, self.key.call_id.clone());
        h.push(
            HeaderName::CSEQ,
            format!("{} {}", self.local_cseq, method.as_str()),
        );
        for route in &self.route_set {
            h.push(HeaderName::ROUTE, route.clone());
        }
        h.push(HeaderName::CONTACT, contact.to_owned());
        h.push(HeaderName::USER_AGENT, AGENT);
        r
    }
}

/// Response to `req` with `status`/`reason`, our To tag added when given (section 8.2.6).
pub fn response(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut resp = Response::for_request(req, StatusCode(status), reason);
    if let Some(tag) = to_tag {
        let has_tag = req.to().ok().is_some_and(|t| t.tag().is_some());
        if !has_tag {
            resp = resp.with_to_tag(tag);
        }
    }
    resp.headers.push(HeaderName::SERVER, AGENT);
    resp
}

/// The response for a [`Reject`].
pub fn reject(req: &Request, r: &Reject, to_tag: Option<&str>) -> Response {
    let mut resp = response(req, r.status, &r.reason, to_tag);
    for (name, value) in &r.headers {
        resp.headers.push(HeaderName::new(name), value.clone());
    }
    resp
}

/// Address-of-record of a URI: `scheme:user@host[:port]`, parameters dropped
/// (RFC 3261 section 10.3 step 5, canonical form).
pub fn aor(uri: &Uri) -> String {
    let mut u = Uri::sip(uri.user.as_deref(), uri.host.clone());
    u.scheme = uri.scheme.clone();
    u.port = uri.port;
    u.to_string().to_ascii_lowercase()
}
