//! [`Service`]: the async transaction user that ties the pure rules to the store, the relay and
//! the SIP endpoint. One task per request; the in-memory state (dialogs, subscriptions,
//! registrar) is behind a std mutex never held across an await. This is a driver-level module:
//! it reads the clock in [`now`] and feeds it to the sans-IO cores.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use media_relay::control::{
    AddViewer, ChannelId, ChannelSpec, Error as RelayError, IngestInfo, RelayEvent, RelayHandle,
    ViewerId,
};
use media_relay::relay::DropReason;
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::config::{ExpiryBounds, Limits};
use crate::driver::sip::EndpointEvent;
use crate::error::{Error, Result};
use crate::sip::sdp::{
    AnswerTransport, Capabilities, CodecSpec, Direction, MediaKind, MediaTransport, Negotiation,
    RtcpAttr, SdpOffer,
};
use crate::sip::{HeaderName, Request, Response};

use super::catalogue::{Catalogue, SessionRow};
use super::channel_list::{self, ChannelEntry, NotifyOrder, Subscriptions};
use super::metrics::{Gauges, Metrics};
use super::overload::Admission;
use super::personal;
use super::registrar::{self, Contacts, RegisterRequest, Registrar};
use super::relays::RelayPool;
use super::rules::{self, InviteTarget, ReinviteKind, Reject};
use super::sipmsg::{self, PeerDialog};
use super::{SipClient, TuRequest};
use crate::sip::dialog::DialogId;

#[path = "aaa/tu_hooks.rs"]
mod aaa_hooks;
mod failover;
#[path = "overlay/tu_hooks.rs"]
mod overlay_hooks;
mod personalized;
mod poll_event;
mod tree;

/// Reads the wall clock and the monotonic clock: the one place the service does.
#[expect(clippy::disallowed_methods)]
fn now() -> (Instant, i64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    (Instant::now(), ms)
}

/// What the service needs to know about itself.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// SIP domain (host of channel URIs, Warning agent).
    pub domain: String,
    /// `host:port` written in Contact headers.
    pub contact_hostport: String,
    /// Admission limits.
    pub limits: Limits,
    /// Subscription expiry bounds.
    pub subscriptions: ExpiryBounds,
    /// Registrar expiry bounds.
    pub registrar: ExpiryBounds,
    /// How long a session whose viewer the relay dropped by itself (RTCP BYE, RTCP silence,
    /// unreachable) waits for the UE's own BYE before the AS ends it with a BYE of its own
    /// (see [`Service::viewer_dropped`]).
    pub dropped_viewer_grace: Duration,
}

/// A channel to create (operator API or personal channel).
#[derive(Debug, Clone)]
pub struct NewChannel {
    /// Id; a unique slug of `name` when `None`.
    pub id: Option<String>,
    /// Name.
    pub name: String,
    /// `producer`, `personal` or `personalized`.
    pub kind: String,
    /// Owner AoR (personal channels).
    pub owner: Option<String>,
    /// Feed with the relay's test pattern.
    pub test_pattern: bool,
}

/// A live session as shown by `GET /api/sessions`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionView {
    /// Call-ID of the dialog.
    pub call_id: String,
    /// Channel watched (viewer) or fed (personal channel owner).
    pub channel: String,
    /// `viewer` or `owner`.
    pub kind: &'static str,
    /// Relay viewer id (viewers).
    pub viewer: Option<u64>,
    /// Peer's AoR.
    pub peer: String,
    /// Peer's signalling address.
    pub remote: SocketAddr,
    /// Start, ms since the Unix epoch.
    pub started_ms: i64,
    /// ACK received.
    pub confirmed: bool,
    /// The relay its media is on (`relay-0`, ...).
    pub relay: String,
}

#[derive(Debug, Clone)]
enum Role {
    Viewer {
        viewer: ViewerId,
        channel: String,
        payload_type: u8,
        rtp_dest: SocketAddr,
        rtcp_dest: Option<SocketAddr>,
        /// Index of the relay sending to it ([`RelayPool`]).
        relay: usize,
    },
    Owner {
        channel: String,
        /// Index of the relay holding the channel's ingest.
        relay: usize,
    },
}

/// The SDP the AS last sent in a session, and how to make the next one (a failover's
/// re-INVITE offer, RFC 3264 section 8: same `o=` session id, version + 1).
#[derive(Debug, Clone)]
struct Sdp {
    /// The body last sent (answer of the 200 OK, or our latest offer).
    body: Vec<u8>,
    /// The negotiation it was built from (codecs, directions, m-line order).
    negotiation: Negotiation,
    /// `o=` sess-id.
    session_id: u64,
    /// `o=` sess-version of `body`.
    version: u64,
}

#[derive(Debug, Clone)]
struct Session {
    role: Role,
    dialog: PeerDialog,
    peer_aor: String,
    sdp: Sdp,
    started_ms: i64,
    confirmed: bool,
    /// CSeq of the INVITE whose 2xx still waits for its ACK (RFC 3261 13.3.1.4).
    unacked: Option<u32>,
    store_id: Option<String>,
    /// A re-INVITE of ours (failover) is in progress: the UE's re-INVITE gets 491
    /// (RFC 3261 section 14.2).
    reinvite_pending: bool,
}

impl Session {
    fn channel(&self) -> &str {
        match &self.role {
            Role::Viewer { channel, .. } | Role::Owner { channel, .. } => channel,
        }
    }

    /// The relay the session's media is on.
    fn relay(&self) -> usize {
        match &self.role {
            Role::Viewer { relay, .. } | Role::Owner { relay, .. } => *relay,
        }
    }
}

/// An INVITE as its CANCEL names it (RFC 3261 9.1: same Call-ID, From tag and CSeq number).
type InviteKey = (String, String, u32);

#[derive(Debug, Clone, Copy)]
struct PendingInvite {
    /// A CANCEL came: the layer answered the INVITE 487, whatever the TU does.
    cancelled: bool,
    since: Instant,
}

/// How long a CANCEL waits for its INVITE's task (64*T1 with the default T1).
const CANCEL_MEMORY: Duration = Duration::from_secs(32);

/// How long a dialog the AS ended with its own BYE is remembered, so that the UE's BYE
/// crossing it gets 200 rather than 481 (64*T1 with the default T1, the lifetime of the UE's
/// BYE transaction).
const ENDED_MEMORY: Duration = Duration::from_secs(32);

/// Most dialogs remembered as recently ended; beyond, the oldest is forgotten.
const ENDED_MAX: usize = 16_384;

#[derive(Debug)]
struct State {
    sessions: HashMap<DialogId, Session>,
    /// Initial INVITEs being handled, and CANCELs that came before their INVITE's task.
    invites: HashMap<InviteKey, PendingInvite>,
    subs: Subscriptions<DialogId, PeerDialog>,
    registrar: Registrar,
    /// Sessions whose viewer the relay dropped by itself, with the time at which the AS ends
    /// them unless the UE's BYE comes first ([`Service::viewer_dropped`]).
    dropped: HashMap<DialogId, Instant>,
    /// Dialogs the AS ended with its own BYE, and when ([`ENDED_MEMORY`], [`ENDED_MAX`]).
    ended: HashMap<DialogId, Instant>,
}

impl State {
    /// Takes out the first session `pred` picks.
    fn take_session(
        &mut self,
        pred: impl Fn(&DialogId, &Session) -> bool,
    ) -> Option<(DialogId, Session)> {
        let key = self
            .sessions
            .iter()
            .find(|(k, s)| pred(k, s))
            .map(|(k, _)| k.clone())?;
        self.sessions.remove(&key).map(|s| (key, s))
    }

    /// Remembers a dialog the AS has just ended with a BYE (bounded: the oldest goes first).
    fn remember_ended(&mut self, key: DialogId, now: Instant) {
        if self.ended.len() >= ENDED_MAX {
            self.ended
                .retain(|_, t| now.saturating_duration_since(*t) < ENDED_MEMORY);
        }
        if self.ended.len() >= ENDED_MAX {
            let oldest = self
                .ended
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.ended.remove(&k);
            }
        }
        self.ended.insert(key, now);
    }
}

#[derive(Debug)]
struct Inner {
    cfg: ServiceConfig,
    catalogue: Catalogue,
    relays: RelayPool,
    sip: SipClient,
    admission: Admission,
    metrics: Metrics,
    state: Mutex<State>,
    next_viewer: AtomicU64,
    next_tag: AtomicU64,
    sdp_session: u64,
    /// The AAA client (`[aaa] peer` set), see `aaa_hooks`.
    aaa: std::sync::OnceLock<super::aaa::AaaClient>,
    /// Subscriptions to the `iptv-poll` event package, see `poll_event`.
    poll_subs: Mutex<poll_event::PollSubs>,
    /// Category -> channel ids, for personalised channels' category rules.
    categories: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// The overlay part (`[overlay] enabled`), see `overlay_hooks`.
    overlay: std::sync::OnceLock<super::overlay::OverlayAs>,
}

/// The channel service (cheap to clone).
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

fn relay_err(e: RelayError, retry_after: u32) -> Error {
    match e {
        RelayError::Overloaded(_) => Error::Overloaded { retry_after },
        RelayError::UnknownChannel(c) => Error::NotFound(format!("channel {c} not on the relay")),
        e => Error::Relay(e),
    }
}

fn error_reject(e: &Error) -> Reject {
    match e {
        Error::Overloaded { retry_after } => rules::overloaded(*retry_after),
        Error::NotFound(_) => Reject::new(404, "Not Found"),
        Error::Conflict(_) => Reject::new(409, "Conflict"),
        Error::Invalid(m) => Reject::new(400, m.clone()),
        Error::Relay(_) | Error::Store(_) => Reject::new(500, "Server Internal Error"),
    }
}

impl Service {
    /// A service over a catalogue, one relay (`relay-0`) and the endpoint's request sender.
    pub fn new(
        cfg: ServiceConfig,
        catalogue: Catalogue,
        relay: RelayHandle,
        sip: SipClient,
    ) -> Self {
        Self::with_relays(cfg, catalogue, RelayPool::single(relay), sip)
    }

    /// A service over a catalogue, a pool of relays and the endpoint's request sender.
    pub fn with_relays(
        cfg: ServiceConfig,
        catalogue: Catalogue,
        relays: RelayPool,
        sip: SipClient,
    ) -> Self {
        let (t, ms) = now();
        let _ = t;
        let seed = u64::try_from(ms).unwrap_or(0) ^ rand::random::<u64>();
        Self {
            inner: Arc::new(Inner {
                admission: Admission::new(cfg.limits.max_sessions, cfg.limits.retry_after_secs),
                state: Mutex::new(State {
                    sessions: HashMap::new(),
                    invites: HashMap::new(),
                    subs: Subscriptions::new(cfg.subscriptions),
                    registrar: Registrar::new(cfg.registrar),
                    dropped: HashMap::new(),
                    ended: HashMap::new(),
                }),
                poll_subs: Mutex::new(poll_event::PollSubs::new(cfg.subscriptions)),
                cfg,
                catalogue,
                relays,
                sip,
                metrics: Metrics::default(),
                next_viewer: AtomicU64::new(1),
                next_tag: AtomicU64::new(seed),
                sdp_session: (seed >> 1) & 0x7fff_ffff_ffff,
                aaa: std::sync::OnceLock::new(),
                categories: Mutex::default(),
                overlay: std::sync::OnceLock::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tag(&self) -> String {
        let n = self
            .inner
            .next_tag
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        format!("{n:016x}")
    }

    fn contact_for(&self, user: &str) -> String {
        format!("<sip:{user}@{}>", self.inner.cfg.contact_hostport)
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The catalogue (channel and session rows).
    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    /// The relays.
    pub fn relays(&self) -> &RelayPool {
        &self.inner.relays
    }

    fn relay(&self, i: usize) -> &RelayHandle {
        self.inner.relays.handle(i)
    }

    // ------------------------------------------------------------------ catalogue / API

    /// The channel list (sorted by id).
    pub async fn list_channels(&self) -> Result<Vec<ChannelEntry>> {
        let mut l = self.inner.catalogue.list().await?;
        self.overlay_extend(&mut l);
        l.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(l)
    }

    /// One channel.
    pub async fn get_channel(&self, id: &str) -> Result<Option<ChannelEntry>> {
        Ok(match self.inner.catalogue.get(id).await? {
            Some(c) => Some(c),
            None => self.overlay_remote_entry(id),
        })
    }

    /// Creates a channel: catalogue row, relay ingest, test pattern if asked. Subscribers get
    /// a NOTIFY.
    pub async fn create_channel(&self, req: NewChannel) -> Result<(ChannelEntry, IngestInfo)> {
        if req.name.trim().is_empty() || req.name.len() > 200 {
            return Err(Error::Invalid("name must be 1 to 200 bytes".into()));
        }
        if !matches!(req.kind.as_str(), "producer" | "personal" | "personalized") {
            return Err(Error::Invalid(format!("unknown kind {:?}", req.kind)));
        }
        let id = match req.id {
            Some(id) => {
                if !personal::is_valid_channel_id(&id) {
                    return Err(Error::Invalid(format!(
                        "channel id {id:?}: use 1-64 of a-z 0-9 - _ ."
                    )));
                }
                if self.inner.catalogue.get(&id).await?.is_some() {
                    return Err(Error::Conflict(format!("channel {id}")));
                }
                id
            }
            None => {
                let taken: Vec<String> = self
                    .inner
                    .catalogue
                    .list()
                    .await?
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
                personal::unique_id(&req.name, |c| taken.iter().any(|t| t == c))
                    .ok_or_else(|| Error::Conflict("no free id for this name".into()))?
            }
        };
        let (relay, ingest) = self.place_ingest(&id, req.test_pattern).await?;
        let entry = ChannelEntry {
            id: id.clone(),
            name: req.name.trim().to_owned(),
            kind: req.kind,
            owner: req.owner,
            created_ms: now().1,
        };
        if let Err(e) = self
            .inner
            .catalogue
            .insert_on(
                &entry,
                Some(ingest.rtp_addr),
                Some(self.inner.relays.name(relay)),
            )
            .await
        {
            self.drop_ingest(&id).await;
            return Err(e);
        }
        info!(channel = %id, rtp = %ingest.rtp_addr, relay = %self.inner.relays.name(relay), "channel created");
        self.list_changed().await;
        Ok((entry, ingest))
    }

    /// Creates a channel's ingest: a test-pattern channel on every live relay (each runs its
    /// own pattern), any other on the least-loaded live relay. Returns the first relay that
    /// has it and its ingest (the address in the catalogue).
    async fn place_ingest(&self, id: &str, test_pattern: bool) -> Result<(usize, IngestInfo)> {
        if self.inner.relays.tree() {
            return self.place_ingest_tree(id, test_pattern).await;
        }
        let retry = self.inner.cfg.limits.retry_after_secs;
        let targets: Vec<usize> = {
            let st = self.inner.relays.state();
            if test_pattern {
                st.healthy()
            } else {
                st.pick_least_loaded().into_iter().collect()
            }
        };
        let channel = ChannelId::from(id);
        self.inner.relays.state().set_test_pattern(id, test_pattern);
        let mut first = None;
        let mut last_err = None;
        for i in targets {
            let relay = self.relay(i).clone();
            let spec = ChannelSpec::new(channel.clone());
            let made = self
                .relay_call(i, async {
                    let ingest = relay.create_ingest(spec).await?;
                    if test_pattern {
                        if let Err(e) = relay.start_test_pattern(&channel).await {
                            let _ = relay.delete_ingest(&channel).await;
                            return Err(e);
                        }
                    }
                    Ok(ingest)
                })
                .await;
            match made {
                Ok(ingest) => {
                    self.inner.relays.state().add_ingest(i, ingest.clone());
                    first.get_or_insert((i, ingest));
                }
                Err(e) => last_err = Some(e),
            }
        }
        match (first, last_err) {
            (Some(x), _) => Ok(x),
            (None, Some(e)) => Err(relay_err(e, retry)),
            (None, None) => Err(Error::Overloaded { retry_after: retry }),
        }
    }

    /// Makes sure a catalogue channel exists on the relay (start-up of a seeded/persisted
    /// channel): creates its ingest and starts the test pattern when asked.
    pub async fn ensure_channel(&self, seed: &crate::config::ChannelSeed) -> Result<IngestInfo> {
        let (relay, ingest) = self.place_ingest(&seed.id, seed.test_pattern).await?;
        let relay_name = Some(self.inner.relays.name(relay));
        if self.inner.catalogue.get(&seed.id).await?.is_none() {
            self.inner
                .catalogue
                .insert_on(
                    &ChannelEntry {
                        id: seed.id.clone(),
                        name: seed.name.clone(),
                        kind: "producer".into(),
                        owner: None,
                        created_ms: now().1,
                    },
                    Some(ingest.rtp_addr),
                    relay_name,
                )
                .await?;
        } else {
            self.inner
                .catalogue
                .set_ingest_on(&seed.id, ingest.rtp_addr, relay_name)
                .await?;
        }
        Ok(ingest)
    }

    /// Deletes a channel: its viewers get a BYE, the relay ingest and the catalogue row go,
    /// subscribers get a NOTIFY.
    pub async fn delete_channel(&self, id: &str) -> Result<()> {
        if self.inner.catalogue.get(id).await?.is_none() {
            return Err(Error::NotFound(format!("channel {id}")));
        }
        self.teardown_channel(id, None).await;
        Ok(())
    }

    /// BYE to every viewer of `id` (and the owner unless `except` is its dialog), relay ingest
    /// and catalogue row removed, NOTIFY to subscribers.
    async fn teardown_channel(&self, id: &str, except: Option<&DialogId>) {
        self.teardown_one(id, except).await;
        // Its slots leave the personalised channels that used it; those left without a slot
        // go too (tu/personalized.rs).
        for emptied in self.source_removed(id).await {
            self.teardown_one(&emptied, None).await;
        }
    }

    /// [`Self::teardown_channel`] of `id` alone.
    async fn teardown_one(&self, id: &str, except: Option<&DialogId>) {
        let ended: Vec<(DialogId, Session)> = {
            let mut st = self.state();
            let keys: Vec<DialogId> = st
                .sessions
                .iter()
                .filter(|(k, s)| s.channel() == id && Some(*k) != except)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| st.sessions.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (key, s) in ended {
            // ACR STOP for the viewers (their channel went: a delete, or its owner AS
            // removed it or stopped refreshing it, service::overlay).
            self.aaa_finished(&key, &s).await;
            self.inner.admission.release();
            if let Role::Viewer { viewer, relay, .. } = s.role {
                self.remove_viewer(relay, viewer).await;
            }
            self.end_row(s.store_id).await;
            self.send_bye(s.dialog, None);
        }
        self.drop_ingest(id).await;
        if let Err(e) = self.inner.catalogue.delete(id).await {
            warn!(channel = id, error = %e, "catalogue delete failed");
        }
        info!(channel = id, "channel removed");
        self.list_changed().await;
    }

    /// Removes a channel's ingest from every relay that has it (best effort: it may be
    /// gone already).
    async fn drop_ingest(&self, id: &str) {
        let had = self.inner.relays.state().remove_channel(id);
        for i in had {
            let relay = self.relay(i).clone();
            let channel = ChannelId::from(id);
            if let Err(e) = self.relay_call(i, relay.delete_ingest(&channel)).await {
                debug!(channel = id, error = %e, "delete_ingest");
            }
        }
    }

    /// Takes a viewer off its relay (best effort) and out of the relay's load.
    async fn remove_viewer(&self, relay: usize, viewer: ViewerId) {
        self.inner.relays.state().viewer_removed(relay);
        if !self.inner.relays.state().is_healthy(relay) {
            return;
        }
        let handle = self.relay(relay).clone();
        if let Err(e) = self.relay_call(relay, handle.remove_viewer(viewer)).await {
            debug!(%viewer, error = %e, "remove_viewer");
        }
    }

    /// Live sessions.
    pub fn sessions(&self) -> Vec<SessionView> {
        let st = self.state();
        let mut v: Vec<SessionView> = st
            .sessions
            .values()
            .map(|s| SessionView {
                call_id: s.dialog.id().call_id.clone(),
                channel: s.channel().to_owned(),
                kind: match s.role {
                    Role::Viewer { .. } => "viewer",
                    Role::Owner { .. } => "owner",
                },
                relay: self.inner.relays.name(s.relay()).to_owned(),
                viewer: match s.role {
                    Role::Viewer { viewer, .. } => Some(viewer.0),
                    Role::Owner { .. } => None,
                },
                peer: s.peer_aor.clone(),
                remote: s.dialog.dest,
                started_ms: s.started_ms,
                confirmed: s.confirmed,
            })
            .collect();
        v.sort_by(|a, b| {
            a.started_ms
                .cmp(&b.started_ms)
                .then(a.call_id.cmp(&b.call_id))
        });
        v
    }

    /// Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let stats: Vec<_> = self
            .inner
            .relays
            .stats()
            .await
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let relay = (!stats.is_empty()).then(|| super::relays::merge_stats(&stats));
        let channels = self.inner.catalogue.list().await.map_or(0, |l| l.len());
        let g = {
            let st = self.state();
            Gauges {
                sessions_active: st.sessions.len(),
                subscriptions: st.subs.len(),
                registrations: st.registrar.aor_count(),
                channels,
            }
        };
        let mut text = self.inner.metrics.render(g, relay.as_ref());
        self.inner
            .metrics
            .render_relays(&mut text, &self.inner.relays.gauges());
        self.aaa_metrics(&mut text).await;
        self.overlay_metrics(&mut text);
        text
    }

    // ------------------------------------------------------------------ SIP

    /// Handles one request from the endpoint and answers it.
    pub async fn handle(&self, req: TuRequest) {
        let resp = self.dispatch(&req).await;
        if let Some(resp) = resp {
            let status = resp.status.0;
            if status >= 300 {
                self.inner.metrics.failure(status);
            }
            req.respond(resp);
        }
    }

    async fn dispatch(&self, tr: &TuRequest) -> Option<Response> {
        let req = tr.request();
        // RFC 3261 7.1: method names are case-sensitive; `ack` or `invite` are extension
        // methods (405), and only a real ACK/CANCEL goes unanswered here.
        let method = req.method.as_str();
        let mf = req
            .headers
            .get(&HeaderName::MAX_FORWARDS)
            .and_then(|v| v.trim().parse().ok());
        let require = HeaderName::new("Require");
        if let Err(r) = rules::precheck(method, mf, req.headers.get_all(&require)) {
            if method == "ACK" {
                return None;
            }
            return Some(sipmsg::reject(req, &r, Some(&self.tag())));
        }
        // RFC 3261 section 8.2 checks the codec offers (416, 415, 406...).
        let policy = crate::sip::Policy {
            supported: rules::SUPPORTED,
            accepted_types: if method == "MESSAGE" {
                &[super::personalized::CONTENT_TYPE]
            } else {
                &["application/sdp"]
            },
            answer_type: Some("application/sdp"),
            forwarding: false,
        };
        if let Err(rej) = crate::sip::validate_request(req, &policy) {
            if method == "ACK" {
                return None;
            }
            return Some(rej.response(req).with_to_tag(&self.tag()));
        }
        let in_dialog = req.to().ok().and_then(|t| t.tag().map(str::to_owned));
        match method {
            "ACK" => {
                self.on_ack(req);
                None
            }
            "OPTIONS" => Some(self.options(req)),
            "REGISTER" => Some(match self.aaa_register(req).await {
                Some(refused) => refused,
                None => self.register(req),
            }),
            "SUBSCRIBE" => Some(self.subscribe(tr).await),
            "BYE" => Some(self.bye(req).await),
            "INVITE" if in_dialog.is_some() => Some(self.reinvite(req).await),
            "INVITE" => Some(self.invite(tr).await),
            "MESSAGE" => Some(self.message(tr).await),
            "CANCEL" => {
                // Answered by the transaction layer (200, and 487 to the INVITE).
                self.cancel(req).await;
                None
            }
            // Every method `rules::precheck` lets through is handled above.
            _ => Some(sipmsg::reject(
                req,
                &Reject::new(405, "Method Not Allowed").with("Allow", rules::allow_value()),
                Some(&self.tag()),
            )),
        }
    }

    fn options(&self, req: &Request) -> Response {
        let mut r = sipmsg::response(req, 200, "OK", Some(&self.tag()));
        r.headers.push(HeaderName::ALLOW, rules::allow_value());
        r.headers.push(
            HeaderName::ACCEPT,
            format!("{}, {}", rules::ACCEPT, channel_list::CONTENT_TYPE),
        );
        r.headers
            .push(HeaderName::SUPPORTED, rules::SUPPORTED.join(", "));
        r.headers.push(HeaderName::ALLOW_EVENTS, allow_events());
        r
    }

    fn register(&self, req: &Request) -> Response {
        let to_tag = self.tag();
        let bad = |m: &str| sipmsg::reject(req, &Reject::new(400, m), Some(&to_tag));
        let Ok(to) = req.to() else {
            return bad("Bad To");
        };
        let Ok(cseq) = req.cseq() else {
            return bad("Bad CSeq");
        };
        let Some(contacts) = registrar::parse_contacts(req.headers.get_all(&HeaderName::CONTACT))
        else {
            return bad("Bad Contact");
        };
        let expires_header = match req.headers.get(&HeaderName::EXPIRES) {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(_) => return bad("Bad Expires"),
            },
        };
        let rr = RegisterRequest {
            aor: sipmsg::aor(&to.uri),
            call_id: req.call_id().unwrap_or_default().to_owned(),
            cseq: cseq.seq,
            expires_header,
            contacts,
        };
        let (t, _) = now();
        let result = self.state().registrar.register(t, &rr);
        match result {
            Ok(bindings) => {
                Metrics::inc(&self.inner.metrics.registers);
                self.overlay_register(&rr.aor, &bindings);
                let mut r = sipmsg::response(req, 200, "OK", Some(&to_tag));
                for b in bindings {
                    r.headers.push(
                        HeaderName::CONTACT,
                        format!("<{}>;expires={}", b.uri, b.expires),
                    );
                }
                r
            }
            Err(e) => {
                let mut rej = Reject::new(e.status(), e.to_string());
                if let registrar::RegisterError::IntervalTooBrief(min) = e {
                    rej =
                        Reject::new(423, "Interval Too Brief").with("Min-Expires", min.to_string());
                }
                if matches!(rr.contacts, Contacts::Star) && e.status() == 400 {
                    rej.reason = "Contact * needs Expires: 0".into();
                }
                sipmsg::reject(req, &rej, Some(&to_tag))
            }
        }
    }

    async fn subscribe(&self, tr: &TuRequest) -> Response {
        let req = tr.request();
        let event = req.headers.get(&HeaderName::EVENT).unwrap_or("");
        if poll_event::is_poll_event(event) {
            return self.subscribe_poll(tr).await;
        }
        if !channel_list::is_our_event(event) {
            let r = Reject::new(489, "Bad Event").with("Allow-Events", allow_events());
            return sipmsg::reject(req, &r, Some(&self.tag()));
        }
        if let Some(acc) = req.headers.get(&HeaderName::ACCEPT) {
            if !channel_list::accepts(acc) {
                let r =
                    Reject::new(406, "Not Acceptable").with("Accept", channel_list::CONTENT_TYPE);
                return sipmsg::reject(req, &r, Some(&self.tag()));
            }
        }
        let requested = match requested_expires(req) {
            Ok(r) => r,
            Err(rej) => return sipmsg::reject(req, &rej, Some(&self.tag())),
        };
        let existing_tag = req.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let local_tag = existing_tag.clone().unwrap_or_else(|| self.tag());
        let contact = self.contact_for("channels");
        let (t, _) = now();
        let result = if existing_tag.is_some() {
            // A refresh (or `Expires: 0`) inside the subscription's dialog: RFC 3261 12.2.2
            // checks by the dialog, then the subscription table.
            let Some(key) = DialogId::of_incoming(req) else {
                return sipmsg::reject(req, &Reject::new(400, "Missing From tag"), None);
            };
            let mut st = self.state();
            let checked = match st.subs.dialog_mut(&key) {
                None => Ok(None),
                Some(d) => d
                    .dialog
                    .core
                    .on_request(req)
                    .map(|()| Some(d.clone()))
                    .map_err(|e| sipmsg::dialog_reject(&e)),
            };
            match checked {
                Err(r) => return sipmsg::reject(req, &r, None),
                Ok(None) => Err(channel_list::SubscribeError::NoSuchSubscription),
                Ok(Some(d)) => st.subs.subscribe(t, key, true, requested, d),
            }
        } else {
            let dialog =
                match PeerDialog::accept(req, tr.source(), tr.transport(), &local_tag, &contact) {
                    Ok(d) => d,
                    Err(r) => return sipmsg::reject(req, &r, Some(&local_tag)),
                };
            let key = dialog.id().clone();
            self.state()
                .subs
                .subscribe(t, key, false, requested, dialog)
        };
        match result {
            Ok((granted, order)) => {
                Metrics::inc(&self.inner.metrics.subscribes);
                let mut r = sipmsg::response(req, 200, "OK", Some(&local_tag));
                r.headers.push(HeaderName::EXPIRES, granted.to_string());
                r.headers.push(HeaderName::CONTACT, contact);
                // The NOTIFY goes out after the 200 (spawned: the 200 is sent first by
                // `handle`); RFC 6665 section 4.2.1.2.
                let svc = self.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    svc.send_notifies(vec![order]).await;
                });
                r
            }
            Err(e) => {
                let mut rej = Reject::new(e.status(), e.to_string());
                if let channel_list::SubscribeError::IntervalTooBrief(min) = e {
                    rej =
                        Reject::new(423, "Interval Too Brief").with("Min-Expires", min.to_string());
                }
                sipmsg::reject(req, &rej, Some(&local_tag))
            }
        }
    }

    /// The channel list changed: NOTIFY every subscriber.
    async fn list_changed(&self) {
        self.overlay_poke();
        let orders = {
            let (t, _) = now();
            self.state().subs.changed(t)
        };
        if !orders.is_empty() {
            self.send_notifies(orders).await;
        }
    }

    async fn send_notifies(&self, orders: Vec<NotifyOrder<DialogId, PeerDialog>>) {
        let body = match self.list_channels().await {
            Ok(l) => channel_list::encode_body(&l),
            Err(e) => {
                warn!(error = %e, "cannot list channels for NOTIFY");
                return;
            }
        };
        let body = bytes::Bytes::from(body);
        for order in orders {
            // Built from the stored dialog so the NOTIFYs of one subscription count CSeq up;
            // a terminated subscription is no longer stored: its order carries the dialog.
            let state = order.state.header_value();
            let notify = |d: &mut PeerDialog| {
                let n = d.dialog.notify(
                    channel_list::EVENT,
                    &state,
                    channel_list::CONTENT_TYPE,
                    body.clone(),
                );
                (n, d.dest, d.transport)
            };
            let built = self.state().subs.dialog_mut(&order.key).map(notify);
            let (n, dest, transport) = built.unwrap_or_else(|| notify(&mut order.dialog.clone()));
            Metrics::inc(&self.inner.metrics.notifies_sent);
            let svc = self.clone();
            let key = order.key.clone();
            tokio::spawn(async move {
                match svc.inner.sip.send_request(n, dest, transport).await {
                    Ok(resp) if resp.status.0 == 481 || resp.status.0 == 408 => {
                        // RFC 6665 section 4.1.2.1 / 4.2.2: the subscription is gone.
                        svc.state().subs.remove(&key);
                    }
                    Ok(_) => {}
                    Err(e) => debug!(error = %e, "NOTIFY failed"),
                }
            });
        }
    }

    fn on_ack(&self, req: &Request) {
        if let Some(key) = DialogId::of_incoming(req) {
            if let Some(s) = self.state().sessions.get_mut(&key) {
                s.confirmed = true;
                if s.unacked == cseq_of(req) {
                    s.unacked = None;
                }
            }
        }
    }

    /// An event of the SIP endpoint (see [`crate::driver::sip::EndpointEvent`]).
    pub async fn on_endpoint_event(&self, event: EndpointEvent) {
        match event {
            EndpointEvent::AckTimeout { invite } => {
                self.ack_timeout(&invite).await;
            }
        }
    }

    /// The 2xx to `invite` was retransmitted for 64*T1 and never ACKed: RFC 3261 13.3.1.4
    /// says the session SHOULD end, with a BYE. The viewer leaves the relay (a personal
    /// channel is removed), the session row ends, the slot is freed. Returns whether a
    /// session ended.
    pub async fn ack_timeout(&self, invite: &Request) -> bool {
        let (Ok(call_id), Ok(from), Some(seq)) = (invite.call_id(), invite.from(), cseq_of(invite))
        else {
            return false;
        };
        let to_tag = invite.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let ended = self.state().take_session(|k, s| {
            k.call_id == call_id
                && Some(k.remote_tag.as_str()) == from.tag()
                && to_tag.as_ref().is_none_or(|t| *t == k.local_tag)
                && s.unacked == Some(seq)
        });
        let Some((key, s)) = ended else {
            return false;
        };
        info!(call_id = %key.call_id, channel = %s.channel(), "2xx never acknowledged: session ended");
        self.finish(key, s, true).await;
        true
    }

    /// Ends a session already taken out of the state: slot freed, viewer removed from the
    /// relay (a personal channel torn down), session row ended, and a BYE when `bye`.
    async fn finish(&self, key: DialogId, s: Session, bye: bool) {
        self.finish_with(key, s, bye, None).await;
    }

    /// [`Self::finish`] with a `Reason` header (RFC 3326) on the BYE.
    async fn finish_with(&self, key: DialogId, s: Session, bye: bool, reason: Option<&str>) {
        self.aaa_finished(&key, &s).await;
        self.inner.admission.release();
        match &s.role {
            Role::Viewer { viewer, relay, .. } => {
                self.remove_viewer(*relay, *viewer).await;
            }
            Role::Owner { channel, .. } => {
                let channel = channel.clone();
                // The teardown BYEs viewers and NOTIFYs subscribers; not awaited so the
                // caller (a BYE's 200) is not held up.
                let svc = self.clone();
                tokio::spawn(async move { svc.teardown_channel(&channel, Some(&key)).await });
            }
        }
        self.end_row(s.store_id.clone()).await;
        if let Role::Viewer { channel, .. } = &s.role {
            // A remote channel nobody here watches any more is not pulled (service::overlay).
            self.overlay_release_unused(channel).await;
        }
        if bye {
            self.send_bye(s.dialog, reason);
        }
    }

    async fn bye(&self, req: &Request) -> Response {
        let no_dialog = Reject::new(481, "Call/Transaction Does Not Exist");
        let Some(key) = DialogId::of_incoming(req) else {
            return sipmsg::reject(req, &no_dialog, None);
        };
        // RFC 3261 15.1.2: the BYE must belong to the dialog, CSeq in order (else 500).
        let session = {
            let mut st = self.state();
            match st.sessions.remove(&key) {
                // RFC 3261 15.1.2 says a BYE matching no dialog SHOULD get 481. A dialog the
                // AS ended with its own BYE a moment ago (the UE's BYE crossed ours) is
                // answered 200: it did exist, and it has ended as the UE asked.
                None if st.ended.contains_key(&key) => {
                    drop(st);
                    debug!(call_id = %key.call_id, "BYE for a dialog the AS just ended: 200");
                    return sipmsg::response(req, 200, "OK", None);
                }
                None => Err(no_dialog),
                Some(mut s) => match s.dialog.dialog.clone().on_bye(req) {
                    Ok(_ended) => {
                        st.dropped.remove(&key);
                        Ok(s)
                    }
                    Err(e) => {
                        let (dialog, err) = *e;
                        s.dialog.dialog = dialog;
                        st.sessions.insert(key.clone(), s);
                        Err(sipmsg::dialog_reject(&err))
                    }
                },
            }
        };
        let s = match session {
            Ok(s) => s,
            Err(r) => return sipmsg::reject(req, &r, None),
        };
        if let Role::Viewer { .. } = s.role {
            Metrics::inc(&self.inner.metrics.leaves);
        }
        info!(channel = %s.channel(), call_id = %key.call_id, "leave");
        self.finish(key, s, false).await;
        sipmsg::response(req, 200, "OK", None)
    }

    async fn end_row(&self, id: Option<String>) {
        if let Some(id) = id {
            if let Err(e) = self.inner.catalogue.end_session(&id, now().1).await {
                warn!(error = %e, "session end not stored");
            }
        }
    }

    /// Sends a BYE in `dialog` (not awaited) and remembers the dialog as ended by the AS.
    /// `reason` is a `Reason` header value (RFC 3326), e.g. why a failover ended it.
    fn send_bye(&self, dialog: PeerDialog, reason: Option<&str>) {
        let (t, _) = now();
        self.state().remember_ended(dialog.id().clone(), t);
        let (mut bye, dest, transport) = dialog.bye();
        if let Some(r) = reason {
            bye.headers.push(HeaderName::new("Reason"), r);
        }
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = svc.inner.sip.send_request(bye, dest, transport).await {
                debug!(error = %e, "BYE failed");
            }
        });
    }

    /// What the relay takes (`recvonly`: a producer's ingest, forwarded as is) or sends
    /// (`sendonly`: a viewer; H.264 only in packetization mode 1, [`CodecSpec::h264_mode1`]).
    fn answer_caps(direction: Direction) -> Capabilities {
        let h264 = if direction.has_send() {
            CodecSpec::h264_mode1()
        } else {
            CodecSpec::h264()
        };
        Capabilities {
            direction,
            codecs: vec![h264, CodecSpec::mp2t()],
            single_codec: true,
        }
    }

    fn sdp_reject(&self, e: &crate::sip::sdp::NegotiationError) -> Reject {
        use crate::sip::sdp::NegotiationError as N;
        match e {
            N::Malformed(m) => Reject::new(400, format!("Bad SDP: {m}")),
            other => {
                let (code, text) = other.warning().unwrap_or((399, "Miscellaneous warning"));
                Reject::new(488, "Not Acceptable Here").with(
                    "Warning",
                    format!("{code} {} \"{text}\"", self.inner.cfg.domain),
                )
            }
        }
    }

    fn offer_of(req: &Request) -> std::result::Result<SdpOffer, Reject> {
        if req.body.is_empty() {
            return Err(Reject::new(400, "Missing SDP offer"));
        }
        let ct = req.headers.get(&HeaderName::CONTENT_TYPE).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/sdp") {
            return Err(Reject::new(415, "Unsupported Media Type").with("Accept", rules::ACCEPT));
        }
        SdpOffer::parse(&req.body).map_err(|e| Reject::new(400, format!("Bad SDP: {e}")))
    }

    async fn invite(&self, tr: &TuRequest) -> Response {
        let req = tr.request();
        let tag = self.tag();
        let terminated = || sipmsg::reject(req, &request_terminated(), Some(&tag));
        // Registered so that a CANCEL arriving while the join is in progress is seen at the
        // commit point ([`Self::commit`]); a CANCEL that came first ends it here.
        let ikey = invite_key(req);
        if let Some(k) = &ikey {
            let (t, _) = now();
            let mut st = self.state();
            if st.invites.get(k).is_some_and(|p| p.cancelled) {
                st.invites.remove(k);
                return terminated();
            }
            st.invites.insert(
                k.clone(),
                PendingInvite {
                    cancelled: false,
                    since: t,
                },
            );
        }
        let res = match rules::invite_target(req.uri.user.as_deref()) {
            Err(r) => Err(r),
            Ok(InviteTarget::Join(ch)) => {
                let r = self.join(tr, &ch, &tag).await;
                if r.is_err() {
                    self.overlay_release_unused(&ch).await;
                }
                r
            }
            Ok(InviteTarget::Create) => self.create_personal(tr, &tag).await,
        };
        self.aaa_invite_done(req);
        // Still registered when the request failed before its commit point.
        if let Some(k) = &ikey {
            if self.state().invites.remove(k).is_some_and(|p| p.cancelled) {
                return terminated();
            }
        }
        match res {
            Ok(r) => r,
            Err(r) => sipmsg::reject(req, &r, Some(&tag)),
        }
    }

    /// The commit point of an initial INVITE: the session goes into the state and its slot
    /// is taken, unless a CANCEL came meanwhile (the layer has answered the INVITE 487,
    /// RFC 3261 9.2): then what was set up is undone (relay viewer or personal channel,
    /// session row) and the answer is 487.
    async fn commit(
        &self,
        req: &Request,
        slot: super::overload::Slot,
        session: Session,
    ) -> std::result::Result<(), Reject> {
        let key = session.dialog.id().clone();
        let cancelled = {
            let mut st = self.state();
            let cancelled = invite_key(req)
                .and_then(|k| st.invites.remove(&k))
                .is_some_and(|p| p.cancelled);
            if cancelled {
                Some(session)
            } else {
                st.sessions.insert(key.clone(), session);
                None
            }
        };
        slot.commit();
        match cancelled {
            None => Ok(()),
            Some(s) => {
                info!(call_id = %key.call_id, channel = %s.channel(), "INVITE cancelled during set-up");
                self.finish(key, s, false).await;
                Err(request_terminated())
            }
        }
    }

    /// A CANCEL the transaction layer matched to an INVITE it has answered 487 (RFC 3261
    /// 9.2): the INVITE's set-up must not survive. In progress: marked, undone at its commit
    /// point. Already committed (its 200 lost the race to the CANCEL): the session ends, with
    /// no BYE (the UAC got 487, it has no dialog). Not started yet: remembered for its task.
    async fn cancel(&self, req: &Request) {
        let Some(k) = invite_key(req) else {
            return;
        };
        if req.to().ok().is_some_and(|t| t.tag().is_some()) {
            // A re-INVITE's CANCEL: the session stays as it was before the re-INVITE.
            debug!(call_id = %k.0, "CANCEL of a re-INVITE ignored");
            return;
        }
        let (t, _) = now();
        let ended = {
            let mut st = self.state();
            if let Some(p) = st.invites.get_mut(&k) {
                p.cancelled = true;
                None
            } else {
                let found = st.take_session(|d, s| {
                    d.call_id == k.0
                        && d.remote_tag == k.1
                        && !s.confirmed
                        && s.unacked == Some(k.2)
                });
                match found {
                    Some(found) => Some(found),
                    None => {
                        st.invites.insert(
                            k.clone(),
                            PendingInvite {
                                cancelled: true,
                                since: t,
                            },
                        );
                        None
                    }
                }
            }
        };
        if let Some((key, s)) = ended {
            info!(call_id = %key.call_id, channel = %s.channel(), "INVITE cancelled after set-up");
            self.finish(key, s, false).await;
        }
    }

    async fn join(
        &self,
        tr: &TuRequest,
        channel: &str,
        tag: &str,
    ) -> std::result::Result<Response, Reject> {
        let req = tr.request();
        let dialog = PeerDialog::accept(
            req,
            tr.source(),
            tr.transport(),
            tag,
            &self.contact_for(channel),
        )?;
        let offer = Self::offer_of(req)?;
        let slot = self
            .inner
            .admission
            .try_admit()
            .map_err(|o| rules::overloaded(o.retry_after))?;
        match self.inner.catalogue.get(channel).await {
            Ok(Some(_)) => {}
            Ok(None) if self.overlay_remote_entry(channel).is_none() => {
                return Err(Reject::new(404, "Not Found"))
            }
            Ok(None) => {}
            Err(e) => return Err(error_reject(&e)),
        }
        self.aaa_authorize_join(req, channel).await?;
        let negotiation = offer
            .negotiate(&Self::answer_caps(Direction::SendOnly))
            .map_err(|e| self.sdp_reject(&e))?;
        let Some(video) = negotiation
            .accepted()
            .find(|n| n.kind == MediaKind::Video)
            .cloned()
        else {
            // Video offered but refused (e.g. H.264 only in packetization mode 0): 305;
            // no video offered at all: 304.
            use crate::sip::sdp::NegotiationError as N;
            let offered_video = offer
                .media()
                .iter()
                .any(|m| m.kind == MediaKind::Video && !m.is_rejected());
            let e = if offered_video {
                N::NoCommonCodec
            } else {
                N::UnsupportedMedia
            };
            return Err(self.sdp_reject(&e));
        };
        let Some(rtp_dest) = video.offerer_rtp else {
            return Err(Reject::new(400, "Bad SDP: no RTP address for video"));
        };
        if rtp_dest.ip().is_unspecified() || rtp_dest.port() == 0 {
            return Err(Reject::new(488, "Not Acceptable Here").with(
                "Warning",
                format!("399 {} \"No RTP address\"", self.inner.cfg.domain),
            ));
        }
        // A channel another AS owns: one local relay pulls it first (service::overlay);
        // the pull is not released before the session is in the table.
        let _pull = self.overlay_prepare_join(channel, None).await?;
        let viewer = ViewerId(self.inner.next_viewer.fetch_add(1, Ordering::Relaxed));
        let retry = self.inner.cfg.limits.retry_after_secs;
        let (relay, info) = self
            .place_viewer(AddViewer {
                viewer,
                channel: ChannelId::from(channel),
                rtp_dest,
                rtcp_dest: video.offerer_rtcp,
                payload_type: video.codec.payload_type,
                downstream: false,
            })
            .await
            .map_err(|e| error_reject(&relay_err(e, retry)))?;
        let session_id = self.inner.sdp_session + viewer.0;
        let transport = self.viewer_transport(relay, &info, session_id, 1);
        // A multicast channel: the answer names the group and TTL (media-relay multicast).
        let answer = match info.multicast_ttl {
            Some(ttl) => negotiation
                .clone()
                .answer_multicast(&transport, info.relay_rtp, ttl),
            None => negotiation.clone().answer(&transport),
        };
        let answer = match answer {
            Ok(a) => a.to_bytes(),
            Err(e) => {
                self.remove_viewer(relay, viewer).await;
                return Err(self.sdp_reject(&e));
            }
        };
        let (_, ms) = now();
        let peer_aor = req.from().map(|f| sipmsg::aor(&f.uri)).unwrap_or_default();
        let store_id = self
            .start_row(
                &SessionRow {
                    call_id: dialog.id().call_id.clone(),
                    channel: channel.to_owned(),
                    peer: peer_aor.clone(),
                    started_ms: ms,
                    relay: Some(self.inner.relays.name(relay).to_owned()),
                },
                &format!("{}/{}", dialog.id().call_id, dialog.id().local_tag),
            )
            .await;
        let key = dialog.id().clone();
        self.commit(
            req,
            slot,
            Session {
                role: Role::Viewer {
                    viewer,
                    channel: channel.to_owned(),
                    payload_type: video.codec.payload_type,
                    rtp_dest,
                    rtcp_dest: video.offerer_rtcp,
                    relay,
                },
                dialog,
                peer_aor,
                sdp: Sdp {
                    body: answer.clone(),
                    negotiation,
                    session_id,
                    version: 1,
                },
                started_ms: ms,
                confirmed: false,
                unacked: cseq_of(req),
                store_id,
                reinvite_pending: false,
            },
        )
        .await?;
        self.aaa_joined(req, &key, channel).await;
        Metrics::inc(&self.inner.metrics.joins);
        info!(%channel, call_id = %key.call_id, %viewer, dest = %rtp_dest, relay = %self.inner.relays.name(relay), "join");
        Ok(self.ok_with_sdp(req, tag, channel, answer))
    }

    /// Adds a viewer on the least-loaded live relay carrying its channel; a relay that
    /// turns out to be stopped is declared dead and the next one is tried.
    async fn place_viewer(
        &self,
        add: AddViewer,
    ) -> std::result::Result<(usize, media_relay::control::ViewerInfo), RelayError> {
        let channel = add.channel.as_str().to_owned();
        let mut last = RelayError::UnknownChannel(add.channel.clone());
        for _ in 0..self.inner.relays.len() {
            let Some(i) = self.inner.relays.state().pick_for_channel(&channel) else {
                break;
            };
            // Counted before the await so concurrent joins spread.
            self.inner.relays.state().viewer_added(i);
            let relay = self.relay(i).clone();
            match self.relay_call(i, relay.add_viewer(add.clone())).await {
                Ok(info) => return Ok((i, info)),
                Err(e) => {
                    self.inner.relays.state().viewer_removed(i);
                    // Another relay may take it when this one is gone or did not answer.
                    let retry = matches!(
                        e,
                        RelayError::Stopped | RelayError::Overloaded(failover::NO_ANSWER)
                    );
                    last = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// The transport of a viewer's SDP on relay `relay`: its output address, `a=rtcp` and
    /// the RFC 5760 feedback target at its RTCP address, the viewer's SSRC with the relay's
    /// name as CNAME (RFC 5576).
    fn viewer_transport(
        &self,
        relay: usize,
        info: &media_relay::control::ViewerInfo,
        session_id: u64,
        version: u64,
    ) -> AnswerTransport {
        AnswerTransport {
            addresses: vec![info.relay_rtp.ip()],
            video: Some(MediaTransport {
                rtp_port: info.relay_rtp.port(),
                rtcp: Some(RtcpAttr {
                    port: info.relay_rtcp.port(),
                    addr: None,
                }),
                ssrc: Some(info.ssrc),
            }),
            audio: None,
            feedback_target: Some(info.relay_rtcp),
            session_id,
            session_version: version,
            session_name: "iptv".into(),
            cname: Some(self.inner.relays.name(relay).to_owned()),
        }
    }

    /// The transport of a personal channel's SDP (the AS is `recvonly`): the ingest on
    /// the relay.
    fn ingest_transport(ingest: &IngestInfo, session_id: u64, version: u64) -> AnswerTransport {
        AnswerTransport {
            addresses: vec![ingest.rtp_addr.ip()],
            video: Some(MediaTransport {
                rtp_port: ingest.rtp_addr.port(),
                rtcp: Some(RtcpAttr {
                    port: ingest.rtcp_addr.port(),
                    addr: None,
                }),
                ssrc: None,
            }),
            audio: None,
            feedback_target: None,
            session_id,
            session_version: version,
            session_name: "iptv".into(),
            cname: None,
        }
    }

    fn ok_with_sdp(&self, req: &Request, tag: &str, channel: &str, sdp: Vec<u8>) -> Response {
        let mut r = sipmsg::response(req, 200, "OK", Some(tag));
        r.headers
            .push(HeaderName::CONTACT, self.contact_for(channel));
        r.headers.push(HeaderName::ALLOW, rules::allow_value());
        r.headers.push(HeaderName::CONTENT_TYPE, "application/sdp");
        r.body = bytes::Bytes::from(sdp);
        r
    }

    async fn create_personal(
        &self,
        tr: &TuRequest,
        tag: &str,
    ) -> std::result::Result<Response, Reject> {
        let req = tr.request();
        // The Contact names the channel, whose id is known once it is created (set below).
        let mut dialog = PeerDialog::accept(
            req,
            tr.source(),
            tr.transport(),
            tag,
            &self.contact_for(personal::CREATION_USER),
        )?;
        let subject = req
            .headers
            .get(&HeaderName::SUBJECT)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Reject::new(400, "Missing Subject (the channel name)"))?
            .to_owned();
        let offer = Self::offer_of(req)?;
        let negotiation = offer
            .negotiate(&Self::answer_caps(Direction::RecvOnly))
            .map_err(|e| self.sdp_reject(&e))?;
        if !negotiation.accepted().any(|n| n.kind == MediaKind::Video) {
            return Err(self.sdp_reject(&crate::sip::sdp::NegotiationError::UnsupportedMedia));
        }
        let slot = self
            .inner
            .admission
            .try_admit()
            .map_err(|o| rules::overloaded(o.retry_after))?;
        let owner = req.from().map(|f| sipmsg::aor(&f.uri)).ok();
        let (entry, ingest) = self
            .create_channel(NewChannel {
                id: None,
                name: subject,
                kind: "personal".into(),
                owner: owner.clone(),
                test_pattern: false,
            })
            .await
            .map_err(|e| error_reject(&e))?;
        let relay = self
            .inner
            .relays
            .state()
            .carriers(&entry.id)
            .first()
            .copied()
            .unwrap_or(0);
        let session_id = self.inner.sdp_session ^ 0x5a5a;
        let answer = negotiation
            .clone()
            .answer(&Self::ingest_transport(&ingest, session_id, 1));
        let answer = match answer {
            Ok(a) => a.to_bytes(),
            Err(e) => {
                self.teardown_channel(&entry.id, None).await;
                return Err(self.sdp_reject(&e));
            }
        };
        let (_, ms) = now();
        let store_id = self
            .inner
            .catalogue
            .start_session(
                &SessionRow {
                    call_id: dialog.id().call_id.clone(),
                    channel: entry.id.clone(),
                    peer: owner.clone().unwrap_or_default(),
                    started_ms: ms,
                    relay: Some(self.inner.relays.name(relay).to_owned()),
                },
                &format!("{}/{}", dialog.id().call_id, dialog.id().local_tag),
            )
            .await
            .map_err(|e| warn!(error = %e, "owner session row not stored"))
            .ok();
        dialog.dialog.core.local_contact = Some(self.contact_for(&entry.id));
        self.commit(
            req,
            slot,
            Session {
                role: Role::Owner {
                    channel: entry.id.clone(),
                    relay,
                },
                dialog,
                peer_aor: owner.unwrap_or_default(),
                sdp: Sdp {
                    body: answer.clone(),
                    negotiation,
                    session_id,
                    version: 1,
                },
                started_ms: ms,
                confirmed: false,
                unacked: cseq_of(req),
                store_id,
                reinvite_pending: false,
            },
        )
        .await?;
        Metrics::inc(&self.inner.metrics.personal_created);
        self.aaa_created(req, &entry.id).await;
        info!(channel = %entry.id, ingest = %ingest.rtp_addr, "personal channel created");
        Ok(self.ok_with_sdp(req, tag, &entry.id, answer))
    }

    async fn reinvite(&self, req: &Request) -> Response {
        let no_dialog = || Reject::new(481, "Call/Transaction Does Not Exist");
        let Some(key) = DialogId::of_incoming(req) else {
            return sipmsg::reject(req, &no_dialog(), None);
        };
        // RFC 3261 12.2.2: CSeq order and target refresh, checked by the dialog.
        let checked = {
            let mut st = self.state();
            match st.sessions.get_mut(&key) {
                None => Err(no_dialog()),
                //= RFC 3261 14.2: a re-INVITE arriving while our own re-INVITE (a relay
                //= failover) is pending gets 491 Request Pending.
                Some(s) if s.reinvite_pending => Err(Reject::new(491, "Request Pending")),
                Some(s) => {
                    let target = s.dialog.dialog.core.remote_target.clone();
                    match s.dialog.dialog.core.on_request(req) {
                        Ok(()) => Ok((s.clone(), target)),
                        Err(e) => Err(sipmsg::dialog_reject(&e)),
                    }
                }
            }
        };
        let (session, old_target) = match checked {
            Ok(x) => x,
            Err(r) => return sipmsg::reject(req, &r, None),
        };
        let from = session.channel().to_owned();
        let done = self.reinvite_inner(req, &key, session).await;
        // A remote channel zapped away from, or one a failed zap pulled, is not pulled
        // when nobody here watches it (service::overlay); not awaited: the zap's answer
        // does not wait for it.
        if let Some(to) = req.uri.user.clone().filter(|to| *to != from) {
            let svc = self.clone();
            tokio::spawn(async move {
                svc.overlay_release_unused(&from).await;
                svc.overlay_release_unused(&to).await;
            });
        }
        match done {
            Ok(r) => {
                if let Some(s) = self.state().sessions.get_mut(&key) {
                    s.unacked = cseq_of(req);
                }
                r
            }
            Err(r) => {
                // RFC 6141 section 3.4: a refused re-INVITE does not refresh the target.
                if let Some(s) = self.state().sessions.get_mut(&key) {
                    s.dialog.dialog.core.remote_target = old_target;
                }
                sipmsg::reject(req, &r, None)
            }
        }
    }

    async fn reinvite_inner(
        &self,
        req: &Request,
        key: &DialogId,
        session: Session,
    ) -> std::result::Result<Response, Reject> {
        let Role::Viewer {
            viewer,
            channel: current,
            payload_type,
            rtp_dest,
            relay,
            ..
        } = session.role.clone()
        else {
            // A personal channel's owner: refresh only.
            let channel = session.channel().to_owned();
            return Ok(self.ok_with_sdp(req, &key.local_tag, &channel, session.sdp.body));
        };
        let kind = rules::reinvite_kind(&current, req.uri.user.as_deref())?;
        // Re-negotiate the offer if there is one (the UE may repeat its offer; a changed
        // address or payload type re-adds the viewer on the relay).
        if !req.body.is_empty() {
            let offer = Self::offer_of(req)?;
            let negotiation = offer
                .negotiate(&Self::answer_caps(Direction::SendOnly))
                .map_err(|e| self.sdp_reject(&e))?;
            let video = negotiation
                .accepted()
                .find(|n| n.kind == MediaKind::Video)
                .cloned()
                .ok_or_else(|| {
                    self.sdp_reject(&crate::sip::sdp::NegotiationError::UnsupportedMedia)
                })?;
            if video.offerer_rtp != Some(rtp_dest) || video.codec.payload_type != payload_type {
                return Err(Reject::new(488, "Not Acceptable Here").with(
                    "Warning",
                    format!(
                        "399 {} \"Changing media address in a re-INVITE is not supported; BYE and INVITE\"",
                        self.inner.cfg.domain
                    ),
                ));
            }
        }
        let new_channel = match kind {
            ReinviteKind::Refresh => current.clone(),
            ReinviteKind::Zap(to) => {
                // A catalogue channel, or one another AS owns (listed through the overlay).
                match self.get_channel(&to).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(Reject::new(404, "Not Found")),
                    Err(e) => return Err(error_reject(&e)),
                }
                self.aaa_authorize_zap(key, &to).await?;
                // A remote channel: pulled first, on the viewer's relay when it is new.
                let _pull = self.overlay_prepare_join(&to, Some(relay)).await?;
                let retry = self.inner.cfg.limits.retry_after_secs;
                // With the relay tree on, the viewer's relay pulls every channel it has no
                // ingest for: the zap stays there (its first viewer of `to` starts the pull).
                let here = {
                    let st = self.inner.relays.state();
                    st.carries(relay, &to) || st.pullers(&to).contains(&relay)
                };
                if !here {
                    // The channel is not on the viewer's relay (a personal channel with
                    // several relays): the viewer moves to one that has it, and the answer
                    // to the UE's offer names the new relay.
                    if req.body.is_empty() {
                        return Err(Reject::new(488, "Not Acceptable Here").with(
                            "Warning",
                            format!(
                                "399 {} \"Channel on another relay: zap with an SDP offer, or BYE and INVITE\"",
                                self.inner.cfg.domain
                            ),
                        ));
                    }
                    return self.zap_to_other_relay(req, key, &session, &to).await;
                }
                let handle = self.relay(relay).clone();
                self.relay_call(
                    relay,
                    handle.switch_channel(viewer, ChannelId::from(to.as_str())),
                )
                .await
                .map_err(|e| error_reject(&relay_err(e, retry)))?;
                {
                    let mut st = self.state();
                    if let Some(s) = st.sessions.get_mut(key) {
                        if let Role::Viewer { channel, .. } = &mut s.role {
                            channel.clone_from(&to);
                        }
                    }
                }
                if let Some(id) = &session.store_id {
                    self.zap_row(id, &to).await;
                }
                Metrics::inc(&self.inner.metrics.zaps);
                info!(from = %current, to = %to, call_id = %key.call_id, "zap");
                to
            }
        };
        if let Some(s) = self.state().sessions.get_mut(key) {
            s.dialog.dialog.core.local_contact = Some(self.contact_for(&new_channel));
        }
        // Same relay path, same ports, same SSRC: the answer is unchanged, so its o= version
        // stays (RFC 3264 section 8: the version is bumped only when the content changes).
        Ok(self.ok_with_sdp(req, &key.local_tag, &new_channel, session.sdp.body))
    }

    /// A zap (re-INVITE with an offer) to channel `to`, which the viewer's relay does not
    /// carry: a new path on a relay that does, the old one removed, the answer naming the
    /// new relay (same `o=` session id, version + 1, RFC 3264 section 8).
    async fn zap_to_other_relay(
        &self,
        req: &Request,
        key: &DialogId,
        session: &Session,
        to: &str,
    ) -> std::result::Result<Response, Reject> {
        let Role::Viewer {
            viewer: old_viewer,
            relay: old_relay,
            payload_type,
            rtp_dest,
            rtcp_dest,
            channel: current,
        } = session.role.clone()
        else {
            return Err(Reject::new(500, "Server Internal Error"));
        };
        let retry = self.inner.cfg.limits.retry_after_secs;
        let viewer = ViewerId(self.inner.next_viewer.fetch_add(1, Ordering::Relaxed));
        let (relay, info) = self
            .place_viewer(AddViewer {
                viewer,
                channel: ChannelId::from(to),
                rtp_dest,
                rtcp_dest,
                payload_type,
                downstream: false,
            })
            .await
            .map_err(|e| error_reject(&relay_err(e, retry)))?;
        let version = session.sdp.version + 1;
        let transport = self.viewer_transport(relay, &info, session.sdp.session_id, version);
        let negotiation = session.sdp.negotiation.clone();
        let answer = match info.multicast_ttl {
            Some(ttl) => negotiation.answer_multicast(&transport, info.relay_rtp, ttl),
            None => negotiation.answer(&transport),
        };
        let body = match answer {
            Ok(a) => a.to_bytes(),
            Err(e) => {
                self.remove_viewer(relay, viewer).await;
                return Err(self.sdp_reject(&e));
            }
        };
        let updated = {
            let mut st = self.state();
            match st.sessions.get_mut(key) {
                Some(s) => {
                    s.role = Role::Viewer {
                        viewer,
                        channel: to.to_owned(),
                        payload_type,
                        rtp_dest,
                        rtcp_dest,
                        relay,
                    };
                    s.sdp.body.clone_from(&body);
                    s.sdp.version = version;
                    s.dialog.dialog.core.local_contact = Some(self.contact_for(to));
                    true
                }
                None => false,
            }
        };
        if !updated {
            self.remove_viewer(relay, viewer).await;
            return Err(Reject::new(481, "Call/Transaction Does Not Exist"));
        }
        self.remove_viewer(old_relay, old_viewer).await;
        if let Some(id) = &session.store_id {
            self.zap_row(id, to).await;
            let name = self.inner.relays.name(relay).to_owned();
            if let Err(e) = self.inner.catalogue.set_session_relay(id, &name).await {
                warn!(error = %e, "session relay not stored");
            }
        }
        Metrics::inc(&self.inner.metrics.zaps);
        info!(from = %current, %to, call_id = %key.call_id, relay = %self.inner.relays.name(relay), "zap to another relay");
        Ok(self.ok_with_sdp(req, &key.local_tag, to, body))
    }

    /// Finds the sessions whose viewer the relay dropped by itself (it vanished: ICMP
    /// unreachable, RTCP silence, RTCP BYE) and starts their grace period, as
    /// [`Self::viewer_dropped`] does. Returns how many were newly found.
    /// [`Self::run_relay_events`] does this per event; this sweep over the relay's stats is
    /// its fallback when events were missed.
    pub async fn reap_dropped_viewers(&self) -> usize {
        let snapshot: Vec<(DialogId, ViewerId, usize)> = {
            let st = self.state();
            st.sessions
                .iter()
                .filter(|(k, s)| !st.dropped.contains_key(*k) && !s.reinvite_pending)
                .filter_map(|(k, s)| match s.role {
                    Role::Viewer { viewer, relay, .. } => Some((k.clone(), viewer, relay)),
                    Role::Owner { .. } => None,
                })
                .collect()
        };
        if snapshot.is_empty() {
            return 0;
        }
        // Only relays that answered: the viewers of a dead relay are the failover's.
        let stats = self.inner.relays.stats().await;
        let answered: std::collections::HashSet<usize> = stats.iter().map(|(i, _)| *i).collect();
        let live: std::collections::HashSet<ViewerId> = stats
            .iter()
            .flat_map(|(_, s)| s.viewers.iter().map(|v| v.viewer))
            .collect();
        let mut n = 0;
        for (key, viewer, relay) in snapshot {
            if !answered.contains(&relay) || live.contains(&viewer) {
                continue;
            }
            if self.start_grace(&key) {
                n += 1;
                info!(%viewer, call_id = %key.call_id, "viewer gone from the relay: waiting for the UE's BYE");
            }
        }
        n
    }

    /// Starts the grace period of a session whose viewer left the relay; false when the
    /// session is gone or already in its grace.
    fn start_grace(&self, key: &DialogId) -> bool {
        let (t, _) = now();
        let until = t + self.inner.cfg.dropped_viewer_grace;
        let mut st = self.state();
        if !st.sessions.contains_key(key) || st.dropped.contains_key(key) {
            return false;
        }
        st.dropped.insert(key.clone(), until);
        true
    }

    /// Follows the relay's events ([`RelayHandle::events`]; subscribe before the first
    /// join): a viewer the relay dropped by itself is handed to [`Self::viewer_dropped`].
    /// After a lag, the sessions are checked against the relay's stats. Returns when the
    /// relay is gone.
    pub async fn run_relay_events(&self, mut events: broadcast::Receiver<RelayEvent>) {
        loop {
            match events.recv().await {
                Ok(RelayEvent::ViewerDropped { viewer, reason }) => {
                    debug!(%viewer, ?reason, "relay dropped a viewer");
                    self.viewer_dropped(viewer, reason).await;
                }
                Ok(other) => debug!(?other, "relay event ignored"),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "relay events lagged: checking sessions against its stats"
                    );
                    self.reap_dropped_viewers().await;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// The relay dropped `viewer` by itself. Returns whether it had a session here.
    ///
    /// An RTCP BYE (RFC 3550 section 6.6), RTCP silence or an unreachable port does not end
    /// the SIP session at once: a phone hanging up sends its SIP BYE and its RTCP BYE within
    /// a millisecond, in either order (baresip does), and ending the dialog on the RTCP BYE
    /// would answer the UE's BYE 481 and cross it with a BYE of ours. The relay has stopped
    /// sending already; the session waits [`ServiceConfig::dropped_viewer_grace`] for the
    /// UE's BYE, and [`Self::tick`] ends it after that with a BYE from the AS (slot freed,
    /// row ended). A viewer dropped because its channel was deleted ends at once: the UE
    /// knows nothing of it.
    pub async fn viewer_dropped(&self, viewer: ViewerId, reason: DropReason) -> bool {
        let is_viewer =
            |s: &Session| matches!(s.role, Role::Viewer { viewer: v, .. } if v == viewer);
        if reason == DropReason::ChannelDeleted {
            let ended = self.state().take_session(|_, s| is_viewer(s));
            let Some((key, s)) = ended else {
                return false;
            };
            info!(%viewer, channel = %s.channel(), call_id = %key.call_id, "viewer's channel deleted: session ended");
            self.finish(key, s, true).await;
            return true;
        }
        let key = self
            .state()
            .sessions
            .iter()
            .find(|(_, s)| is_viewer(s))
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            return false;
        };
        if self.start_grace(&key) {
            info!(%viewer, ?reason, call_id = %key.call_id, "viewer dropped by the relay: waiting for the UE's BYE");
        }
        true
    }

    /// Ends the sessions whose grace after a relay drop is over, with a BYE from the AS.
    async fn end_dropped(&self, t: Instant) {
        let due: Vec<(DialogId, Session)> = {
            let mut st = self.state();
            let keys: Vec<DialogId> = st
                .dropped
                .iter()
                .filter(|(_, until)| **until <= t)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| {
                    st.dropped.remove(&k);
                    st.sessions.remove(&k).map(|s| (k, s))
                })
                .collect()
        };
        for (key, s) in due {
            info!(channel = %s.channel(), call_id = %key.call_id, "no BYE from the UE after the relay dropped its viewer: session ended");
            self.finish(key, s, true).await;
        }
    }

    /// Periodic housekeeping (call about once a second, or more often for a short
    /// [`ServiceConfig::dropped_viewer_grace`]): expired registrations and subscriptions
    /// (final NOTIFYs), forgotten CANCELs and ended dialogs, sessions whose viewer the relay
    /// dropped and whose UE sent no BYE within the grace.
    pub async fn tick(&self) {
        let (t, _) = now();
        self.end_dropped(t).await;
        let ended = {
            let mut st = self.state();
            st.invites
                .retain(|_, p| t.saturating_duration_since(p.since) < CANCEL_MEMORY);
            st.ended
                .retain(|_, e| t.saturating_duration_since(*e) < ENDED_MEMORY);
            let State {
                sessions, dropped, ..
            } = &mut *st;
            dropped.retain(|k, _| sessions.contains_key(k));
            st.registrar.expire(t);
            st.subs.expire(t)
        };
        if !ended.is_empty() {
            self.send_notifies(ended).await;
        }
    }

    /// Shutdown: BYE to every session, final NOTIFY to every subscriber, personal channels
    /// removed. Best effort, bounded by `limit`.
    pub async fn shutdown(&self, limit: Duration) {
        let (sessions, subs) = {
            let mut st = self.state();
            let s: Vec<Session> = st.sessions.drain().map(|(_, s)| s).collect();
            (s, st.subs.terminate_all())
        };
        let work = async {
            for s in sessions {
                self.inner.admission.release();
                match &s.role {
                    Role::Viewer { viewer, relay, .. } => {
                        self.remove_viewer(*relay, *viewer).await;
                    }
                    Role::Owner { channel, .. } => {
                        let _ = self.inner.catalogue.delete(channel).await;
                    }
                }
                self.end_row(s.store_id).await;
                self.send_bye(s.dialog, None);
            }
            self.send_notifies(subs).await;
        };
        let _ = tokio::time::timeout(limit, work).await;
        // Give the spawned BYE/NOTIFY transactions a moment to leave.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The CSeq number of a request.
fn cseq_of(req: &Request) -> Option<u32> {
    req.cseq().ok().map(|c| c.seq)
}

/// The INVITE a request (the INVITE itself or its CANCEL) names.
fn invite_key(req: &Request) -> Option<InviteKey> {
    Some((
        req.call_id().ok()?.to_owned(),
        req.from().ok()?.tag()?.to_owned(),
        cseq_of(req)?,
    ))
}

/// `487 Request Terminated` (RFC 3261 9.2).
fn request_terminated() -> Reject {
    Reject::new(487, "Request Terminated")
}

/// The `Expires` a SUBSCRIBE asks for (RFC 6665 section 4.1.2.1): `None` when absent, values
/// beyond `u32` capped; a non-number is a `400 Bad Expires`.
fn requested_expires(req: &Request) -> Result<Option<u32>, Reject> {
    match req.headers.get(&HeaderName::EXPIRES) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX)))
            .map_err(|_| Reject::new(400, "Bad Expires")),
    }
}

/// The event packages the AS serves (RFC 6665 section 8.2.2 `Allow-Events`, in OPTIONS answers
/// and 489s): the channel list and the channel owner's live poll tally.
fn allow_events() -> String {
    format!("{}, {}", channel_list::EVENT, poll_event::EVENT)
}
