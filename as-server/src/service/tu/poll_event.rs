//! The `iptv-poll` SIP event package (RFC 6665): a channel's owner subscribes to the live vote
//! tallies of the channel and gets a NOTIFY with the tally whenever it changes, rate-limited.
//!
//! Why a subscription: RFC 6086 allows INFO only inside an Info Package negotiated with
//! `Recv-Info`, which the owner's INVITE does not carry, and RFC 6665 section 4 needs a
//! subscription for every NOTIFY; a SUBSCRIBE of its own is the simplest correct way, and it
//! serves any client that wants the tallies (a producer's dashboard), not only the INVITE dialog.
//!
//! * **Package name**: `iptv-poll`. The SUBSCRIBE's Request-URI names the channel
//!   (`SUBSCRIBE sip:<channel>@<as-host>`): `404` for an unknown channel, `403` unless the
//!   subscriber (its From AoR) owns the channel (channels without an owner, the operator's,
//!   are open like `GET /api/polls`). `Accept` must allow `application/json` (else `406`).
//!   `Expires` as for `iptv-channels` (the same bounds; `423` with `Min-Expires` below the
//!   minimum; `Expires: 0` ends it with a final NOTIFY).
//! * **NOTIFY**: at once after the `200`, then whenever the channel's merged tally changes,
//!   at most one per [`MIN_NOTIFY_INTERVAL`] per subscription (changes in between are merged
//!   into the next one), `terminated;reason=timeout` on expiry.
//! * **Body**: `Content-Type: application/json`,
//!   `{"channel": "quiz", "voters": 12, "votes": {"3": {"0": 7, "1": 5}}, "relays": 1}`: poll
//!   id -> option -> each viewer's latest vote, merged over the relays that carry the channel
//!   ([`crate::service::feedback::channel_feedback`]).
//!
//! One task per service (started with the first subscription, ended with the last) checks
//! every [`CHECK_INTERVAL`]; the subscription table is the channel list's sans-IO
//! [`Subscriptions`], keyed by dialog.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::debug;

use super::{now, requested_expires, Service};
use crate::service::channel_list::{NotifyOrder, SubState, Subscriptions};
use crate::service::feedback::channel_feedback;
use crate::service::rules::Reject;
use crate::service::sipmsg::{self, PeerDialog};
use crate::service::TuRequest;
use crate::sip::dialog::DialogId;
use crate::sip::{HeaderName, Response};

/// The event package name.
pub const EVENT: &str = "iptv-poll";
/// The NOTIFY body type.
pub const CONTENT_TYPE: &str = "application/json";
/// Fewest seconds between two NOTIFYs of one subscription (except the first and the last).
pub const MIN_NOTIFY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the tallies are checked for a change.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Is `event` (an `Event` header value) this package?
pub fn is_poll_event(event: &str) -> bool {
    event
        .split(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case(EVENT))
}

fn accepts(accept: &str) -> bool {
    accept.split(',').any(|r| {
        let t = r.split(';').next().unwrap_or("").trim();
        t == "*/*"
            || t.eq_ignore_ascii_case("application/*")
            || t.eq_ignore_ascii_case(CONTENT_TYPE)
    })
}

/// One subscription's dialog and what it was last sent.
#[derive(Debug, Clone)]
pub(super) struct PollDialog {
    peer: PeerDialog,
    channel: String,
    last_body: Option<String>,
    last_sent: Option<Instant>,
}

/// The subscriptions and whether the notifier task runs.
#[derive(Debug)]
pub(super) struct PollSubs {
    table: Subscriptions<DialogId, PollDialog>,
    running: bool,
}

impl PollSubs {
    pub(super) fn new(bounds: crate::config::ExpiryBounds) -> Self {
        PollSubs {
            table: Subscriptions::new(bounds),
            running: false,
        }
    }
}

/// The NOTIFY body.
#[derive(Debug, Serialize)]
struct Body<'a> {
    channel: &'a str,
    voters: u64,
    votes: &'a BTreeMap<u32, BTreeMap<u32, u64>>,
    relays: usize,
}

impl Service {
    fn poll_subs(&self) -> std::sync::MutexGuard<'_, PollSubs> {
        self.inner
            .poll_subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A SUBSCRIBE for `iptv-poll` (see the module docs).
    pub(super) async fn subscribe_poll(&self, tr: &TuRequest) -> Response {
        let req = tr.request();
        if let Some(acc) = req.headers.get(&HeaderName::ACCEPT) {
            if !accepts(acc) {
                let r = Reject::new(406, "Not Acceptable").with("Accept", CONTENT_TYPE);
                return sipmsg::reject(req, &r, Some(&self.tag()));
            }
        }
        let requested = match requested_expires(req) {
            Ok(r) => r,
            Err(rej) => return sipmsg::reject(req, &rej, Some(&self.tag())),
        };
        let existing_tag = req.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let local_tag = existing_tag.clone().unwrap_or_else(|| self.tag());
        let channel = req.uri.user.clone().unwrap_or_default();
        let contact = self.contact_for(&channel);
        let (t, _) = now();
        let result = if existing_tag.is_some() {
            let Some(key) = DialogId::of_incoming(req) else {
                return sipmsg::reject(req, &Reject::new(400, "Missing From tag"), None);
            };
            let mut subs = self.poll_subs();
            let checked = match subs.table.dialog_mut(&key) {
                None => Ok(None),
                Some(d) => d
                    .peer
                    .dialog
                    .core
                    .on_request(req)
                    .map(|()| Some(d.clone()))
                    .map_err(|e| sipmsg::dialog_reject(&e)),
            };
            match checked {
                Err(r) => return sipmsg::reject(req, &r, None),
                Ok(None) => Err(crate::service::channel_list::SubscribeError::NoSuchSubscription),
                Ok(Some(d)) => subs.table.subscribe(t, key, true, requested, d),
            }
        } else {
            let entry = match self.get_channel(&channel).await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    let r = Reject::new(404, "No Such Channel");
                    return sipmsg::reject(req, &r, Some(&local_tag));
                }
                Err(_) => {
                    let r = Reject::new(500, "Catalogue Unavailable");
                    return sipmsg::reject(req, &r, Some(&local_tag));
                }
            };
            if let Some(owner) = &entry.owner {
                let from = req.from().map(|f| sipmsg::aor(&f.uri)).ok();
                if from.as_deref() != Some(owner.as_str()) {
                    let r = Reject::new(403, "Only The Channel Owner");
                    return sipmsg::reject(req, &r, Some(&local_tag));
                }
            }
            let peer =
                match PeerDialog::accept(req, tr.source(), tr.transport(), &local_tag, &contact) {
                    Ok(d) => d,
                    Err(r) => return sipmsg::reject(req, &r, Some(&local_tag)),
                };
            let key = peer.id().clone();
            let d = PollDialog {
                peer,
                channel: entry.id.clone(),
                last_body: None,
                last_sent: None,
            };
            self.poll_subs()
                .table
                .subscribe(t, key, false, requested, d)
        };
        match result {
            Ok((granted, order)) => {
                let mut r = sipmsg::response(req, 200, "OK", Some(&local_tag));
                r.headers.push(HeaderName::EXPIRES, granted.to_string());
                r.headers.push(HeaderName::CONTACT, contact);
                // The first (or last) NOTIFY after the 200 (RFC 6665 section 4.2.1.2).
                let svc = self.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    svc.notify_poll(order, true).await;
                });
                self.start_poll_notifier();
                r
            }
            Err(e) => {
                let mut rej = Reject::new(e.status(), e.to_string());
                if let crate::service::channel_list::SubscribeError::IntervalTooBrief(min) = e {
                    rej =
                        Reject::new(423, "Interval Too Brief").with("Min-Expires", min.to_string());
                }
                sipmsg::reject(req, &rej, Some(&local_tag))
            }
        }
    }

    fn start_poll_notifier(&self) {
        {
            let mut subs = self.poll_subs();
            if subs.running || subs.table.is_empty() {
                return;
            }
            subs.running = true;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_INTERVAL).await;
                let (t, _) = now();
                let (expired, live) = {
                    let mut subs = svc.poll_subs();
                    let expired = subs.table.expire(t);
                    let live = subs.table.changed(t);
                    if live.is_empty() {
                        subs.running = false;
                    }
                    (expired, live)
                };
                for order in expired {
                    svc.notify_poll(order, true).await;
                }
                if live.is_empty() {
                    break;
                }
                for order in live {
                    svc.notify_poll(order, false).await;
                }
            }
        });
    }

    /// Send `order`'s NOTIFY if the tally changed (or always with `force`), within the rate
    /// limit; a terminated state is always sent.
    async fn notify_poll(&self, order: NotifyOrder<DialogId, PollDialog>, force: bool) {
        let terminated = !matches!(order.state, SubState::Active { .. });
        let q = channel_feedback(self.relays(), &order.dialog.channel).await;
        let body = serde_json::to_string(&Body {
            channel: &order.dialog.channel,
            voters: q.summary.voters,
            votes: &q.summary.votes,
            relays: q.relays,
        })
        .unwrap_or_else(|_| "{}".into());
        let (t, _) = now();
        let state = order.state.header_value();
        let build = |d: &mut PollDialog| -> Option<_> {
            let changed = d.last_body.as_deref() != Some(body.as_str());
            let due = d
                .last_sent
                .is_none_or(|s| t.saturating_duration_since(s) >= MIN_NOTIFY_INTERVAL);
            if !(terminated || force || (changed && due)) {
                return None;
            }
            d.last_body = Some(body.clone());
            d.last_sent = Some(t);
            let n = d.peer.dialog.notify(
                EVENT,
                &state,
                CONTENT_TYPE,
                bytes::Bytes::from(body.clone()),
            );
            Some((n, d.peer.dest, d.peer.transport))
        };
        // A stored subscription counts its CSeq up; a terminated one is no longer stored.
        let built = {
            let mut subs = self.poll_subs();
            match subs.table.dialog_mut(&order.key) {
                Some(d) => build(d),
                None if terminated => build(&mut order.dialog.clone()),
                None => None,
            }
        };
        let Some((n, dest, transport)) = built else {
            return;
        };
        let svc = self.clone();
        let key = order.key.clone();
        tokio::spawn(async move {
            match svc.inner.sip.send_request(n, dest, transport).await {
                Ok(resp) if resp.status.0 == 481 || resp.status.0 == 408 => {
                    // RFC 6665 section 4.1.2.1 / 4.2.2: the subscription is gone.
                    svc.poll_subs().table.remove(&key);
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "poll NOTIFY failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_and_accept() {
        assert!(is_poll_event("iptv-poll"));
        assert!(is_poll_event("IPTV-Poll;id=3"));
        assert!(!is_poll_event("iptv-channels"));
        assert!(accepts("application/json"));
        assert!(accepts("text/plain, */*"));
        assert!(!accepts("text/plain"));
    }
}
