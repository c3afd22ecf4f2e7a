//! SIP message helpers of the service (UAS side of RFC 3261 sections 8.2 and 12): responses
//! from a [`Reject`], and [`PeerDialog`], the [`sip::dialog`](crate::sip::dialog) state the
//! service keeps per session and subscription with the flow to send its in-dialog requests
//! (NOTIFY, BYE) on. Pure functions over codec types.

use std::net::SocketAddr;

use crate::sip::dialog::{self, ConfirmedDialog, Dialog, DialogError, DialogId};
use crate::sip::transaction::Transport;
use crate::sip::{HeaderName, Request, Response, Scheme, StatusCode, Uri};

use super::rules::Reject;

/// `Server` / `User-Agent` header value.
pub const AGENT: &str = concat!("iptv-as/", env!("CARGO_PKG_VERSION"));

/// A dialog the AS accepted as UAS: the [`sip::dialog`](crate::sip::dialog) state (Call-ID,
/// tags, CSeq numbers, remote target, route set; RFC 3261 section 12.1.1) and the flow the
/// peer's requests came on. In-dialog requests (BYE, NOTIFY) are built by the dialog
/// (section 12.2.1.1) and sent back on that flow (the source address and transport of the
/// dialog-creating request), which also reaches a UE behind a NAT or a load balancer that
/// does not record-route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDialog {
    /// The dialog (confirmed: the AS sent, or is sending, the 2xx).
    pub dialog: ConfirmedDialog,
    /// Where requests go: the address the peer's requests came from.
    pub dest: SocketAddr,
    /// Transport the peer used.
    pub transport: Transport,
}

impl PeerDialog {
    /// The dialog a 2xx with our tag `local_tag` and `Contact: contact` to the dialog-creating
    /// request `req` (INVITE, SUBSCRIBE) sets up (RFC 3261 section 12.1.1). `Err` (a 400)
    /// when the request lacks what a dialog needs (From tag, Contact, Call-ID, CSeq).
    pub fn accept(
        req: &Request,
        source: SocketAddr,
        transport: Transport,
        local_tag: &str,
        contact: &str,
    ) -> Result<Self, Reject> {
        let ok = dialog::uas_response(req, StatusCode::OK, "OK", local_tag, contact);
        //= RFC 3261 12.1.1: the dialog is secure for a sips Request-URI over TLS.
        let secure = req.uri.scheme == Scheme::Sips && transport == Transport::Tls;
        match Dialog::uas(req, &ok, secure) {
            Ok(Dialog::Confirmed(dialog)) => Ok(Self {
                dialog,
                dest: source,
                transport,
            }),
            Ok(_) => Err(Reject::new(500, "Server Internal Error")),
            Err(DialogError::Missing(what)) => Err(Reject::new(400, format!("Missing {what}"))),
            Err(e) => Err(Reject::new(400, e.to_string())),
        }
    }

    /// The dialog's id.
    pub fn id(&self) -> &DialogId {
        &self.dialog.core.id
    }

    /// Our BYE ending the dialog (RFC 3261 section 15.1.1).
    pub fn bye(self) -> (Request, SocketAddr, Transport) {
        let (bye, _ended) = self.dialog.bye();
        (bye, self.dest, self.transport)
    }
}

/// The answer to an in-dialog request the dialog refuses (RFC 3261 section 12.2.2): `481`
/// when it is not ours, `500` for a CSeq out of order, `400` when it lacks a CSeq.
pub fn dialog_reject(e: &DialogError) -> Reject {
    match e {
        DialogError::OutOfOrder { .. } => Reject::new(500, "CSeq Out of Order"),
        DialogError::Missing(what) => Reject::new(400, format!("Missing {what}")),
        _ => Reject::new(481, "Call/Transaction Does Not Exist"),
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
