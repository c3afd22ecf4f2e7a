//! The running AAA: the Diameter node ([`crate::diameter::driver::spawn`] with a listener),
//! the loop that answers requests from the AS peers (through [`super::handler`] and the
//! store), PNR pushes when a profile changes, and the operator HTTP API ([`super::api`]).
//!
//! ```text
//!  AS ──CER/UDR/ACR──► driver (router, peers) ──IncomingRequest──► serve loop
//!                                                    one task per request (≤ 256 at once)
//!                         classify ─► Store::get_profile / Store::insert_cdr ─► answer
//!  operator ──POST /api/subscribers/{id}/profile──► AaaHandle::update_profile
//!        Store::update_profile ─► PNR to every open peer (Destination-Host = its host) ─► PNA
//! ```
//!
//! This is a driver: it reads the clock (one function) and owns the tokio tasks.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::config::AaaConfig;
use super::digest;
use super::handler::{self, Action, LocalIdentity};
use crate::diameter::base::{Capabilities, DisconnectCause, Outcome, VendorSpecificApplicationId};
use crate::diameter::driver::{
    self, DiameterClient, DriverError, IncomingRequests, ListenSpec, NodeConfig, PeerSpec,
};
use crate::diameter::peer::{PeerConfig, PeerState};
use crate::diameter::router::RouterConfig;
use crate::diameter::sh::{experimental, Pna};
use crate::diameter::{ApplicationId, Message, ResultCode, VendorId};
use crate::store::{CdrInsert, Error as StoreError, Profile, ProfileUpdate, Store, Subscriber};

/// Requests handled at once (more wait in the driver's queue, then get 3004).
const MAX_IN_FLIGHT: usize = 256;

/// Why the AAA could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AaaError {
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The Diameter listener.
    #[error("diameter: {0}")]
    Driver(#[from] DriverError),
    /// The TLS configuration.
    #[error("TLS: {0}")]
    Tls(#[from] crate::driver::tls::TlsError),
    /// The HTTP listener.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A configured subscriber could not be created.
    #[error("seeding subscriber {identity}: {source}")]
    Seed {
        /// Identity.
        identity: String,
        /// Why.
        source: StoreError,
    },
}

/// Counters of the AAA (a snapshot; see [`AaaHandle::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AaaStats {
    /// UDRs answered with a profile.
    pub udr_profiles: u64,
    /// UDRs for unknown users (5001).
    pub udr_unknown: u64,
    /// ACRs stored as new CDRs.
    pub acr_stored: u64,
    /// ACRs that repeated a stored record (answered 2001, not stored again).
    pub acr_duplicates: u64,
    /// ACRs that could not be stored (answered 4002).
    pub acr_failed: u64,
    /// Requests refused at once (malformed, unsupported command/application, ...).
    pub refused: u64,
    /// PNRs sent.
    pub pnr_sent: u64,
    /// PNAs with 2001.
    pub pna_success: u64,
    /// PNRs failed (no answer, or an error answer).
    pub pna_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    udr_profiles: AtomicU64,
    udr_unknown: AtomicU64,
    acr_stored: AtomicU64,
    acr_duplicates: AtomicU64,
    acr_failed: AtomicU64,
    refused: AtomicU64,
    pnr_sent: AtomicU64,
    pna_success: AtomicU64,
    pna_failed: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> AaaStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AaaStats {
            udr_profiles: g(&self.udr_profiles),
            udr_unknown: g(&self.udr_unknown),
            acr_stored: g(&self.acr_stored),
            acr_duplicates: g(&self.acr_duplicates),
            acr_failed: g(&self.acr_failed),
            refused: g(&self.refused),
            pnr_sent: g(&self.pnr_sent),
            pna_success: g(&self.pna_success),
            pna_failed: g(&self.pna_failed),
        }
    }
}

/// The outcome of one PNR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushResult {
    /// The AS peer (its Origin-Host).
    pub peer: String,
    /// Whether it answered PNA 2001.
    pub ok: bool,
    /// The result it answered, or why there was none.
    pub detail: String,
}

/// What a profile change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    /// The new profile.
    pub profile: Profile,
    /// One entry per AS peer notified.
    pub pushed: Vec<PushResult>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) local: LocalIdentity,
    pub(super) store: Store,
    client: DiameterClient,
    counters: Counters,
    /// Origin-Realm of each AS peer seen, by lower-case Origin-Host (PNR's
    /// Destination-Realm).
    realms: Mutex<HashMap<String, String>>,
    started_secs: u64,
    next_session: AtomicU64,
}

#[expect(clippy::disallowed_methods)]
fn unix_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Shared {
    async fn handle(&self, req: &Message) -> Message {
        if let Some((host, realm)) = handler::origin(req) {
            let mut r = self.realms.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() < 4096 || r.contains_key(&host.to_ascii_lowercase()) {
                r.insert(host.to_ascii_lowercase(), realm);
            }
        }
        match handler::classify(&self.local, req) {
            Action::Answer(a) => {
                inc(&self.counters.refused);
                a
            }
            Action::Udr(udr) => {
                let id = udr.user_identity.public_identity.as_deref().unwrap_or("");
                match self.store.get_profile(id).await {
                    Ok(p) => {
                        inc(&self.counters.udr_profiles);
                        handler::uda_profile(&self.local, &udr, req, &p)
                    }
                    Err(StoreError::NotFound(_)) => {
                        inc(&self.counters.udr_unknown);
                        handler::uda_outcome(
                            &self.local,
                            &udr,
                            req,
                            handler::experimental_outcome(
                                experimental::DIAMETER_ERROR_USER_UNKNOWN,
                            ),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "aaa: profile lookup failed");
                        inc(&self.counters.refused);
                        handler::uda_outcome(
                            &self.local,
                            &udr,
                            req,
                            Outcome::Result(ResultCode::DIAMETER_UNABLE_TO_COMPLY),
                        )
                    }
                }
            }
            Action::Acr { acr, retransmit } => {
                let cdr = handler::cdr_from_acr(&acr, retransmit, unix_ms());
                match self.store.insert_cdr(&cdr).await {
                    Ok(CdrInsert::Stored) => {
                        inc(&self.counters.acr_stored);
                        handler::aca(&self.local, &acr, req, ResultCode::DIAMETER_SUCCESS)
                    }
                    Ok(CdrInsert::Duplicate) => {
                        inc(&self.counters.acr_duplicates);
                        tracing::debug!(session = %acr.session_id, n = acr.record_number, "aaa: duplicate ACR");
                        handler::aca(&self.local, &acr, req, ResultCode::DIAMETER_SUCCESS)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "aaa: CDR not stored");
                        inc(&self.counters.acr_failed);
                        // RFC 6733 section 9.4: the client keeps the record and retries.
                        handler::aca(&self.local, &acr, req, ResultCode::DIAMETER_OUT_OF_SPACE)
                    }
                }
            }
        }
    }

    fn session_id(&self) -> String {
        // RFC 6733 section 8.8: <DiameterIdentity>;<high 32 bits>;<low 32 bits>
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        format!("{};{};{}", self.local.origin_host, self.started_secs, n)
    }

    /// Send the profile to every open peer in a PNR; one result per peer.
    pub(super) async fn push(&self, p: &Profile) -> Vec<PushResult> {
        let peers: Vec<String> = self
            .client
            .peers()
            .into_iter()
            .filter(|i| matches!(i.state, PeerState::IOpen | PeerState::ROpen))
            .filter_map(|i| i.remote_host)
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for host in peers {
            let realm = self
                .realms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&host.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| self.local.origin_realm.clone());
            let msg = handler::pnr(&self.local, self.session_id(), &host, &realm, p);
            let client = self.client.clone();
            inc(&self.counters.pnr_sent);
            set.spawn(async move {
                let r = client.request(msg).await;
                (host, r)
            });
        }
        let mut out = Vec::new();
        while let Some(j) = set.join_next().await {
            let Ok((peer, r)) = j else { continue };
            let (ok, detail) = match r {
                Ok(ans) => match Pna::from_message(&ans) {
                    Ok(pna) if pna.outcome.is_success() => (true, "2001".to_owned()),
                    Ok(pna) => (false, format!("{:?}", pna.outcome)),
                    Err(_) => (
                        false,
                        ans.result_code()
                            .map_or_else(|| "malformed PNA".to_owned(), |c| c.to_string()),
                    ),
                },
                Err(e) => (false, e.to_string()),
            };
            inc(if ok {
                &self.counters.pna_success
            } else {
                &self.counters.pna_failed
            });
            out.push(PushResult { peer, ok, detail });
        }
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    pub(super) async fn update_profile(
        &self,
        identity: &str,
        update: &ProfileUpdate,
    ) -> Result<ProfileChange, AaaError> {
        let profile = self
            .store
            .update_profile(identity, update, unix_ms())
            .await?;
        let pushed = self.push(&profile).await;
        Ok(ProfileChange { profile, pushed })
    }

    pub(super) fn stats(&self) -> AaaStats {
        self.counters.snapshot()
    }

    pub(super) fn open_peers(&self) -> usize {
        self.client.open_peers()
    }
}

/// The embedded AAA (HSS for Sh, CDF for Rf).
#[derive(Debug)]
pub struct Aaa;

impl Aaa {
    /// Open the configured store (migrations run), seed the subscribers, and start the
    /// Diameter node and the HTTP API. Listeners with port 0 pick a free port (see
    /// [`AaaHandle::local_addr`]).
    pub async fn start(cfg: &AaaConfig) -> Result<AaaHandle, AaaError> {
        let store = Store::connect(&cfg.database.url).await?;
        let mut h = Self::start_with_store(cfg, store).await?;
        h.owns_store = true;
        Ok(h)
    }

    /// As [`Aaa::start`] over an open store (the lab shares the AS's database; the store is
    /// not closed by [`AaaHandle::shutdown`]).
    pub async fn start_with_store(cfg: &AaaConfig, store: Store) -> Result<AaaHandle, AaaError> {
        seed(cfg, &store).await?;
        let d = &cfg.diameter;
        let local = LocalIdentity {
            origin_host: d.origin_host.clone(),
            origin_realm: d.origin_realm.clone(),
        };
        let started_ms = unix_ms();
        let started_secs = u64::try_from(started_ms / 1000).unwrap_or(0);
        let ip = match d.listen.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let caps = Capabilities {
            origin_host: d.origin_host.clone(),
            origin_realm: d.origin_realm.clone(),
            host_ip_addresses: vec![ip],
            vendor_id: VendorId(0),
            product_name: "iptv-as-aaa".into(),
            origin_state_id: Some(started_secs as u32),
            supported_vendor_ids: vec![VendorId::TGPP],
            auth_application_ids: vec![],
            inband_security_ids: vec![],
            acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
            vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
            firmware_revision: None,
        };
        let mut template = PeerConfig::new(caps);
        template.connect = false;
        template.watchdog.tw_init = Duration::from_secs(d.watchdog_secs);
        template.request_timeout = Duration::from_secs(d.request_timeout_secs);
        let peers = if d.accept_any_peer {
            Vec::new()
        } else {
            d.peers
                .iter()
                .map(|h| {
                    let mut c = template.clone();
                    c.remote_host = Some(h.clone());
                    PeerSpec {
                        config: c,
                        addr: None,
                        tls: None,
                    }
                })
                .collect()
        };
        let (tls, cert) = if d.tls {
            let (c, leaf) =
                crate::driver::tls::server_config(d.tls_cert.as_deref(), d.tls_key.as_deref())?;
            (Some(c), Some(leaf))
        } else {
            (None, None)
        };
        let (client, incoming) = driver::spawn(NodeConfig {
            router: RouterConfig {
                accept_unknown_peers: d.accept_any_peer,
                unknown_peer: Some(template),
                ..RouterConfig::default()
            },
            peers,
            listen: Some(ListenSpec {
                addr: d.listen,
                tls,
            }),
            ..NodeConfig::default()
        })
        .await?;
        let local_addr = client.local_addr().unwrap_or(d.listen);
        let shared = Arc::new(Shared {
            local,
            store,
            client,
            counters: Counters::default(),
            realms: Mutex::new(HashMap::new()),
            started_secs,
            next_session: AtomicU64::new(1),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(serve(shared.clone(), incoming))];
        let mut http_addr = None;
        if let Some(addr) = cfg.http.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AaaError::Bind { addr, source })?;
            http_addr = listener.local_addr().ok();
            let router = super::api::router(shared.clone());
            tasks.push(crate::api::serve_until(
                listener,
                router,
                shutdown_rx.clone(),
                "aaa API",
            ));
        }
        tracing::info!(%local_addr, host = %cfg.diameter.origin_host, "aaa: Diameter listening");
        Ok(AaaHandle {
            shared,
            local_addr,
            http_addr,
            tls_certificate: cert,
            shutdown_tx,
            tasks,
            owns_store: false,
        })
    }
}

/// Create the configured subscribers that do not exist yet.
async fn seed(cfg: &AaaConfig, store: &Store) -> Result<(), AaaError> {
    let now = unix_ms();
    for s in &cfg.subscribers {
        let username = s.username();
        let realm = s.realm.clone().unwrap_or_else(|| cfg.digest.realm.clone());
        let ha1 = match (&s.password, &s.ha1) {
            (_, Some(h)) => h.to_ascii_lowercase(),
            (Some(p), None) => digest::ha1(&username, &realm, p),
            (None, None) => continue, // refused by validate()
        };
        let sub = Subscriber {
            identity: s.identity.clone(),
            username,
            realm,
            ha1,
        };
        match store
            .add_subscriber(&sub, &s.packages, s.max_streams, s.parental_level, now)
            .await
        {
            Ok(()) => tracing::info!(identity = %s.identity, "aaa: subscriber created"),
            Err(StoreError::Duplicate(_)) => {}
            Err(source) => {
                return Err(AaaError::Seed {
                    identity: s.identity.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

async fn serve(shared: Arc<Shared>, mut incoming: IncomingRequests) {
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(req) = incoming.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let answer = s.handle(&req.request).await;
            req.answer(answer);
            drop(permit);
        });
    }
}

/// A running AAA ([`Aaa::start`]).
#[derive(Debug)]
pub struct AaaHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    tls_certificate: Option<CertificateDer<'static>>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    owns_store: bool,
}

impl AaaHandle {
    /// The Diameter listening address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The HTTP API address, if enabled.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The certificate the TLS listener presents (for clients to trust), if TLS is on.
    #[must_use]
    pub fn tls_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls_certificate.as_ref()
    }

    /// The AAA's Origin-Host.
    #[must_use]
    pub fn origin_host(&self) -> &str {
        &self.shared.local.origin_host
    }

    /// The AAA's Origin-Realm.
    #[must_use]
    pub fn origin_realm(&self) -> &str {
        &self.shared.local.origin_realm
    }

    /// The store (subscribers, profiles, CDRs).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> AaaStats {
        self.shared.stats()
    }

    /// AS peers connected now.
    #[must_use]
    pub fn open_peers(&self) -> usize {
        self.shared.open_peers()
    }

    /// Change a subscriber's profile (version bumped) and push it to every connected AS
    /// peer in a PNR (TS 29.329 section 6.1.7); waits for the PNAs (bounded by
    /// `request_timeout_secs`).
    pub async fn update_profile(
        &self,
        identity: &str,
        update: &ProfileUpdate,
    ) -> Result<ProfileChange, AaaError> {
        self.shared.update_profile(identity, update).await
    }

    /// Stop: DPR to the peers (DPA awaited, bounded), the HTTP API and the request loop;
    /// the store is closed if [`Aaa::start`] opened it.
    pub async fn shutdown(self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.shared.client.stop(DisconnectCause::REBOOTING),
        )
        .await;
        let _ = self.shutdown_tx.send(true);
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(2), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
        if self.owns_store {
            self.shared.store.close().await;
        }
    }
}
