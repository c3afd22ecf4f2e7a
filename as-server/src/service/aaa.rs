//! Authorisation and accounting of the channel service over Diameter: the AS as an Sh and
//! Rf client of an AAA (the embedded one, `crate::aaa`, or an operator's HSS/CDF).
//!
//! * **Authorisation (Sh, 3GPP TS 29.328/29.329).** A join (and a zap) names a viewer
//!   (P-Asserted-Identity when present, else the From URI) and a channel. The viewer's IPTV
//!   profile comes from a cache (`profile_cache_s`) or a UDR (Data-Reference RepositoryData,
//!   Service-Indication `IPTV`). [`decide`] then applies the rules: the channel must be in
//!   one of the subscriber's packages — *a package name equal to a channel id entitles that
//!   channel, `*` entitles every channel, and a package listed in `[aaa.packages]`
//!   (`basic = ["news", "sport"]`) entitles the channels it lists* — and the viewer's active
//!   viewing sessions must be
//!   under `max_streams` (else `403 Stream limit N reached`). Channels carry no parental
//!   rating in this version, so the parental level is not checked. An unknown user
//!   (Experimental-Result 5001) gets `403 Unknown subscriber`. When no AAA answers, the
//!   `policy` decides: `fail-closed` answers `503` with `Retry-After`, `fail-open` lets the
//!   join through (it is accounted like any other).
//! * **Profile changes (PNR, TS 29.329 section 6.1.7).** A PNR replaces the cached profile
//!   and is answered PNA 2001; the service then ends with a BYE (Reason header) every
//!   session of that viewer whose channel the new profile no longer entitles
//!   (`service/aaa/tu_hooks.rs`).
//! * **Accounting (Rf, TS 32.299, RFC 6733 section 9).** Every viewing session is an
//!   accounting session: ACR START (record 0) at the join, STOP (record 1) with the duration
//!   at the leave; a personal channel creation is an EVENT. The Session-Id is
//!   `<origin_host>;<session row id>`, stable for the session. Records are first written
//!   to the durable outbox (`store::outbox`); one sender task sends them in order and
//!   deletes a row only after a 2001 ACA. While no AAA peer is up they wait (the Diameter
//!   driver reconnects); a record tried before goes again with the T flag, and the CDF
//!   stores each (Session-Id, record number) once. A restarted AS finds its rows and sends
//!   them.
//! * **REGISTER digest (RFC 3261 section 22.4, RFC 2617)** when `register_auth`: `401` with a
//!   challenge (nonce from [`NonceKey`]), then the `Authorization` header is checked against
//!   HA1 from the store (`get_subscriber_by_username`); an expired nonce gets `401` with
//!   `stale=TRUE`, a wrong password `403`.
//!
//! Limits of this version: the stream count is this AS instance's own (in memory; AS
//! instances sharing PostgreSQL do not pool it); concurrent joins are counted with a
//! reservation taken with the check, so they cannot both pass the limit. P-Asserted-Identity
//! is trusted as is (the AS sits inside the IMS core's trust domain, RFC 3325); an AS that
//! faces UEs directly should have its edge strip it. Zaps are not accounted separately (the
//! STOP names the last channel; no INTERIM per zap).
//!
//! This is a driver-level module (tokio, the store, the Diameter client); the rules
//! ([`decide`], [`entitled`]) are pure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::aaa::digest::{self, Credentials, NonceError, NonceKey};
use crate::diameter::base::{Capabilities, Outcome, VendorSpecificApplicationId};
use crate::diameter::driver::{
    self, ClientError, DiameterClient, IncomingRequests, NodeConfig, PeerSpec,
};
use crate::diameter::peer::PeerConfig;
use crate::diameter::rf::{Aca, Acr, ImsInformation, RecordType};
use crate::diameter::sh::{experimental, IptvProfile, Pna, Pnr, Uda, Udr};
use crate::diameter::{ApplicationId, CommandFlags, Message, ResultCode, Time, VendorId};
use crate::store::{OutboxRecord, Store};

use super::rules::Reject;

/// What a join gets when no AAA peer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// `503 Service Unavailable` with `Retry-After`.
    #[default]
    FailClosed,
    /// Allowed (and accounted once the AAA is back).
    FailOpen,
}

/// The `[aaa]` section of the AS configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AaaSection {
    /// The AAA peer (`None`: AAA disabled, every join allowed, nothing accounted).
    pub peer: Option<SocketAddr>,
    /// Our Diameter Origin-Host.
    pub origin_host: String,
    /// Our Diameter Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm of UDR and ACR.
    pub destination_realm: String,
    /// Fail-open or fail-closed when no peer answers.
    pub policy: Policy,
    /// How long a profile read by UDR is used (seconds; a PNR replaces it sooner).
    pub profile_cache_s: u64,
    /// Digest authentication of REGISTER.
    pub register_auth: bool,
    /// The digest realm.
    pub realm: String,
    /// How long a Diameter request may wait for its answer (ms).
    pub request_timeout_ms: u64,
    /// Our Host-IP-Address in the CER.
    pub host_ip: std::net::IpAddr,
    /// `Retry-After` of the fail-closed `503` (seconds).
    pub retry_after_s: u32,
    /// How long a digest nonce is good (seconds).
    pub nonce_max_age_s: u64,
    /// Package name -> the channel ids it entitles (besides the package named like a
    /// channel, and `*`).
    pub packages: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for AaaSection {
    fn default() -> Self {
        Self {
            peer: None,
            origin_host: "as.iptv.example".into(),
            origin_realm: "iptv.example".into(),
            destination_realm: "iptv.example".into(),
            policy: Policy::FailClosed,
            profile_cache_s: 300,
            register_auth: false,
            realm: "iptv.example".into(),
            request_timeout_ms: 2000,
            host_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            retry_after_s: 5,
            nonce_max_age_s: 300,
            packages: std::collections::BTreeMap::new(),
        }
    }
}

/// How long a join's reservation of a stream lasts at most (its INVITE's set-up; a join
/// normally commits or fails well within it, and releases it then).
const RESERVATION: Duration = Duration::from_secs(32);

/// Package name -> channel ids (`[aaa.packages]`).
pub type PackageMap = std::collections::BTreeMap<String, Vec<String>>;

/// Whether `profile` entitles `channel`: a package named like the channel, `*`, or a
/// package `map` lists the channel in.
#[must_use]
pub fn entitled(profile: &IptvProfile, channel: &str, map: &PackageMap) -> bool {
    profile.packages.iter().any(|p| {
        p == "*"
            || p == channel
            || map
                .get(p)
                .is_some_and(|chs| chs.iter().any(|c| c == channel))
    })
}

/// The authorisation rules (module docs): `active` is the viewer's number of viewing
/// sessions besides this one.
pub fn decide(
    profile: &IptvProfile,
    channel: &str,
    active: usize,
    map: &PackageMap,
) -> Result<(), Reject> {
    if !entitled(profile, channel, map) {
        return Err(Reject::new(
            403,
            format!("Channel {channel} not in subscription"),
        ));
    }
    let limit = usize::try_from(profile.max_streams).unwrap_or(usize::MAX);
    if active >= limit {
        return Err(Reject::new(
            403,
            format!("Stream limit {} reached", profile.max_streams),
        ));
    }
    Ok(())
}

/// Counters for the metrics endpoint (`as_aaa_*`).
#[derive(Debug, Default)]
pub struct AaaCounters {
    /// Joins and zaps allowed by a profile.
    pub authorised: AtomicU64,
    /// Joins and zaps refused (403).
    pub refused: AtomicU64,
    /// Joins allowed without an answer (fail-open).
    pub fail_open: AtomicU64,
    /// Joins refused without an answer (fail-closed 503).
    pub fail_closed: AtomicU64,
    /// UDRs sent.
    pub udr_sent: AtomicU64,
    /// PNRs received.
    pub pnr_received: AtomicU64,
    /// Sessions ended because a PNR revoked their channel.
    pub revoked: AtomicU64,
    /// Viewing sessions accounted (START queued).
    pub sessions_accounted: AtomicU64,
    /// ACRs answered 2001 (their outbox row deleted).
    pub acr_acknowledged: AtomicU64,
    /// ACR send attempts that failed (no peer, time-out, error answer).
    pub acr_failures: AtomicU64,
    /// REGISTERs challenged (401).
    pub register_challenged: AtomicU64,
    /// REGISTERs refused (403).
    pub register_refused: AtomicU64,
}

/// Why the AAA client could not start.
#[derive(Debug, thiserror::Error)]
pub enum AaaStartError {
    /// The Diameter driver did not start.
    #[error("diameter: {0}")]
    Driver(#[from] driver::DriverError),
    /// The outbox could not be read.
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
}

#[derive(Debug)]
struct Inner {
    cfg: AaaSection,
    client: DiameterClient,
    store: Store,
    cache: Mutex<HashMap<String, (IptvProfile, Instant)>>,
    /// Accounting sessions whose START was queued (a STOP is queued only for them), with
    /// the viewer's identity: the viewer's active sessions for the stream limit.
    started: Mutex<HashMap<String, String>>,
    /// Joins authorised and not yet committed (reservation key -> identity, since): they
    /// count against the stream limit, so two concurrent joins cannot both pass it.
    /// Locked after `started` when both are held.
    pending: Mutex<HashMap<String, (String, Instant)>>,
    seq: AtomicI64,
    next_id: AtomicU64,
    wake: tokio::sync::Notify,
    nonce: NonceKey,
    counters: AaaCounters,
    /// The sender and the PNR loop, aborted by [`AaaClient::stop`].
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// The AS's AAA client (cheap to clone).
#[derive(Debug, Clone)]
pub struct AaaClient {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Outcome of a profile read.
enum Lookup {
    Profile(IptvProfile),
    Unknown,
    NoAnswer(String),
}

impl AaaClient {
    /// Starts the Diameter driver towards `cfg.peer` (which must be set) and the outbox
    /// sender. The second result carries the requests from the AAA (PNR), for
    /// [`AaaClient::on_request`]. `now_ms` seeds the Diameter identifiers.
    pub async fn start(
        cfg: &AaaSection,
        store: Store,
        now_ms: i64,
    ) -> Result<(AaaClient, IncomingRequests), AaaStartError> {
        let caps = Capabilities {
            origin_host: cfg.origin_host.clone(),
            origin_realm: cfg.origin_realm.clone(),
            host_ip_addresses: vec![cfg.host_ip],
            vendor_id: VendorId(0),
            product_name: "iptv-as".into(),
            origin_state_id: Some(u32::try_from((now_ms / 1000) & 0xffff_ffff).unwrap_or(0)),
            supported_vendor_ids: vec![VendorId::TGPP],
            acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
            vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
            ..Capabilities::default()
        };
        let mut pc = PeerConfig::new(caps);
        pc.request_timeout = Duration::from_millis(cfg.request_timeout_ms.max(100));
        pc.reconnect_min = Duration::from_millis(100);
        pc.reconnect_max = Duration::from_secs(2);
        let (client, incoming) = driver::spawn(NodeConfig {
            peers: vec![PeerSpec {
                config: pc,
                addr: cfg.peer,
                tls: None,
            }],
            seed: Some(u64::try_from(now_ms).unwrap_or(0) ^ rand::random::<u64>()),
            ..NodeConfig::default()
        })
        .await?;
        let seq = store.outbox_max_seq(&cfg.origin_host).await?;
        let mut secret = [0u8; 32];
        for b in &mut secret {
            *b = rand::random();
        }
        let me = AaaClient {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                client,
                store,
                cache: Mutex::new(HashMap::new()),
                started: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                seq: AtomicI64::new(seq),
                next_id: AtomicU64::new(u64::try_from(now_ms).unwrap_or(0)),
                wake: tokio::sync::Notify::new(),
                nonce: NonceKey::new(&secret),
                counters: AaaCounters::default(),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let sender = me.clone();
        let task = tokio::spawn(async move { sender.run_sender().await });
        me.own_task(task.abort_handle());
        Ok((me, incoming))
    }

    /// A task [`AaaClient::stop`] ends.
    pub fn own_task(&self, task: tokio::task::AbortHandle) {
        lock(&self.inner.tasks).push(task);
    }

    /// Lets the sender drain the outbox for up to `drain` (when a peer is up), then ends the
    /// tasks and disconnects (DPR). Rows left are sent by the next start.
    pub async fn stop(&self, drain: Duration) {
        let wait = async {
            while self.inner.client.open_peers() > 0 && self.outbox_len().await > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(drain, wait).await;
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.inner
                .client
                .stop(crate::diameter::base::DisconnectCause::REBOOTING),
        )
        .await;
    }

    /// Whether `profile` entitles `channel` under the configured package map.
    pub fn entitles(&self, profile: &IptvProfile, channel: &str) -> bool {
        entitled(profile, channel, &self.inner.cfg.packages)
    }

    /// The configuration.
    pub fn config(&self) -> &AaaSection {
        &self.inner.cfg
    }

    /// The counters.
    pub fn counters(&self) -> &AaaCounters {
        &self.inner.counters
    }

    /// The Diameter client (peer state for health checks and tests).
    pub fn diameter(&self) -> &DiameterClient {
        &self.inner.client
    }

    fn session_id(&self, tag: &str) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{};{tag};{n}", self.inner.cfg.origin_host)
    }

    async fn lookup(&self, identity: &str, now: Instant) -> Lookup {
        let ttl = Duration::from_secs(self.inner.cfg.profile_cache_s);
        if let Some((p, at)) = lock(&self.inner.cache).get(identity) {
            if now.saturating_duration_since(*at) < ttl {
                return Lookup::Profile(p.clone());
            }
        }
        let c = &self.inner.cfg;
        let udr = Udr::iptv_profile(
            self.session_id("udr"),
            &c.origin_host,
            &c.origin_realm,
            &c.destination_realm,
            identity,
        );
        self.inner.counters.udr_sent.fetch_add(1, Ordering::Relaxed);
        let ans = match self.inner.client.request(udr.to_message()).await {
            Ok(a) => a,
            Err(e) => return Lookup::NoAnswer(e.to_string()),
        };
        let uda = match Uda::from_message(&ans) {
            Ok(u) => u,
            Err(e) => return Lookup::NoAnswer(format!("bad UDA: {e}")),
        };
        match uda.outcome {
            Outcome::Experimental(x) if x.code == experimental::DIAMETER_ERROR_USER_UNKNOWN => {
                Lookup::Unknown
            }
            o if o == Outcome::SUCCESS => {
                let Some(data) = uda.user_data else {
                    return Lookup::NoAnswer("UDA without User-Data".into());
                };
                match IptvProfile::from_user_data(&data) {
                    Ok(p) => {
                        lock(&self.inner.cache).insert(identity.to_owned(), (p.clone(), now));
                        Lookup::Profile(p)
                    }
                    Err(e) => Lookup::NoAnswer(format!("bad profile: {e}")),
                }
            }
            o => Lookup::NoAnswer(format!("UDA {o:?}")),
        }
    }

    /// The profile check and, for a join (`join`: its reservation key), the stream count
    /// and the reservation, in one step under the locks.
    fn decide_and_reserve(
        &self,
        p: &IptvProfile,
        identity: &str,
        channel: &str,
        join: Option<&str>,
        now: Instant,
    ) -> Result<(), Reject> {
        let Some(key) = join else {
            return decide(p, channel, 0, &self.inner.cfg.packages);
        };
        let started = lock(&self.inner.started);
        let mut pending = lock(&self.inner.pending);
        pending.retain(|_, (_, since)| now.saturating_duration_since(*since) < RESERVATION);
        let active = started.values().filter(|v| *v == identity).count()
            + pending
                .iter()
                .filter(|(k, (v, _))| *v == identity && k.as_str() != key)
                .count();
        decide(p, channel, active, &self.inner.cfg.packages)?;
        pending.insert(key.to_owned(), (identity.to_owned(), now));
        Ok(())
    }

    /// Drops a join's reservation (the join failed, or it was committed).
    pub fn release(&self, join: &str) {
        lock(&self.inner.pending).remove(join);
    }

    /// Authorises `identity` to watch `channel` (module docs). `join`: the reservation key
    /// of a join (its stream is counted and reserved until [`AaaClient::start_session`] or
    /// [`AaaClient::release`]); `None` for a zap (the package only). `Err` is the SIP
    /// refusal.
    pub async fn authorize(
        &self,
        identity: &str,
        channel: &str,
        join: Option<&str>,
        now: Instant,
    ) -> Result<(), Reject> {
        let k = &self.inner.counters;
        let r = match self.lookup(identity, now).await {
            Lookup::Profile(p) => self.decide_and_reserve(&p, identity, channel, join, now),
            Lookup::Unknown => Err(Reject::new(403, "Unknown subscriber")),
            Lookup::NoAnswer(why) => {
                warn!(%identity, %channel, %why, policy = ?self.inner.cfg.policy, "no AAA answer");
                return match self.inner.cfg.policy {
                    Policy::FailOpen => {
                        k.fail_open.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Policy::FailClosed => {
                        k.fail_closed.fetch_add(1, Ordering::Relaxed);
                        Err(super::rules::overloaded(self.inner.cfg.retry_after_s))
                    }
                };
            }
        };
        match &r {
            Ok(()) => k.authorised.fetch_add(1, Ordering::Relaxed),
            Err(rej) => {
                debug!(%identity, %channel, reason = %rej.reason, "refused by profile");
                k.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
        r
    }

    /// A request from the AAA: a PNR replaces the cached profile and is answered 2001
    /// (returned: the identity and its new profile); anything else is answered
    /// 3001 COMMAND_UNSUPPORTED.
    pub fn on_request(
        &self,
        req: &Message,
        now: Instant,
    ) -> (Message, Option<(String, IptvProfile)>) {
        let c = &self.inner.cfg;
        let pnr = Pnr::from_message(req).ok();
        let parsed = pnr.as_ref().and_then(|p| {
            let id = p.user_identity.public_identity.clone()?;
            IptvProfile::from_user_data(&p.user_data)
                .ok()
                .map(|prof| (id, prof))
        });
        let Some(pnr) = pnr else {
            let mut ans = Message::answer_to(req);
            ans.flags = ans.flags | CommandFlags::ERROR;
            ans.avps.push(crate::diameter::Avp::utf8(
                &crate::diameter::dict::SESSION_ID,
                req.session_id().unwrap_or_default(),
            ));
            ans.avps.push(crate::diameter::Avp::u32(
                &crate::diameter::dict::RESULT_CODE,
                ResultCode::DIAMETER_COMMAND_UNSUPPORTED.0,
            ));
            ans.avps.push(crate::diameter::Avp::identity(
                &crate::diameter::dict::ORIGIN_HOST,
                &c.origin_host,
            ));
            ans.avps.push(crate::diameter::Avp::identity(
                &crate::diameter::dict::ORIGIN_REALM,
                &c.origin_realm,
            ));
            return (ans, None);
        };
        self.inner
            .counters
            .pnr_received
            .fetch_add(1, Ordering::Relaxed);
        let outcome = if parsed.is_some() {
            Outcome::SUCCESS
        } else {
            Outcome::Result(ResultCode::DIAMETER_UNABLE_TO_COMPLY)
        };
        if let Some((id, p)) = &parsed {
            info!(identity = %id, packages = ?p.packages, "PNR: profile replaced");
            lock(&self.inner.cache).insert(id.clone(), (p.clone(), now));
        }
        let pna = Pna {
            session_id: pnr.session_id.clone(),
            outcome,
            origin_host: c.origin_host.clone(),
            origin_realm: c.origin_realm.clone(),
        }
        .answer(req);
        (pna, parsed)
    }

    // ------------------------------------------------------------- accounting

    async fn queue(&self, mut r: OutboxRecord) {
        r.seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        match self.inner.store.outbox_push(&r).await {
            Ok(_) => self.inner.wake.notify_one(),
            Err(e) => warn!(error = %e, session = %r.session_id, "accounting record not queued"),
        }
    }

    fn record(
        &self,
        session_id: &str,
        kind: RecordType,
        number: u32,
        (subscriber, channel): (&str, &str),
        event_ms: i64,
        duration_secs: Option<i64>,
    ) -> OutboxRecord {
        OutboxRecord {
            session_id: session_id.to_owned(),
            record_number: number,
            record_type: kind.0,
            seq: 0,
            origin_host: self.inner.cfg.origin_host.clone(),
            subscriber: subscriber.to_owned(),
            channel: channel.to_owned(),
            event_ms,
            duration_secs,
            attempts: 0,
        }
    }

    /// The accounting Session-Id of a viewing session (its session row key).
    pub fn accounting_id(&self, session_key: &str) -> String {
        format!("{};{session_key}", self.inner.cfg.origin_host)
    }

    /// Queues the START of a viewing session (its join's reservation becomes the session).
    pub async fn start_session(
        &self,
        session_key: &str,
        join: &str,
        (subscriber, channel): (&str, &str),
        ms: i64,
    ) {
        let id = self.accounting_id(session_key);
        {
            let mut started = lock(&self.inner.started);
            started.insert(id.clone(), subscriber.to_owned());
            lock(&self.inner.pending).remove(join);
        }
        self.inner
            .counters
            .sessions_accounted
            .fetch_add(1, Ordering::Relaxed);
        let r = self.record(&id, RecordType::START, 0, (subscriber, channel), ms, None);
        self.queue(r).await;
    }

    /// Queues the STOP of a viewing session whose START was queued (else nothing).
    pub async fn stop_session(
        &self,
        session_key: &str,
        channel: &str,
        ms: i64,
        duration_secs: i64,
    ) {
        let id = self.accounting_id(session_key);
        let Some(subscriber) = lock(&self.inner.started).remove(&id) else {
            return;
        };
        let r = self.record(
            &id,
            RecordType::STOP,
            1,
            (&subscriber, channel),
            ms,
            Some(duration_secs.max(0)),
        );
        self.queue(r).await;
    }

    /// The viewer of an accounting session with a START.
    pub fn identity_of(&self, accounting_id: &str) -> Option<String> {
        lock(&self.inner.started).get(accounting_id).cloned()
    }

    /// How many accounted viewing sessions `identity` has.
    pub fn active_sessions(&self, identity: &str) -> usize {
        lock(&self.inner.started)
            .values()
            .filter(|v| *v == identity)
            .count()
    }

    /// Queues an EVENT record (a personal channel created).
    pub async fn event(&self, tag: &str, subscriber: &str, channel: &str, ms: i64) {
        let id = self.session_id(tag);
        let r = self.record(&id, RecordType::EVENT, 0, (subscriber, channel), ms, None);
        self.queue(r).await;
    }

    fn acr(&self, r: &OutboxRecord) -> Message {
        let c = &self.inner.cfg;
        let kind = RecordType(r.record_type);
        let mut acr = Acr::new(
            &r.session_id,
            &c.origin_host,
            &c.origin_realm,
            &c.destination_realm,
            kind,
            r.record_number,
        );
        acr.event_timestamp = Some(Time::from_unix(
            u64::try_from(r.event_ms / 1000).unwrap_or(0),
        ));
        let mut ims = ImsInformation {
            user_session_id: Some(r.session_id.clone()),
            calling_party_addresses: vec![r.subscriber.clone()],
            called_party_address: Some(format!("sip:{}@{}", r.channel, c.origin_realm)),
            ..ImsInformation::default()
        };
        ims.set_channel(r.channel.clone());
        if let Some(d) = r.duration_secs {
            ims.set_duration_secs(u64::try_from(d).unwrap_or(0));
            ims.cause_code = Some(0);
        }
        acr.ims = Some(ims);
        let mut m = acr.to_message();
        if r.attempts > 0 {
            // RFC 6733 section 3: a request sent again after a failure carries the T flag.
            m.flags = m.flags | CommandFlags::RETRANSMIT;
        }
        m
    }

    /// Sends one record; `true` when the AAA took it (or refused it for good).
    async fn send_one(&self, r: &OutboxRecord) -> bool {
        let k = &self.inner.counters;
        let result = self.inner.client.request(self.acr(r)).await;
        let fail = |why: String| {
            debug!(session = %r.session_id, n = r.record_number, %why, "ACR not acknowledged");
            false
        };
        let ok = match result {
            Err(ClientError::Shutdown) => return false,
            Err(e) => fail(e.to_string()),
            Ok(ans) => match Aca::from_message(&ans) {
                Ok(aca) if aca.result_code == ResultCode::DIAMETER_SUCCESS => true,
                Ok(aca) if aca.result_code.0 >= 5000 => {
                    // A permanent failure: sending it again cannot succeed.
                    warn!(session = %r.session_id, code = aca.result_code.0, "ACR refused for good; dropped");
                    true
                }
                Ok(aca) => fail(format!("ACA {}", aca.result_code.0)),
                Err(e) => fail(format!("bad ACA: {e}")),
            },
        };
        if ok {
            k.acr_acknowledged.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self
                .inner
                .store
                .outbox_delete(&r.session_id, r.record_number)
                .await
            {
                warn!(error = %e, "outbox row not deleted (it will be sent again)");
            }
        } else {
            k.acr_failures.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .inner
                .store
                .outbox_attempted(&r.session_id, r.record_number)
                .await;
        }
        ok
    }

    /// The outbox sender: oldest first, one at a time (so in order per session); on a
    /// failure it waits for a peer (bounded) and starts again from the oldest row.
    async fn run_sender(&self) {
        let host = self.inner.cfg.origin_host.clone();
        loop {
            let rows = match self.inner.store.outbox_pending(&host, 64).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "outbox unreadable");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if rows.is_empty() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.inner.wake.notified()).await;
                continue;
            }
            for r in &rows {
                if !self.send_one(r).await {
                    if self.inner.client.open_peers() == 0 {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            self.inner.client.wait_open(1),
                        )
                        .await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    break;
                }
            }
        }
    }

    /// Records waiting in the outbox.
    pub async fn outbox_len(&self) -> i64 {
        self.inner
            .store
            .outbox_len(&self.inner.cfg.origin_host)
            .await
            .unwrap_or(-1)
    }

    // ---------------------------------------------------------------- REGISTER

    /// Checks a REGISTER's `Authorization` (module docs). `now_secs`: Unix time.
    pub async fn check_register(
        &self,
        authorization: Option<&str>,
        body: &[u8],
        now_secs: u64,
    ) -> Result<(), Reject> {
        let c = &self.inner.cfg;
        let k = &self.inner.counters;
        let challenge = |stale: bool| {
            k.register_challenged.fetch_add(1, Ordering::Relaxed);
            let nonce = self.inner.nonce.issue(now_secs, rand::random());
            Reject::new(401, "Unauthorized").with(
                "WWW-Authenticate",
                digest::challenge(&c.realm, &nonce, stale),
            )
        };
        let refuse = |why: &str| {
            k.register_refused.fetch_add(1, Ordering::Relaxed);
            Reject::new(403, why.to_owned())
        };
        let Some(value) = authorization else {
            return Err(challenge(false));
        };
        let Ok(cred) = Credentials::parse(value) else {
            return Err(Reject::new(400, "Bad Authorization header"));
        };
        if cred.realm != c.realm {
            return Err(challenge(false));
        }
        match self
            .inner
            .nonce
            .check(&cred.nonce, now_secs, c.nonce_max_age_s)
        {
            Ok(_) => {}
            Err(NonceError::Expired) => return Err(challenge(true)),
            Err(_) => return Err(challenge(false)),
        }
        let sub = match self
            .inner
            .store
            .get_subscriber_by_username(&cred.username, &cred.realm)
            .await
        {
            Ok(s) => s,
            Err(crate::store::Error::NotFound(_)) => return Err(refuse("Unknown user")),
            Err(e) => {
                warn!(error = %e, "credentials not readable");
                return Err(Reject::new(500, "Server Internal Error"));
            }
        };
        if digest::verify(&sub.ha1, &cred, "REGISTER", body) {
            Ok(())
        } else {
            Err(refuse("Wrong credentials"))
        }
    }

    /// Prometheus text for the counters (appended to the AS metrics).
    pub fn render_metrics(&self, out: &mut String, outbox: i64) {
        use media_relay::prometheus::{write_family, write_metric};
        use std::fmt::Write as _;
        let k = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "as_aaa_authorised_total",
                "Joins and zaps allowed by the Sh profile.",
                g(&k.authorised),
            ),
            (
                "as_aaa_refused_total",
                "Joins and zaps refused by the Sh profile (403).",
                g(&k.refused),
            ),
            (
                "as_aaa_fail_open_total",
                "Joins allowed with no AAA answer (fail-open).",
                g(&k.fail_open),
            ),
            (
                "as_aaa_fail_closed_total",
                "Joins refused with no AAA answer (fail-closed 503).",
                g(&k.fail_closed),
            ),
            ("as_aaa_udr_total", "UDRs sent.", g(&k.udr_sent)),
            ("as_aaa_pnr_total", "PNRs received.", g(&k.pnr_received)),
            (
                "as_aaa_revoked_total",
                "Sessions ended because a PNR revoked the channel.",
                g(&k.revoked),
            ),
            (
                "as_aaa_sessions_accounted_total",
                "Viewing sessions accounted (ACR START queued).",
                g(&k.sessions_accounted),
            ),
            (
                "as_aaa_acr_acknowledged_total",
                "ACRs answered 2001.",
                g(&k.acr_acknowledged),
            ),
            (
                "as_aaa_acr_failures_total",
                "ACR attempts that failed (sent again later).",
                g(&k.acr_failures),
            ),
            (
                "as_aaa_register_challenged_total",
                "REGISTERs answered 401.",
                g(&k.register_challenged),
            ),
            (
                "as_aaa_register_refused_total",
                "REGISTERs refused 403.",
                g(&k.register_refused),
            ),
        ] {
            write_metric(out, name, "counter", help, v);
        }
        // -1 when the outbox could not be read, so not a `u64` sample.
        write_family(
            out,
            "as_aaa_outbox_records",
            "gauge",
            "Accounting records waiting for their ACA.",
        );
        let _ = writeln!(out, "as_aaa_outbox_records {outbox}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(packages: &[&str], max: u32) -> IptvProfile {
        IptvProfile {
            sequence_number: 0,
            packages: packages.iter().map(|s| (*s).to_owned()).collect(),
            max_streams: max,
            parental_level: 0,
        }
    }

    #[test]
    fn packages_name_channels_or_star() {
        let p = profile(&["news"], 2);
        assert!(decide(&p, "news", 0, &PackageMap::new()).is_ok());
        let r = decide(&p, "sport", 0, &PackageMap::new()).unwrap_err();
        assert_eq!(r.status, 403);
        assert!(decide(&profile(&["*"], 1), "sport", 0, &PackageMap::new()).is_ok());
        assert!(decide(&profile(&[], 1), "news", 0, &PackageMap::new()).is_err());
    }

    #[test]
    fn package_map_names_channels() {
        let mut map = PackageMap::new();
        map.insert("basic".into(), vec!["news".into(), "sport".into()]);
        let p = profile(&["basic"], 1);
        assert!(decide(&p, "news", 0, &map).is_ok());
        assert!(decide(&p, "sport", 0, &map).is_ok());
        assert_eq!(decide(&p, "movies", 0, &map).unwrap_err().status, 403);
        let c: AaaSection = toml::from_str("[packages]\nbasic = [\"news\"]\n").unwrap();
        assert_eq!(c.packages.get("basic").unwrap(), &["news".to_owned()]);
    }

    #[test]
    fn stream_limit_has_a_reason() {
        let p = profile(&["*"], 2);
        assert!(decide(&p, "news", 1, &PackageMap::new()).is_ok());
        let r = decide(&p, "news", 2, &PackageMap::new()).unwrap_err();
        assert_eq!(
            (r.status, r.reason.as_str()),
            (403, "Stream limit 2 reached")
        );
    }

    /// A client with no peer configured (nothing answers) over an in-memory store.
    async fn lonely(policy: Policy) -> AaaClient {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store
            .add_subscriber(
                &crate::store::Subscriber {
                    identity: "sip:h@x".into(),
                    username: "h@x".into(),
                    realm: "iptv.example".into(),
                    ha1: digest::ha1("h@x", "iptv.example", "pw"),
                },
                &[],
                1,
                0,
                0,
            )
            .await
            .unwrap();
        let cfg = AaaSection {
            policy,
            nonce_max_age_s: 30,
            ..AaaSection::default()
        };
        AaaClient::start(&cfg, store, 1).await.unwrap().0
    }

    #[tokio::test]
    #[expect(clippy::disallowed_methods)] // a test drives the client like its driver does
    async fn no_answer_follows_the_policy() {
        let now = Instant::now();
        let c = lonely(Policy::FailClosed).await;
        let r = c.authorize("sip:a@x", "news", None, now).await.unwrap_err();
        assert_eq!(r.status, 503);
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| *n == "Retry-After" && v == "5"));
        let c = lonely(Policy::FailOpen).await;
        assert!(c.authorize("sip:a@x", "news", None, now).await.is_ok());
        assert_eq!(c.counters().fail_open.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn register_digest_stale_and_wrong() {
        let c = lonely(Policy::FailClosed).await;
        let t0 = 1_800_000_000;
        let r = c.check_register(None, b"", t0).await.unwrap_err();
        assert_eq!(r.status, 401);
        let h = &r.headers[0].1;
        assert!(!h.contains("stale"), "{h}");
        let nonce = h
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let answer = |password: &str| {
            let mut cr = Credentials {
                username: "h@x".into(),
                realm: "iptv.example".into(),
                nonce: nonce.into(),
                uri: "sip:x".into(),
                ..Credentials::default()
            };
            cr.response = digest::expected_response(
                &digest::ha1("h@x", "iptv.example", password),
                &cr,
                "REGISTER",
                b"",
            )
            .unwrap();
            format!(
                "Digest username=\"h@x\", realm=\"iptv.example\", nonce=\"{nonce}\", \
                 uri=\"sip:x\", response=\"{}\"",
                cr.response
            )
        };
        assert!(c
            .check_register(Some(&answer("pw")), b"", t0 + 1)
            .await
            .is_ok());
        let r = c
            .check_register(Some(&answer("no")), b"", t0 + 1)
            .await
            .unwrap_err();
        assert_eq!(r.status, 403);
        // The right password with a nonce past its age: 401 stale=TRUE (RFC 2617 3.2.1).
        let r = c
            .check_register(Some(&answer("pw")), b"", t0 + 31)
            .await
            .unwrap_err();
        assert_eq!(r.status, 401);
        assert!(r.headers[0].1.contains("stale=TRUE"), "{:?}", r.headers);
    }

    #[test]
    fn config_parses() {
        let c: AaaSection = toml::from_str(
            "peer = \"127.0.0.1:3868\"\npolicy = \"fail-open\"\nregister_auth = true\n",
        )
        .unwrap();
        assert_eq!(c.policy, Policy::FailOpen);
        assert!(c.register_auth);
        assert_eq!(c.profile_cache_s, 300);
        assert!(toml::from_str::<AaaSection>("polcy = 1").is_err());
    }
}
