//! SIP dialogs (RFC 3261 section 12), sans-IO.
//!
//! A dialog is the peer-to-peer relationship an INVITE (or a SUBSCRIBE, RFC 6665) sets up.
//! Its state is an enum of structs ([`Dialog`]: [`EarlyDialog`], [`ConfirmedDialog`],
//! [`TerminatedDialog`]); moving between them consumes the old state, so an early dialog
//! cannot build a BYE and a terminated one cannot build anything. [`DialogCore`] holds the
//! section 12.1 state (Call-ID, tags, CSeq numbers, remote target, route set) and builds
//! in-dialog requests (12.2.1.1): BYE from the UAS side, NOTIFY in a subscription dialog,
//! re-INVITE. Incoming in-dialog requests are checked with [`DialogCore::on_request`]
//! (12.2.2: CSeq order, target refresh). [`DialogId::of_incoming`] finds the dialog of a
//! request (Call-ID + tags).
//!
//! The transaction layer does not know dialogs: the TU (the service) keeps them, fed by the
//! requests the endpoint hands it. Via is added by the endpoint when it sends.

use std::net::{IpAddr, SocketAddr};

use crate::sip::transaction::Transport;
use crate::sip::{HeaderName, Host, Method, Request, Response, Scheme, StatusCode, Uri};

/// Errors of dialog handling (peer misbehaviour or caller misuse).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DialogError {
    /// The message lacks what a dialog needs (To tag, From tag, Contact, CSeq, Call-ID).
    #[error("cannot make a dialog: {0}")]
    Missing(&'static str),
    /// The response cannot create a dialog (100, or not 1xx/2xx).
    #[error("status {0} does not create a dialog")]
    NotDialogCreating(u16),
    /// The request belongs to another dialog.
    #[error("request does not belong to this dialog")]
    WrongDialog,
    /// CSeq lower than (or equal to) the last one from the peer (12.2.2: answer 500).
    #[error("CSeq {got} out of order (last {last})")]
    OutOfOrder {
        /// CSeq of the request.
        got: u32,
        /// Last CSeq seen from the peer.
        last: u32,
    },
}

/// Identifies a dialog (RFC 3261 12): Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming request belongs to (RFC 3261 12.2.2): local tag = To tag,
    /// remote tag = From tag. `None` when the request has no To tag (out of dialog).
    #[must_use]
    pub fn of_incoming(request: &Request) -> Option<Self> {
        Some(DialogId {
            call_id: request.call_id().ok()?.to_owned(),
            local_tag: request.to().ok()?.tag()?.to_owned(),
            remote_tag: request.from().ok()?.tag()?.to_owned(),
        })
    }

    /// The dialog a response to one of our requests belongs to (local = From tag,
    /// remote = To tag).
    #[must_use]
    pub fn of_response(response: &Response) -> Option<Self> {
        Some(DialogId {
            call_id: response.call_id().ok()?.to_owned(),
            local_tag: response.from().ok()?.tag()?.to_owned(),
            remote_tag: response.to().ok()?.tag()?.to_owned(),
        })
    }
}

/// A fresh random tag (RFC 3261 19.3: at least 32 bits of randomness).
#[must_use]
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The dialog state of RFC 3261 12.1, shared by early and confirmed dialogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogCore {
    /// Call-ID and tags.
    pub id: DialogId,
    /// Our From/To value (URI and display name) with our tag, as used in our requests' From.
    pub local_party: String,
    /// The peer's value with its tag, as used in our requests' To.
    pub remote_party: String,
    /// Last CSeq we used (`None`: empty, 12.1.1).
    pub local_seq: Option<u32>,
    /// Last CSeq the peer used.
    pub remote_seq: Option<u32>,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: Uri,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<String>,
    /// Our Contact value, put on target refresh requests (re-INVITE, NOTIFY, UPDATE).
    pub local_contact: Option<String>,
    /// The dialog is secure (sips Request-URI over TLS, 12.1.1).
    pub secure: bool,
}

impl DialogCore {
    /// UAS side (RFC 3261 12.1.1): from the dialog-creating request and our response (which
    /// carries our To tag and Contact).
    pub fn uas(request: &Request, response: &Response, secure: bool) -> Result<Self, DialogError> {
        let Creating {
            call_id,
            from_tag: remote_tag,
            to_tag: local_tag,
            seq,
        } = Creating::of(request, response)?;
        let remote_target = request
            .contact()
            .ok()
            .flatten()
            .map(|c| c.uri)
            .ok_or(DialogError::Missing("Contact"))?;
        Ok(DialogCore {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            local_party: response
                .headers
                .get(&HeaderName::TO)
                .ok_or(DialogError::Missing("To"))?
                .to_owned(),
            remote_party: request
                .headers
                .get(&HeaderName::FROM)
                .ok_or(DialogError::Missing("From"))?
                .to_owned(),
            local_seq: None,
            remote_seq: Some(seq),
            remote_target,
            //= RFC 3261 12.1.1: the route set is the Record-Route list, in order.
            route_set: request
                .headers
                .get_all(&HeaderName::RECORD_ROUTE)
                .map(str::to_owned)
                .collect(),
            local_contact: response
                .headers
                .get(&HeaderName::CONTACT)
                .map(str::to_owned),
            secure,
        })
    }

    /// UAC side (RFC 3261 12.1.2): from our request and the peer's 1xx/2xx with a To tag.
    pub fn uac(request: &Request, response: &Response, secure: bool) -> Result<Self, DialogError> {
        let Creating {
            call_id,
            from_tag: local_tag,
            to_tag: remote_tag,
            seq,
        } = Creating::of(request, response)?;
        let remote_target = response
            .contact()
            .ok()
            .flatten()
            .map(|c| c.uri)
            .ok_or(DialogError::Missing("Contact"))?;
        let mut route_set: Vec<String> = response
            .headers
            .get_all(&HeaderName::RECORD_ROUTE)
            .map(str::to_owned)
            .collect();
        //= RFC 3261 12.1.2: UAC route set is the Record-Route list reversed.
        route_set.reverse();
        Ok(DialogCore {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            local_party: request
                .headers
                .get(&HeaderName::FROM)
                .ok_or(DialogError::Missing("From"))?
                .to_owned(),
            remote_party: response
                .headers
                .get(&HeaderName::TO)
                .ok_or(DialogError::Missing("To"))?
                .to_owned(),
            local_seq: Some(seq),
            remote_seq: None,
            remote_target,
            route_set,
            local_contact: request.headers.get(&HeaderName::CONTACT).map(str::to_owned),
            secure,
        })
    }

    /// The next hop of an in-dialog request (RFC 3261 12.2.1.1 with 8.1.2): the first route
    /// when there is a route set, else the remote target; `None` when that host is not an IP
    /// literal.
    #[must_use]
    pub fn next_hop(&self) -> Option<(SocketAddr, Transport)> {
        match self.route_set.first() {
            Some(r) => uri_destination(&route_uri(r)?),
            None => uri_destination(&self.remote_target),
        }
    }

    /// Whether `request` belongs to this dialog (Call-ID and both tags, 12.2.2).
    #[must_use]
    pub fn matches(&self, request: &Request) -> bool {
        DialogId::of_incoming(request).as_ref() == Some(&self.id)
    }

    /// An in-dialog request from the peer (RFC 3261 12.2.2): checks the CSeq order
    /// (lower -> the TU answers 500) and takes the new remote target of a target refresh
    /// request (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY). ACK and CANCEL carry the CSeq of
    /// their INVITE and are not ordered.
    pub fn on_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if !self.matches(request) {
            return Err(DialogError::WrongDialog);
        }
        let seq = request
            .cseq()
            .map_err(|_| DialogError::Missing("CSeq"))?
            .seq;
        if request.method != Method::ACK && request.method != Method::CANCEL {
            if let Some(last) = self.remote_seq {
                if seq <= last {
                    return Err(DialogError::OutOfOrder { got: seq, last });
                }
            }
            self.remote_seq = Some(seq);
        }
        if is_target_refresh(&request.method) {
            if let Some(contact) = request.contact().ok().flatten() {
                self.remote_target = contact.uri;
            }
        }
        Ok(())
    }

    /// Builds an in-dialog request (RFC 3261 12.2.1.1): Request-URI and Route from the
    /// remote target and route set (loose or strict routing), To/From/Call-ID from the
    /// dialog, CSeq = local sequence + 1, Max-Forwards 70, our Contact on target refresh
    /// requests. The endpoint adds the Via when it sends it.
    pub fn new_request(&mut self, method: Method) -> Request {
        //= RFC 3261 12.2.1.1 / 8.1.1.5: an empty local sequence starts at an arbitrary value.
        let seq = self.local_seq.map_or(1, |s| s.wrapping_add(1));
        self.local_seq = Some(seq);
        let first_route_uri = self.route_set.first().and_then(|r| route_uri(r));
        let strict = first_route_uri.as_ref().is_some_and(|u| !u.has_param("lr"));
        let (request_uri, routes): (Uri, Vec<String>) = match first_route_uri {
            Some(first) if strict => {
                //= RFC 3261 12.2.1.1: strict routing: the first route becomes the
                //= Request-URI (without headers), the remote target goes last.
                let mut uri = first;
                uri.headers.clear();
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                (uri, routes)
            }
            _ => (self.remote_target.clone(), self.route_set.clone()),
        };
        let mut req = Request::new(method.clone(), request_uri);
        req.headers.push(HeaderName::MAX_FORWARDS, "70");
        for r in routes {
            req.headers.push(HeaderName::ROUTE, r);
        }
        req.headers.push(HeaderName::FROM, self.local_party.clone());
        req.headers.push(HeaderName::TO, self.remote_party.clone());
        req.headers
            .push(HeaderName::CALL_ID, self.id.call_id.clone());
        req.headers
            .push(HeaderName::CSEQ, format!("{seq} {}", method.as_str()));
        if is_target_refresh(&method) {
            if let Some(c) = &self.local_contact {
                req.headers.push(HeaderName::CONTACT, c.clone());
            }
        }
        req
    }
}

/// What both sides read from a dialog-creating request and its response (RFC 3261 12.1.1 and
/// 12.1.2): the Call-ID and CSeq of the request, the From tag of the request, the To tag the
/// response added.
struct Creating {
    call_id: String,
    from_tag: String,
    to_tag: String,
    seq: u32,
}

impl Creating {
    fn of(request: &Request, response: &Response) -> Result<Self, DialogError> {
        Ok(Creating {
            to_tag: response
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_owned))
                .ok_or(DialogError::Missing("To tag on the response"))?,
            from_tag: request
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_owned))
                .ok_or(DialogError::Missing("From tag"))?,
            call_id: request
                .call_id()
                .map_err(|_| DialogError::Missing("Call-ID"))?
                .to_owned(),
            seq: request
                .cseq()
                .map_err(|_| DialogError::Missing("CSeq"))?
                .seq,
        })
    }
}

/// Where a request to `uri` goes when its host is an IP literal (RFC 3263 resolution of
/// host names is not done here): the address (port from the URI, else 5060 / 5061 for TLS)
/// and the transport (`;transport=` parameter, `sips:` meaning TLS, else UDP).
#[must_use]
pub fn uri_destination(uri: &Uri) -> Option<(SocketAddr, Transport)> {
    let ip: IpAddr = match &uri.host {
        Host::Ipv4(a) => (*a).into(),
        Host::Ipv6(a) => (*a).into(),
        Host::Domain(d) => d.parse().ok()?,
    };
    let transport = match uri.param("transport").flatten() {
        _ if uri.scheme == Scheme::Sips => Transport::Tls,
        Some(t) => Transport::from_via_token(t)?,
        None => Transport::Udp,
    };
    let port = uri.port.unwrap_or(transport.default_port());
    Some((SocketAddr::new(ip, port), transport))
}

/// Target refresh requests (RFC 3261 12.2, RFC 3311, RFC 6665 4.1.2.4 / 4.2.1.2).
fn is_target_refresh(method: &Method) -> bool {
    *method == Method::INVITE
        || *method == Method::UPDATE
        || *method == Method::SUBSCRIBE
        || *method == Method::NOTIFY
}

/// The URI inside a Route/Record-Route value (`<sip:p.example;lr>` or a bare URI).
fn route_uri(value: &str) -> Option<Uri> {
    let inner = match (value.find('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next()?.trim(),
    };
    Uri::parse(inner).ok()
}

/// Early dialog: created by a 101-199 with a To tag (RFC 3261 12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyDialog {
    /// Dialog state.
    pub core: DialogCore,
}

/// Confirmed dialog: created or confirmed by a 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedDialog {
    /// Dialog state.
    pub core: DialogCore,
}

/// Why a dialog ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationReason {
    /// A BYE (ours or the peer's).
    Bye,
    /// An early dialog ended by a non-2xx final response (12.3) or a CANCEL.
    Rejected(u16),
    /// The 2xx was never ACKed (RFC 3261 13.3.1.4).
    AckTimeout,
    /// A request in the dialog timed out or got 481 (12.2.1.2).
    Failed,
    /// A subscription dialog ended (RFC 6665).
    SubscriptionEnded,
}

/// An ended dialog: nothing can be sent in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminatedDialog {
    /// The dialog that ended.
    pub id: DialogId,
    /// Why.
    pub reason: TerminationReason,
}

impl EarlyDialog {
    /// The 2xx arrived (or was sent): the dialog is confirmed; a UAC takes the 2xx's
    /// Contact as the remote target (12.1.2).
    #[must_use]
    pub fn confirm(mut self, response: Option<&Response>) -> ConfirmedDialog {
        if let Some(contact) = response.and_then(|r| r.contact().ok().flatten()) {
            self.core.remote_target = contact.uri;
        }
        ConfirmedDialog { core: self.core }
    }

    /// A non-2xx final response ends the early dialog (RFC 3261 12.3).
    #[must_use]
    pub fn terminate(self, status: StatusCode) -> TerminatedDialog {
        TerminatedDialog {
            id: self.core.id,
            reason: TerminationReason::Rejected(status.0),
        }
    }
}

impl ConfirmedDialog {
    /// A BYE from our side (RFC 3261 15.1.1): the request to send and the ended dialog.
    #[must_use]
    pub fn bye(mut self) -> (Request, TerminatedDialog) {
        let bye = self.core.new_request(Method::BYE);
        (
            bye,
            TerminatedDialog {
                id: self.core.id,
                reason: TerminationReason::Bye,
            },
        )
    }

    /// The peer's BYE (RFC 3261 15.1.2): checks it belongs here (CSeq order included); on
    /// success the dialog ends (the TU answers 200), on error it stays as it was (the TU
    /// answers 481 or 500).
    pub fn on_bye(self, bye: &Request) -> Result<TerminatedDialog, Box<(Self, DialogError)>> {
        let mut probe = self.core.clone();
        match probe.on_request(bye) {
            Ok(()) => Ok(TerminatedDialog {
                id: probe.id,
                reason: TerminationReason::Bye,
            }),
            Err(e) => Err(Box::new((self, e))),
        }
    }

    /// A NOTIFY in a subscription dialog (RFC 6665 4.2.2): Event, Subscription-State and
    /// the body with its Content-Type.
    pub fn notify(
        &mut self,
        event: &str,
        subscription_state: &str,
        content_type: &str,
        body: impl Into<bytes::Bytes>,
    ) -> Request {
        let mut req = self.core.new_request(Method::NOTIFY);
        req.headers.push(HeaderName::EVENT, event);
        req.headers
            .push(HeaderName::SUBSCRIPTION_STATE, subscription_state);
        let body = body.into();
        if !body.is_empty() {
            req.headers.push(HeaderName::CONTENT_TYPE, content_type);
        }
        req.body = body;
        req
    }

    /// A re-INVITE (RFC 3261 14.1) with an SDP offer.
    pub fn reinvite(&mut self, sdp: impl Into<bytes::Bytes>) -> Request {
        let mut req = self.core.new_request(Method::INVITE);
        req.headers
            .push(HeaderName::CONTENT_TYPE, "application/sdp");
        req.body = sdp.into();
        req
    }

    /// The ACK for a 2xx to our INVITE with CSeq `invite_seq` (RFC 3261 13.2.2.4): same
    /// CSeq number, method ACK; a new transaction-less request.
    #[must_use]
    pub fn ack(&self, invite_seq: u32) -> Request {
        let mut core = self.core.clone();
        core.local_seq = Some(invite_seq.wrapping_sub(1));
        let mut ack = core.new_request(Method::ACK);
        ack.headers
            .set(HeaderName::CSEQ, format!("{invite_seq} ACK"));
        ack
    }
}

/// A dialog in one of its states (RFC 3261 12; sequencing in types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// Early (1xx with tag).
    Early(EarlyDialog),
    /// Confirmed (2xx).
    Confirmed(ConfirmedDialog),
    /// Ended.
    Terminated(TerminatedDialog),
}

impl Dialog {
    /// UAS dialog creation (RFC 3261 12.1.1) from the INVITE (or SUBSCRIBE) and our response
    /// with a To tag: early for 101-199, confirmed for 2xx.
    pub fn uas(request: &Request, response: &Response, secure: bool) -> Result<Self, DialogError> {
        let core = DialogCore::uas(request, response, secure)?;
        Self::from_status(core, response.status)
    }

    /// UAC dialog creation (RFC 3261 12.1.2) from our request and the peer's response.
    pub fn uac(request: &Request, response: &Response, secure: bool) -> Result<Self, DialogError> {
        let core = DialogCore::uac(request, response, secure)?;
        Self::from_status(core, response.status)
    }

    fn from_status(core: DialogCore, status: StatusCode) -> Result<Self, DialogError> {
        match status.0 {
            101..=199 => Ok(Dialog::Early(EarlyDialog { core })),
            200..=299 => Ok(Dialog::Confirmed(ConfirmedDialog { core })),
            s => Err(DialogError::NotDialogCreating(s)),
        }
    }

    /// The dialog's id.
    #[must_use]
    pub fn id(&self) -> &DialogId {
        match self {
            Dialog::Early(d) => &d.core.id,
            Dialog::Confirmed(d) => &d.core.id,
            Dialog::Terminated(d) => &d.id,
        }
    }
}

/// A response to a dialog-creating request with our To tag and Contact (RFC 3261 12.1.1:
/// the UAS adds both), built on [`Response::for_request`].
#[must_use]
pub fn uas_response(
    request: &Request,
    status: StatusCode,
    reason: &str,
    local_tag: &str,
    contact: &str,
) -> Response {
    let mut resp = Response::for_request(request, status, reason).with_to_tag(local_tag);
    //= RFC 3261 12.1.1: Record-Route is copied into 2xx/1xx responses that create dialogs.
    for rr in request.headers.get_all(&HeaderName::RECORD_ROUTE) {
        resp.headers.push(HeaderName::RECORD_ROUTE, rr);
    }
    resp.headers.push(HeaderName::CONTACT, contact);
    resp
}

#[cfg(test)]
mod tests;
