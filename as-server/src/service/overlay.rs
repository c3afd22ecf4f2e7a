//! The AS as a peer of the RELOAD overlay (RFC 6940, `p2psip_overlay`): the channel
//! directory shared by every AS, channel -> relays, and SIP-REGISTRATION bindings.
//!
//! With `[overlay] enabled = true`, [`super::app::App`] starts a peer (the
//! `p2psip_overlay::driver`, TLS links, certificates from a dev CA directory) and waits
//! until it has joined the ring (bounded by `join_timeout_ms`). Then:
//!
//! * **Directory**: the AS stores its own channels (every catalogue channel: configured,
//!   producer, personal) as ONE dictionary entry under `"iptv:directory"` (kind
//!   CHANNEL-DIRECTORY, key = its Node-ID, value [`directory::DirectoryValue`]) whenever
//!   its channel list changes (create/delete: the service's `list_changed` wakes the
//!   publisher) and again every half `directory_ttl_s` (default 60 s: one store of at most
//!   4 KB every 30 s per AS). Every `poll_ms` it fetches the whole directory, leaves out
//!   the entries whose storage time has not changed for `directory_ttl_s`
//!   ([`directory::Freshness`]: an AS that crashed without storing its empty entry; its
//!   channels leave the other ASes' lists at most `directory_ttl_s` after its last
//!   refresh, plus, when it was the peer holding the directory, the seconds the overlay
//!   takes to answer from a replica; whatever the value lifetime), and [`directory::merge`]s the other ASes' entries into its remote
//!   channel table: a remote channel never hides a local one, two remote ones with one id
//!   go to the older. A change of the table sends the `iptv-channels` NOTIFY to every
//!   subscriber; the remote channels are listed there and at `/api/channels` after the
//!   local ones.
//! * **Channel -> relays**: per local channel with an ingest, an entry under
//!   `"iptv:channel:<id>"` (kind CHANNEL-RELAYS): each relay's control address (the relay
//!   HTTP API this AS serves at `[relay] control_listen`), RTP ingest and load.
//! * **Joins of a remote channel**: `INVITE sip:<id>@<this AS>` for a channel another AS
//!   owns: the AS looks up `"iptv:channel:<id>"` (falling back to the directory's relay
//!   addresses) and declares them upstream on ONE of its relays
//!   (`RelayHandle::set_upstream` with `Upstream::Http`, the relay tree: [`pull`]); the
//!   viewer is then added to that relay as for any channel. The relay pulls one copy while
//!   it has viewers (the last leave stops it) and moves to another candidate when its
//!   upstream goes silent. Such a session is a session like any other: listed at
//!   `/api/sessions`, a session row (`Store::start_session_unlisted`: the channel is not in
//!   this AS's catalogue), ACR START/STOP, ended by BYE, ACK timeout, relay drop or
//!   revocation. When the last session of the channel here ends, the declaration is
//!   withdrawn (`clear_upstream`, ingest deleted: the next first join looks the relays up
//!   again); when the owner removes the channel, too, and its viewers here get a BYE.
//!   When the local relay that pulls it dies, the failover pulls it again on a live relay
//!   before it moves the viewers (`tu/failover.rs`).
//! * **Zaps** (re-INVITE naming another channel) go into and out of remote channels as
//!   between local ones: the target is pulled first (on the viewer's relay when it has to
//!   be set up, so the relay switches the viewer's source at once), the row follows the
//!   channel, and the channel zapped away from is released when nobody here watches it.
//! * **REGISTER**: a successful REGISTER also stores the binding (RFC 7904
//!   `sip_registration_uri`) at the AoR for as long as the registrar granted it (the
//!   StoredData lifetime, RFC 6940 section 7, is the binding's `expires` in the 200 OK,
//!   `OverlayHandle::store_as_for`): every re-REGISTER stores it again with the new
//!   expiry (a refresh), and a registration not refreshed leaves the overlay when it
//!   expires at the registrar, whatever `lifetime_s`. An unregister stores an empty URI
//!   (for `lifetime_s`). With several contacts the first one's URI and expiry are
//!   stored (the kind holds one URI per AS). The kind's USER-NODE-MATCH policy (RFC
//!   6940 section 7.3.3) wants the value signed by a certificate whose user name hashes
//!   to the AoR and whose Node-ID is the dictionary key (this peer's). The AS holds the
//!   overlay CA (the `ca_dir` key it issues its own certificate with, dev or not), so
//!   it mints one certificate per AoR (user = the AoR
//!   without scheme, Node-ID = its own; [`OverlayAs::user_identity`], cached, at most
//!   [`USER_CERTS`]) and signs each binding's StoredData with it
//!   (`OverlayHandle::store_as`, RFC 6940 section 7.1; the message is signed by the AS's
//!   own certificate). A deployment whose AS gets its certificate from an enrollment
//!   server without holding the CA key could only store for the user its own certificate
//!   names (`[overlay] user`); this AS always loads the CA key, so that case does not
//!   arise here. A failed store never fails the REGISTER (a warning and the
//!   `as_overlay_registration_failures_total` counter).
//!
//! The pure parts (value formats, merge, pull candidates) are in [`directory`] and
//! [`pull`]; the tokio part (the peer, the publish and poll tasks, the relays' control API
//! servers) is this module's [`OverlayAs`], [`serve_relay_controls`] and the service hooks
//! (`overlay/tu_hooks.rs`).

pub mod directory;
pub mod pull;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use p2psip_overlay::cert::{DevCa, NodeIdentity};
use p2psip_overlay::driver::{start, DriverConfig, DriverError, OverlayHandle};
use p2psip_overlay::link::LinkConfig;
use p2psip_overlay::wire::NodeId;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::info;

use directory::RemoteChannel;
use pull::PullTable;

/// The `[overlay]` section of the AS configuration (off by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverlaySection {
    /// Be a peer of the overlay.
    pub enabled: bool,
    /// RELOAD link listen address (port 0: any).
    pub listen: SocketAddr,
    /// A peer already in the overlay; `None`: this AS starts the overlay.
    pub bootstrap: Option<SocketAddr>,
    /// Dev CA directory (`ca.pem`, `ca.key`, as `p2psip-node ca` writes it). `None` with
    /// `dev = true`: `<temp dir>/iptv-overlay-ca/<name>`, made when missing (every AS on
    /// the machine then shares it).
    pub ca_dir: Option<PathBuf>,
    /// Make the CA directory when it is missing.
    pub dev: bool,
    /// Overlay name (the `@overlay` of certificate URIs).
    pub name: String,
    /// The user (rfc822Name) of this AS's own certificate. `None`: no user. (REGISTER
    /// bindings are signed with per-AoR user certificates, not with this one: module docs.)
    pub user: Option<String>,
    /// Node-ID as 32 hex digits; `None`: random.
    pub node_id: Option<String>,
    /// Directory fetch interval, milliseconds.
    pub poll_ms: u64,
    /// Lifetime of stored values, seconds (re-stored at half of it): the overlay drops a
    /// value not stored again within it. Not for SIP-REGISTRATION bindings, which live
    /// as long as the registration's granted expiry (module docs); an unregister's empty
    /// binding lives this long.
    pub lifetime_s: u32,
    /// Directory TTL, seconds: this AS re-stores its directory entry every half of it,
    /// and leaves out another AS's entry not re-stored within it (a crashed AS's channels
    /// leave the list after it). At most `lifetime_s`.
    pub directory_ttl_s: u32,
    /// Longest wait for the join at start-up, milliseconds.
    pub join_timeout_ms: u64,
    /// Dev/test: write every RELOAD PDU this peer sends to this pcap at shutdown (and keep
    /// them in memory for [`OverlayAs::recorded`]).
    pub pcap: Option<PathBuf>,
}

impl Default for OverlaySection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap: None,
            ca_dir: None,
            dev: true,
            name: "iptv.test".into(),
            user: None,
            node_id: None,
            poll_ms: 20,
            lifetime_s: 600,
            directory_ttl_s: 60,
            join_timeout_ms: 10_000,
            pcap: None,
        }
    }
}

/// Why the overlay part could not start.
#[derive(Debug, thiserror::Error)]
pub enum OverlayStartError {
    /// No CA directory and `dev = false`, or an unreadable one.
    #[error("CA: {0}")]
    Ca(String),
    /// A bad `node_id`.
    #[error("node_id: {0}")]
    NodeId(String),
    /// The peer did not start (bind, bootstrap link, certificates).
    #[error("overlay peer: {0}")]
    Driver(#[from] DriverError),
    /// The peer did not join within `join_timeout_ms`.
    #[error("overlay join timed out after {0} ms")]
    JoinTimeout(u64),
}

/// Counters of the overlay part (shown at `/metrics` as `as_overlay_*`).
#[derive(Debug, Default)]
pub struct OverlayStats {
    /// Directory entries stored.
    pub directory_stores: AtomicU64,
    /// Directory or channel -> relays stores that failed.
    pub store_failures: AtomicU64,
    /// Directory fetches.
    pub directory_fetches: AtomicU64,
    /// Directory fetches that failed.
    pub fetch_failures: AtomicU64,
    /// Remote channels left out (clashes, garbage).
    pub channels_skipped: AtomicU64,
    /// Channels left out of this AS's entry (over the kind's max-size).
    pub channels_truncated: AtomicU64,
    /// SIP-REGISTRATION stores.
    pub registrations: AtomicU64,
    /// SIP-REGISTRATION stores the overlay refused or did not answer.
    pub registration_failures: AtomicU64,
    /// Remote channels declared upstream on a local relay (`set_upstream`; the relay pulls
    /// one copy while it has viewers of the channel and stops on the last leave by itself).
    pub pulls_started: AtomicU64,
    /// Declarations withdrawn because the owner removed the channel (`clear_upstream`).
    pub pulls_stopped: AtomicU64,
    /// Joins of a remote channel that could not get a copy.
    pub pull_failures: AtomicU64,
    /// Declarations withdrawn because the last session of the channel here ended.
    pub pulls_released: AtomicU64,
    /// Other ASes' directory entries left out because they were not refreshed within the
    /// directory TTL.
    pub entries_stale: AtomicU64,
}

impl OverlayStats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text of the counters.
    pub fn render(&self, out: &mut String) {
        use media_relay::prometheus::write_metric;
        let rows: [(&str, &str, &AtomicU64); 13] = [
            (
                "as_overlay_directory_stores_total",
                "directory entries stored",
                &self.directory_stores,
            ),
            (
                "as_overlay_store_failures_total",
                "directory/relays stores that failed",
                &self.store_failures,
            ),
            (
                "as_overlay_directory_fetches_total",
                "directory fetches",
                &self.directory_fetches,
            ),
            (
                "as_overlay_fetch_failures_total",
                "directory fetches that failed",
                &self.fetch_failures,
            ),
            (
                "as_overlay_channels_skipped_total",
                "remote channels not listed (id clash, garbage)",
                &self.channels_skipped,
            ),
            (
                "as_overlay_channels_truncated_total",
                "own channels left out of the directory entry (size)",
                &self.channels_truncated,
            ),
            (
                "as_overlay_registrations_total",
                "SIP-REGISTRATION stores",
                &self.registrations,
            ),
            (
                "as_overlay_registration_failures_total",
                "SIP-REGISTRATION stores refused or unanswered",
                &self.registration_failures,
            ),
            (
                "as_overlay_pulls_started_total",
                "remote channels declared upstream on a local relay (pulled while watched)",
                &self.pulls_started,
            ),
            (
                "as_overlay_pulls_stopped_total",
                "remote channels withdrawn from a local relay (owner removed them)",
                &self.pulls_stopped,
            ),
            (
                "as_overlay_pull_failures_total",
                "joins of a remote channel without a copy",
                &self.pull_failures,
            ),
            (
                "as_overlay_pulls_released_total",
                "remote channels withdrawn from a local relay (last session here ended)",
                &self.pulls_released,
            ),
            (
                "as_overlay_entries_stale_total",
                "other ASes' directory entries left out (not refreshed within the TTL)",
                &self.entries_stale,
            ),
        ];
        for (name, help, v) in rows {
            write_metric(out, name, "counter", help, v.load(Ordering::Relaxed));
        }
    }
}

/// The running overlay part of one AS (held by the service).
#[derive(Debug)]
pub struct OverlayAs {
    handle: OverlayHandle,
    driver: Mutex<Option<JoinHandle<()>>>,
    pub(crate) cfg: OverlaySection,
    /// This AS's SIP address (`host:port`), written into its entries.
    pub(crate) sip: String,
    /// Control API address of each local relay (by pool index), if served.
    pub(crate) controls: Vec<Option<SocketAddr>>,
    remote: Mutex<BTreeMap<String, RemoteChannel>>,
    local_ids: Mutex<BTreeSet<String>>,
    /// Pulled remote channels; an async lock, held while a pull is set up so that
    /// concurrent first joins make one copy.
    pub(crate) pulls: tokio::sync::Mutex<PullTable>,
    pub(crate) poke: tokio::sync::Notify,
    /// When each other AS's directory entry was last refreshed.
    pub(crate) fresh: Mutex<directory::Freshness>,
    /// Counters.
    pub stats: OverlayStats,
    record: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
    pub(crate) loops: Mutex<Vec<JoinHandle<()>>>,
    /// The overlay CA (issues the per-AoR user certificates).
    ca: DevCa,
    /// User certificates by user name (AoR without scheme), at most [`USER_CERTS`].
    user_certs: Mutex<HashMap<String, Arc<NodeIdentity>>>,
}

/// Most user certificates [`OverlayAs`] keeps (cleared when full; a cleared one is
/// minted again on its user's next REGISTER).
pub const USER_CERTS: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The dev CA of `cfg`: its directory, made when missing and allowed.
fn ca(cfg: &OverlaySection) -> Result<DevCa, OverlayStartError> {
    let dir = cfg
        .ca_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("iptv-overlay-ca").join(&cfg.name));
    if !dir.join("ca.pem").exists() {
        if !cfg.dev {
            return Err(OverlayStartError::Ca(format!(
                "no ca.pem in {} (and dev = false)",
                dir.display()
            )));
        }
        p2psip_overlay::driver::control::write_ca(&dir, &cfg.name)?;
        info!(dir = %dir.display(), "overlay dev CA made");
    }
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map_err(|e| OverlayStartError::Ca(format!("{}: {e}", dir.join(f).display())))
    };
    DevCa::from_pem(&cfg.name, &read("ca.pem")?, &read("ca.key")?)
        .map_err(|e| OverlayStartError::Ca(e.to_string()))
}

impl OverlayAs {
    /// Starts the peer (identity from the CA of `cfg`) and waits until it has joined.
    /// `sip` is this AS's SIP address, `controls` its relays' control API addresses.
    pub async fn start(
        cfg: &OverlaySection,
        sip: String,
        controls: Vec<Option<SocketAddr>>,
    ) -> Result<Self, OverlayStartError> {
        let node = match &cfg.node_id {
            Some(h) => u128::from_str_radix(h.trim(), 16)
                .map(NodeId::from_u128)
                .map_err(|e| OverlayStartError::NodeId(format!("{h:?}: {e}")))?,
            None => p2psip_overlay::driver::control::random_node_id(),
        };
        let ca = ca(cfg)?;
        let identity = ca
            .issue(node, cfg.user.as_deref())
            .map_err(|e| OverlayStartError::Ca(e.to_string()))?;
        let link = LinkConfig::new(&cfg.name, identity, vec![ca.root_der()]);
        let mut dc = DriverConfig::new(link, cfg.listen, cfg.bootstrap);
        dc.lifetime = cfg.lifetime_s.max(2);
        let record = cfg.pcap.as_ref().map(|_| Arc::default());
        dc.pcap = cfg.pcap.clone();
        dc.record = record.clone();
        let (handle, task) = start(dc).await?;
        let wait = Duration::from_millis(cfg.join_timeout_ms);
        match tokio::time::timeout(wait, handle.joined()).await {
            Ok(r) => r?,
            Err(_) => {
                handle.shutdown().await;
                task.abort();
                return Err(OverlayStartError::JoinTimeout(cfg.join_timeout_ms));
            }
        }
        info!(node = %format!("{:032x}", handle.node_id().to_u128()), listen = %handle.listen_addr(), "overlay peer joined");
        Ok(Self {
            handle,
            driver: Mutex::new(Some(task)),
            cfg: cfg.clone(),
            sip,
            controls,
            remote: Mutex::default(),
            local_ids: Mutex::default(),
            pulls: tokio::sync::Mutex::default(),
            poke: tokio::sync::Notify::new(),
            fresh: Mutex::default(),
            stats: OverlayStats::default(),
            record,
            loops: Mutex::default(),
            ca,
            user_certs: Mutex::default(),
        })
    }

    /// The certificate for `user` (an AoR without scheme) on this peer's Node-ID, issued
    /// by the overlay CA and cached (module docs): what signs the user's SIP-REGISTRATION
    /// values.
    pub fn user_identity(
        &self,
        user: &str,
    ) -> Result<Arc<NodeIdentity>, p2psip_overlay::cert::CertError> {
        if let Some(id) = lock(&self.user_certs).get(user) {
            return Ok(Arc::clone(id));
        }
        let id = Arc::new(self.ca.issue(self.handle.node_id(), Some(user))?);
        let mut certs = lock(&self.user_certs);
        if certs.len() >= USER_CERTS {
            certs.clear();
        }
        certs.insert(user.to_owned(), Arc::clone(&id));
        Ok(id)
    }

    /// Stores `value` as the SIP-REGISTRATION of `user` (its AoR without scheme, which is
    /// also the resource name), signed with the user's certificate, for `lifetime_s`
    /// seconds (the registration's granted expiry; RFC 6940 section 7 StoredData
    /// lifetime), or for the configured `lifetime_s` when `None`.
    pub async fn store_registration(
        &self,
        user: &str,
        value: Vec<u8>,
        lifetime_s: Option<u32>,
    ) -> Result<(), DriverError> {
        let id = self.user_identity(user)?;
        let kind = p2psip_overlay::storage::KindId::SIP_REGISTRATION;
        match lifetime_s {
            Some(l) => {
                self.handle
                    .store_as_for(id, user.as_bytes(), kind, value, l)
                    .await
            }
            None => self.handle.store_as(id, user.as_bytes(), kind, value).await,
        }
    }

    /// The peer's handle (store/fetch through the overlay).
    pub fn handle(&self) -> &OverlayHandle {
        &self.handle
    }

    /// This peer's Node-ID as the directory's dictionary key.
    pub fn key(&self) -> Vec<u8> {
        self.handle.node_id().to_u128().to_be_bytes().to_vec()
    }

    /// Every RELOAD PDU this peer sent so far (only with `pcap` set).
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.record
            .as_ref()
            .map(|r| lock(r).clone())
            .unwrap_or_default()
    }

    /// The remote channels listed now, by id.
    pub fn remote_channels(&self) -> BTreeMap<String, RemoteChannel> {
        lock(&self.remote).clone()
    }

    /// One remote channel.
    pub fn remote(&self, id: &str) -> Option<RemoteChannel> {
        lock(&self.remote).get(id).cloned()
    }

    /// Replaces the remote table; returns the ids that vanished, and whether it changed.
    pub(crate) fn set_remote(&self, new: BTreeMap<String, RemoteChannel>) -> (Vec<String>, bool) {
        let mut r = lock(&self.remote);
        if *r == new {
            return (Vec::new(), false);
        }
        let gone = r
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        *r = new;
        (gone, true)
    }

    /// The local channel ids the last publish saw.
    pub(crate) fn local_ids(&self) -> BTreeSet<String> {
        lock(&self.local_ids).clone()
    }

    pub(crate) fn set_local_ids(&self, ids: BTreeSet<String>) {
        *lock(&self.local_ids) = ids;
    }

    /// The directory TTL (`directory_ttl_s`, at least 2 s and at most the value lifetime).
    pub fn directory_ttl(&self) -> Duration {
        let lifetime = self.cfg.lifetime_s.max(2);
        Duration::from_secs(u64::from(self.cfg.directory_ttl_s.clamp(2, lifetime)))
    }

    /// Dev/test: stops this peer as a crash would. The tasks are aborted: no Leave, no
    /// empty directory entry, the links drop. The other peers find out by themselves.
    pub fn abort(&self) {
        for t in lock(&self.loops).drain(..) {
            t.abort();
        }
        if let Some(t) = lock(&self.driver).take() {
            t.abort();
        }
    }

    /// Leaves the overlay and stops the tasks.
    pub async fn shutdown(&self) {
        for t in lock(&self.loops).drain(..) {
            t.abort();
        }
        self.handle.shutdown().await;
        let task = lock(&self.driver).take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// Serves each relay's HTTP control API (`media_relay::driver::http::router`) on
/// `listen` (`[relay] control_listen`): relay `i` on port `port + i`, or on an OS-chosen
/// port each when the port is 0. Returns the bound addresses by relay index and the
/// server tasks (they end when `shutdown` turns true).
pub async fn serve_relay_controls(
    listen: Option<SocketAddr>,
    relays: &[media_relay::RelayHandle],
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Result<(Vec<Option<SocketAddr>>, Vec<JoinHandle<()>>), (SocketAddr, std::io::Error)> {
    let Some(base) = listen else {
        return Ok((vec![None; relays.len()], Vec::new()));
    };
    let mut addrs = Vec::with_capacity(relays.len());
    let mut tasks = Vec::with_capacity(relays.len());
    for (i, h) in relays.iter().enumerate() {
        let mut addr = base;
        if base.port() != 0 {
            let port = u16::try_from(usize::from(base.port()) + i).unwrap_or(0);
            addr.set_port(port);
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| (addr, e))?;
        let bound = listener.local_addr().map_err(|e| (addr, e))?;
        addrs.push(Some(bound));
        let router = media_relay::driver::http::router(h.clone());
        tasks.push(crate::api::serve_until(
            listener,
            router,
            shutdown.clone(),
            "relay control API",
        ));
        info!(relay = i, control = %bound, "relay control API");
    }
    Ok((addrs, tasks))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn off_by_default_and_parsed_from_toml() {
        let d = Config::default();
        assert!(!d.overlay.enabled);
        assert_eq!(d.relay.control_listen, None);
        let c: Config = toml::from_str(
            r#"
            [relay]
            control_listen = "127.0.0.1:0"
            [overlay]
            enabled = true
            listen = "127.0.0.1:7000"
            bootstrap = "127.0.0.1:7001"
            ca_dir = "/tmp/ca"
            name = "lab.test"
            user = "alice@lab.test"
            poll_ms = 50
            pcap = "/tmp/as.pcap"
            "#,
        )
        .unwrap();
        assert!(c.overlay.enabled);
        assert_eq!(c.overlay.listen.port(), 7000);
        assert_eq!(c.overlay.bootstrap.map(|a| a.port()), Some(7001));
        assert_eq!(c.overlay.name, "lab.test");
        assert_eq!(c.overlay.poll_ms, 50);
        assert_eq!(c.overlay.lifetime_s, 600, "default kept");
        assert_eq!(c.overlay.directory_ttl_s, 60, "default kept");
        assert_eq!(c.relay.control_listen.map(|a| a.port()), Some(0));
        assert!(toml::from_str::<Config>("[overlay]\nnope = 1\n").is_err());
    }
}
