//! The `iptv-channels` SIP event package (RFC 6665) and its subscription table, sans-IO.
//!
//! # Event package `iptv-channels`
//!
//! * **Package name**: `iptv-channels` (the `Event` header of SUBSCRIBE and NOTIFY). Any other
//!   event gets `489 Bad Event` with `Allow-Events: iptv-channels` (RFC 6665 section 8.3.2).
//! * **SUBSCRIBE**: `SUBSCRIBE sip:<anything>@<as-host>` (the AS does not look at the user
//!   part) with `Event: iptv-channels` and optionally `Accept:
//!   application/vnd.iptv.channels+json` (any other Accept without `*/*` gets 406). No body.
//!   `Expires` is granted within the configured bounds (default 600 s, max 3600 s, below the
//!   minimum `423` with `Min-Expires`); the `200 OK` carries the granted `Expires` and a
//!   Contact. `Expires: 0` ends the subscription (a final NOTIFY with `terminated`).
//! * **NOTIFY**: sent at once after the 200 and again on every change of the list (a channel
//!   created, e.g. a personal channel, or deleted). Each NOTIFY carries the **full list** (no
//!   partial state), `Subscription-State: active;expires=<seconds left>`, or
//!   `terminated;reason=timeout` when the subscription expired, `terminated;reason=noresource`
//!   on shutdown... (RFC 6665 section 4.1.3).
//! * **Body**: `Content-Type: application/vnd.iptv.channels+json`, a JSON array of
//!   `{"id": "news", "name": "News", "kind": "producer"|"personal"|"personalized",
//!   "owner": null|"sip:alice@...", "created_ms": 1700000000000}` (milliseconds since the Unix
//!   epoch), ordered by `id`. The same array is served at `GET /api/channels`.
//!
//! The core here tracks subscriptions by dialog with absolute expiry; the service builds the
//! NOTIFY requests from the [`NotifyOrder`]s it returns.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ExpiryBounds;

/// The event package name (`Event:` header value).
pub const EVENT: &str = "iptv-channels";
/// The NOTIFY body media type.
pub const CONTENT_TYPE: &str = "application/vnd.iptv.channels+json";
/// Most concurrent subscriptions; more get 503.
pub const MAX_SUBSCRIPTIONS: usize = 100_000;

/// One channel as listed in the NOTIFY body and at `GET /api/channels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEntry {
    /// Channel id: `sip:<id>@<as-host>` joins it.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// `producer`, `personal` or `personalized`.
    pub kind: String,
    /// AoR of the owner (personal channels), else null.
    pub owner: Option<String>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

/// Encodes the NOTIFY body: the full list, sorted by id.
pub fn encode_body(list: &[ChannelEntry]) -> Vec<u8> {
    let mut sorted: Vec<&ChannelEntry> = list.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    serde_json::to_vec(&sorted).unwrap_or_else(|_| b"[]".to_vec())
}

/// Is `event` (an `Event` header value, possibly with `;id=` params) our package?
pub fn is_our_event(event: &str) -> bool {
    event
        .split(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case(EVENT))
}

/// Does an `Accept` header value allow our body type (`*/*`, `application/*` or exact)?
pub fn accepts(accept: &str) -> bool {
    accept.split(',').any(|r| {
        let t = r.split(';').next().unwrap_or("").trim();
        t == "*/*"
            || t.eq_ignore_ascii_case("application/*")
            || t.eq_ignore_ascii_case(CONTENT_TYPE)
    })
}

/// The `Subscription-State` of one NOTIFY (RFC 6665 section 4.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// `active;expires=N`.
    Active {
        /// Seconds left.
        expires: u32,
    },
    /// `terminated;reason=timeout` (expired or `Expires: 0`).
    TerminatedTimeout,
    /// `terminated;reason=noresource` (the AS shuts down).
    TerminatedNoResource,
}

impl SubState {
    /// The header value.
    pub fn header_value(&self) -> String {
        match self {
            Self::Active { expires } => format!("active;expires={expires}"),
            Self::TerminatedTimeout => "terminated;reason=timeout".into(),
            Self::TerminatedNoResource => "terminated;reason=noresource".into(),
        }
    }
}

/// "Send a NOTIFY with the full list on this subscription."
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct NotifyOrder<K, D> {
    /// Subscription key (the dialog).
    pub key: K,
    /// What the service needs to send within the dialog.
    pub dialog: D,
    /// Subscription-State to send.
    pub state: SubState,
}

/// Why a SUBSCRIBE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// 423 Interval Too Brief, with `Min-Expires`.
    #[error("Interval Too Brief (min {0} s)")]
    IntervalTooBrief(u32),
    /// 503: too many subscriptions.
    #[error("too many subscriptions")]
    TooMany,
    /// 481: a refresh for a subscription we do not have.
    #[error("Subscription Does Not Exist")]
    NoSuchSubscription,
}

impl SubscribeError {
    /// Response code.
    pub fn status(&self) -> u16 {
        match self {
            Self::IntervalTooBrief(_) => 423,
            Self::TooMany => 503,
            Self::NoSuchSubscription => 481,
        }
    }
}

#[derive(Debug, Clone)]
struct Sub<D> {
    dialog: D,
    expires_at: Instant,
}

/// The subscriptions to the channel list, keyed by dialog `K`, each holding the service's
/// dialog state `D` (what it needs to send a NOTIFY).
#[derive(Debug)]
pub struct Subscriptions<K, D> {
    bounds: ExpiryBounds,
    subs: HashMap<K, Sub<D>>,
}

impl<K: Eq + Hash + Clone, D: Clone> Subscriptions<K, D> {
    /// An empty table granting expiries within `bounds`.
    pub fn new(bounds: ExpiryBounds) -> Self {
        Self {
            bounds,
            subs: HashMap::new(),
        }
    }

    /// A SUBSCRIBE (initial or refresh, `in_dialog` says which) asking for `requested` seconds.
    /// Returns the granted expiry (for the 200's `Expires`) and the NOTIFY to send at once
    /// (RFC 6665 section 4.2.1.2: active with the time left, or terminated for `Expires: 0`).
    pub fn subscribe(
        &mut self,
        now: Instant,
        key: K,
        in_dialog: bool,
        requested: Option<u32>,
        dialog: D,
    ) -> Result<(u32, NotifyOrder<K, D>), SubscribeError> {
        let granted = self
            .bounds
            .grant(requested)
            .map_err(SubscribeError::IntervalTooBrief)?;
        let exists = self.subs.contains_key(&key);
        if in_dialog && !exists {
            return Err(SubscribeError::NoSuchSubscription);
        }
        if granted == 0 {
            let dialog = self.subs.remove(&key).map_or(dialog, |s| s.dialog);
            return Ok((
                0,
                NotifyOrder {
                    key,
                    dialog,
                    state: SubState::TerminatedTimeout,
                },
            ));
        }
        if !exists && self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooMany);
        }
        let expires_at = now + Duration::from_secs(granted.into());
        let sub = self
            .subs
            .entry(key.clone())
            .or_insert(Sub { dialog, expires_at });
        sub.expires_at = expires_at;
        Ok((
            granted,
            NotifyOrder {
                key,
                dialog: sub.dialog.clone(),
                state: SubState::Active { expires: granted },
            },
        ))
    }

    /// The list changed: one NOTIFY per live subscription.
    pub fn changed(&self, now: Instant) -> Vec<NotifyOrder<K, D>> {
        self.subs
            .iter()
            .filter(|(_, s)| s.expires_at > now)
            .map(|(k, s)| NotifyOrder {
                key: k.clone(),
                dialog: s.dialog.clone(),
                state: SubState::Active {
                    expires: ceil_secs(s.expires_at - now),
                },
            })
            .collect()
    }

    /// Removes subscriptions expired at `now`, returning their final NOTIFYs
    /// (`terminated;reason=timeout`).
    pub fn expire(&mut self, now: Instant) -> Vec<NotifyOrder<K, D>> {
        let dead: Vec<K> = self
            .subs
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        dead.into_iter()
            .filter_map(|k| {
                self.subs.remove(&k).map(|s| NotifyOrder {
                    key: k,
                    dialog: s.dialog,
                    state: SubState::TerminatedTimeout,
                })
            })
            .collect()
    }

    /// Drops a subscription without a NOTIFY (the subscriber answered 481, or is gone).
    pub fn remove(&mut self, key: &K) -> bool {
        self.subs.remove(key).is_some()
    }

    /// Ends every subscription (shutdown): `terminated;reason=noresource` for each.
    pub fn terminate_all(&mut self) -> Vec<NotifyOrder<K, D>> {
        self.subs
            .drain()
            .map(|(key, s)| NotifyOrder {
                key,
                dialog: s.dialog,
                state: SubState::TerminatedNoResource,
            })
            .collect()
    }

    /// Earliest expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.subs.values().map(|s| s.expires_at).min()
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// No subscriptions?
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Mutable access to a subscription's dialog state (e.g. to bump its CSeq).
    pub fn dialog_mut(&mut self, key: &K) -> Option<&mut D> {
        self.subs.get_mut(key).map(|s| &mut s.dialog)
    }
}

fn ceil_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: ExpiryBounds = ExpiryBounds {
        min: 60,
        max: 3600,
        default: 600,
    };

    /// Origin of the virtual clock (any instant will do; only differences matter).
    #[expect(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn subscribe_notify_refresh_expire() {
        let t0 = origin();
        let mut s: Subscriptions<&str, u32> = Subscriptions::new(B);
        let (g, n) = s.subscribe(t0, "d1", false, None, 7).unwrap();
        assert_eq!(g, 600);
        assert_eq!(n.state, SubState::Active { expires: 600 });
        assert_eq!(n.dialog, 7);
        let (g, _) = s.subscribe(t0, "d2", false, Some(99_999), 8).unwrap();
        assert_eq!(g, 3600);
        let later = t0 + Duration::from_secs(100);
        let mut orders = s.changed(later);
        orders.sort_by_key(|o| o.key);
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[0].state, SubState::Active { expires: 500 });
        assert_eq!(orders[1].state.header_value(), "active;expires=3500");
        // refresh keeps the dialog state, renews the expiry
        let (g, n) = s.subscribe(later, "d1", true, Some(120), 0).unwrap();
        assert_eq!((g, n.dialog), (120, 7));
        assert_eq!(s.poll_timeout(), Some(later + Duration::from_secs(120)));
        let ended = s.expire(later + Duration::from_secs(120));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].key, "d1");
        assert_eq!(ended[0].state.header_value(), "terminated;reason=timeout");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn unsubscribe_and_errors() {
        let t0 = origin();
        let mut s: Subscriptions<u8, ()> = Subscriptions::new(B);
        assert_eq!(
            s.subscribe(t0, 1, false, Some(10), ()).unwrap_err(),
            SubscribeError::IntervalTooBrief(60)
        );
        assert_eq!(
            s.subscribe(t0, 1, true, None, ()).unwrap_err().status(),
            481
        );
        let _ = s.subscribe(t0, 1, false, None, ()).unwrap();
        let (g, n) = s.subscribe(t0, 1, true, Some(0), ()).unwrap();
        assert_eq!(g, 0);
        assert_eq!(n.state, SubState::TerminatedTimeout);
        assert!(s.is_empty());
        assert!(s.changed(t0).is_empty());
    }

    #[test]
    fn body_is_sorted_json() {
        let e = |id: &str| ChannelEntry {
            id: id.into(),
            name: id.to_uppercase(),
            kind: "producer".into(),
            owner: None,
            created_ms: 5,
        };
        let body = encode_body(&[e("sport"), e("news")]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["id"], "news");
        assert_eq!(v[1]["id"], "sport");
        assert_eq!(v[0]["owner"], serde_json::Value::Null);
        assert_eq!(v[0]["created_ms"], 5);
        assert_eq!(encode_body(&[]), b"[]");
    }

    #[test]
    fn event_and_accept_matching() {
        assert!(is_our_event("iptv-channels"));
        assert!(is_our_event(" IPTV-Channels ;id=3"));
        assert!(!is_our_event("presence"));
        assert!(accepts("application/vnd.iptv.channels+json"));
        assert!(accepts("text/plain, */*;q=0.1"));
        assert!(!accepts("application/pidf+xml"));
    }
}
