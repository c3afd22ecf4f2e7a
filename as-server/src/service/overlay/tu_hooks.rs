//! The service's side of the overlay (see [`crate::service::overlay`]): start and stop,
//! the publish and poll tasks, remote channels in the list, joins of remote channels
//! (pulls), REGISTER bindings. A child module of the TU (`#[path]` from `tu.rs`), so it
//! reaches the service's state the way `aaa/tu_hooks.rs` does.

use std::collections::BTreeMap;

use p2psip_overlay::storage::{KindId, ValueKey};

use super::*;
use crate::service::overlay::directory::{
    self, DirChannel, DirectoryValue, RelayAd, RelaysValue, DIRECTORY_RESOURCE,
};
use crate::service::overlay::pull::{self, Pull};
use crate::service::overlay::{OverlayAs, OverlaySection, OverlayStartError, OverlayStats};
use crate::service::registrar::CurrentBinding;

/// What this AS last stored (the publisher stores only what changed, and everything again
/// on a refresh).
#[derive(Debug, Default)]
struct Published {
    directory: Option<Vec<u8>>,
    relays: BTreeMap<String, Vec<u8>>,
}

impl Service {
    /// Starts the overlay part when `cfg.enabled` (see the module docs): the peer joins,
    /// this AS's channels are stored, the directory is fetched once, and the publish and
    /// poll tasks start. `controls` are the relays' control API addresses by pool index.
    pub async fn enable_overlay(
        &self,
        cfg: &OverlaySection,
        controls: Vec<Option<SocketAddr>>,
    ) -> std::result::Result<(), OverlayStartError> {
        if !cfg.enabled || self.inner.overlay.get().is_some() {
            return Ok(());
        }
        let ov = OverlayAs::start(cfg, self.inner.cfg.contact_hostport.clone(), controls).await?;
        let _ = self.inner.overlay.set(ov);
        let mut published = Published::default();
        self.overlay_publish(&mut published, true).await;
        self.overlay_poll().await;
        let Some(ov) = self.overlay() else {
            return Ok(());
        };
        let svc = self.clone();
        let publisher = tokio::spawn(async move { svc.run_overlay_publisher(published).await });
        let svc = self.clone();
        let poller = tokio::spawn(async move { svc.run_overlay_poller().await });
        ov.loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend([publisher, poller]);
        Ok(())
    }

    /// The overlay part, when enabled.
    pub fn overlay(&self) -> Option<&OverlayAs> {
        self.inner.overlay.get()
    }

    /// Stops the overlay part: an empty directory entry is stored (so the other ASes drop
    /// this AS's channels at once, not at the lifetime's end), then the peer leaves.
    pub async fn stop_overlay(&self) {
        let Some(ov) = self.overlay() else { return };
        for t in ov
            .loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        let empty = DirectoryValue {
            v: 1,
            sip: ov.sip.clone(),
            channels: Vec::new(),
        };
        let (b, _) = directory::encode_directory(&empty, directory::MAX_VALUE);
        let store = ov
            .handle()
            .store(DIRECTORY_RESOURCE.as_bytes(), KindId::CHANNEL_DIRECTORY, b);
        if !matches!(
            tokio::time::timeout(Duration::from_secs(1), store).await,
            Ok(Ok(()))
        ) {
            debug!("empty directory entry not stored at shutdown");
        }
        ov.shutdown().await;
    }

    /// Wakes the publisher (the channel list changed).
    pub(super) fn overlay_poke(&self) {
        if let Some(ov) = self.overlay() {
            ov.poke.notify_one();
        }
    }

    /// Appends the remote channels to a local list.
    pub(super) fn overlay_extend(&self, list: &mut Vec<ChannelEntry>) {
        if let Some(ov) = self.overlay() {
            list.extend(ov.remote_channels().into_values().map(|r| r.entry));
        }
    }

    /// The list entry of a remote channel.
    pub(super) fn overlay_remote_entry(&self, id: &str) -> Option<ChannelEntry> {
        self.overlay()?.remote(id).map(|r| r.entry)
    }

    /// The `as_overlay_*` counters.
    pub(super) fn overlay_metrics(&self, text: &mut String) {
        if let Some(ov) = self.overlay() {
            ov.stats.render(text);
        }
    }

    async fn run_overlay_publisher(&self, mut published: Published) {
        let Some(ov) = self.overlay() else { return };
        let refresh = Duration::from_secs(u64::from(ov.cfg.lifetime_s / 2).max(1));
        let retry = Duration::from_millis(ov.cfg.poll_ms.max(1));
        let mut force = false;
        loop {
            let ok = self.overlay_publish(&mut published, force).await;
            let wait = if ok { refresh } else { retry };
            tokio::select! {
                () = ov.poke.notified() => force = false,
                () = tokio::time::sleep(wait) => force = ok,
            }
        }
    }

    async fn run_overlay_poller(&self) {
        let Some(ov) = self.overlay() else { return };
        let mut every = tokio::time::interval(Duration::from_millis(ov.cfg.poll_ms.max(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.overlay_poll().await;
        }
    }

    /// Stores this AS's directory entry and channel -> relays entries where they changed
    /// (all of them when `force`). `false` if a store failed (the publisher retries soon).
    async fn overlay_publish(&self, published: &mut Published, force: bool) -> bool {
        let Some(ov) = self.overlay() else {
            return true;
        };
        let list = match self.inner.catalogue.list().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "overlay: channel list not read");
                return false;
            }
        };
        ov.set_local_ids(list.iter().map(|c| c.id.clone()).collect());
        let mut channels = Vec::with_capacity(list.len());
        let mut relays: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        {
            let st = self.inner.relays.state();
            for c in list {
                let carriers = st.carriers(&c.id);
                let ads: Vec<RelayAd> = carriers
                    .iter()
                    .filter_map(|&i| {
                        let control = ov.controls.get(i).copied().flatten()?;
                        let ingest = st.ingest_of(i, &c.id)?;
                        Some(RelayAd {
                            control,
                            ingest: ingest.rtp_addr,
                            load: st
                                .relay(i)
                                .map_or(0, |r| u32::try_from(r.viewers).unwrap_or(u32::MAX)),
                        })
                    })
                    .collect();
                if !ads.is_empty() {
                    relays.insert(
                        c.id.clone(),
                        directory::encode_relays(&RelaysValue {
                            sip: ov.sip.clone(),
                            relays: ads.clone(),
                        }),
                    );
                }
                channels.push(DirChannel {
                    relays: ads.iter().map(|a| a.control).collect(),
                    id: c.id,
                    name: c.name,
                    kind: c.kind,
                    owner: c.owner,
                    created_ms: c.created_ms,
                });
            }
        }
        let value = DirectoryValue {
            v: 1,
            sip: ov.sip.clone(),
            channels,
        };
        let (bytes, dropped) = directory::encode_directory(&value, directory::MAX_VALUE);
        let mut ok = true;
        if force || published.directory.as_ref() != Some(&bytes) {
            if dropped > 0 {
                warn!(
                    dropped,
                    "overlay: channels left out of the directory entry (max-size)"
                );
                ov.stats
                    .channels_truncated
                    .fetch_add(dropped as u64, Ordering::Relaxed);
            }
            match ov
                .handle()
                .store(
                    DIRECTORY_RESOURCE.as_bytes(),
                    KindId::CHANNEL_DIRECTORY,
                    bytes.clone(),
                )
                .await
            {
                Ok(()) => {
                    OverlayStats::inc(&ov.stats.directory_stores);
                    published.directory = Some(bytes);
                }
                Err(e) => {
                    OverlayStats::inc(&ov.stats.store_failures);
                    warn!(error = %e, "overlay: directory entry not stored");
                    ok = false;
                }
            }
        }
        // Channels gone from here: an empty relay list (the driver cannot remove a value).
        let gone: Vec<String> = published
            .relays
            .keys()
            .filter(|k| !relays.contains_key(*k))
            .cloned()
            .collect();
        for id in gone {
            let empty = directory::encode_relays(&RelaysValue {
                sip: ov.sip.clone(),
                relays: Vec::new(),
            });
            if self.overlay_store_relays(ov, &id, empty).await {
                published.relays.remove(&id);
            } else {
                ok = false;
            }
        }
        for (id, v) in relays {
            if force || published.relays.get(&id) != Some(&v) {
                if self.overlay_store_relays(ov, &id, v.clone()).await {
                    published.relays.insert(id, v);
                } else {
                    ok = false;
                }
            }
        }
        ok
    }

    async fn overlay_store_relays(&self, ov: &OverlayAs, id: &str, v: Vec<u8>) -> bool {
        let res = directory::channel_resource(id);
        match ov
            .handle()
            .store(res.as_bytes(), KindId::CHANNEL_RELAYS, v)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                OverlayStats::inc(&ov.stats.store_failures);
                warn!(channel = id, error = %e, "overlay: channel relays not stored");
                false
            }
        }
    }

    /// Fetches the directory and merges it; on a change, the viewers of remote channels that
    /// vanished get a BYE and the subscribers a NOTIFY.
    async fn overlay_poll(&self) {
        let Some(ov) = self.overlay() else { return };
        OverlayStats::inc(&ov.stats.directory_fetches);
        let values = match ov
            .handle()
            .fetch(DIRECTORY_RESOURCE.as_bytes(), KindId::CHANNEL_DIRECTORY)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                OverlayStats::inc(&ov.stats.fetch_failures);
                debug!(error = %e, "overlay: directory fetch failed");
                return;
            }
        };
        let entries: Vec<(Vec<u8>, Vec<u8>)> = values
            .into_iter()
            .filter_map(|v| match v.key {
                ValueKey::Key(k) => Some((k, v.data)),
                _ => None,
            })
            .collect();
        let merged = directory::merge(&ov.key(), &ov.local_ids(), &entries);
        let skipped = merged.skipped.len() as u64;
        if ov.stats.channels_skipped.swap(skipped, Ordering::Relaxed) != skipped && skipped > 0 {
            warn!(skipped = ?merged.skipped, "overlay: remote channels not listed");
        }
        let (gone, changed) = ov.set_remote(merged.channels);
        if !changed {
            return;
        }
        debug!(?gone, "overlay: remote channels changed");
        for id in gone {
            let pulled = ov.pulls.lock().await.get(&id).is_some();
            let watched = self.state().sessions.values().any(|s| s.channel() == id);
            if pulled {
                self.overlay_stop_pull(ov, &id).await;
            }
            if pulled || watched {
                // The owner removed it: BYE to its viewers here, the local ingest goes.
                self.teardown_channel(&id, None).await;
            }
        }
        self.list_changed().await;
    }

    /// Before a join of `channel`: when another AS owns it, make sure one local relay is
    /// told where it is carried (`set_upstream` with the owner's relays, see
    /// [`crate::service::overlay::pull`]); the relay pulls one copy while it has viewers.
    /// `Ok(true)`: a remote channel.
    pub(super) async fn overlay_prepare_join(
        &self,
        channel: &str,
    ) -> std::result::Result<bool, Reject> {
        let Some(ov) = self.overlay() else {
            return Ok(false);
        };
        let Some(rc) = ov.remote(channel) else {
            return Ok(false);
        };
        let mut pulls = ov.pulls.lock().await;
        if let Some(p) = pulls.get(channel) {
            if self.inner.relays.state().carries(p.relay, channel) {
                return Ok(true);
            }
        }
        // Channel -> relays (the lookup), then the directory's addresses as a fallback.
        let res = directory::channel_resource(channel);
        let fetched: Vec<Vec<u8>> = match ov
            .handle()
            .fetch(res.as_bytes(), KindId::CHANNEL_RELAYS)
            .await
        {
            Ok(vs) => vs.into_iter().map(|v| v.data).collect(),
            Err(e) => {
                debug!(channel, error = %e, "overlay: channel relays fetch failed");
                Vec::new()
            }
        };
        let candidates = pull::candidates(
            directory::relay_candidates(&fetched)
                .into_iter()
                .map(|r| r.control),
            &rc.relays,
            &ov.controls,
        );
        let fail = |why: &str| {
            OverlayStats::inc(&ov.stats.pull_failures);
            warn!(channel, why, "overlay: remote channel not pulled");
            Reject::new(503, "Service Unavailable").with(
                "Retry-After",
                self.inner.cfg.limits.retry_after_secs.to_string(),
            )
        };
        if candidates.is_empty() {
            return Err(fail("no relay of the owner known"));
        }
        let Some(i) = self.inner.relays.state().pick_least_loaded() else {
            return Err(fail("no live local relay"));
        };
        let relay = self.relay(i).clone();
        let id = ChannelId::from(channel);
        let upstreams = candidates
            .iter()
            .map(|&control| media_relay::Upstream::Http { control })
            .collect();
        if let Err(e) = self.relay_call(i, relay.set_upstream(id, upstreams)).await {
            debug!(channel, error = %e, "overlay: set_upstream");
            return Err(fail("the local relay refused the upstream"));
        }
        // The relay carries it now (joins are placed there); no producer ingest to record.
        self.inner.relays.state().add_channel(i, channel);
        info!(channel, upstream = ?candidates, relay = %self.inner.relays.name(i), "overlay: remote channel pulled");
        pulls.insert(
            channel,
            Pull {
                relay: i,
                candidates,
            },
        );
        OverlayStats::inc(&ov.stats.pulls_started);
        Ok(true)
    }

    /// The owner removed a pulled channel: the local relay stops pulling it (its viewers
    /// get their BYE from the teardown that follows).
    async fn overlay_stop_pull(&self, ov: &OverlayAs, channel: &str) {
        let Some(p) = ov.pulls.lock().await.remove(channel) else {
            return;
        };
        let relay = self.relay(p.relay).clone();
        if let Err(e) = relay.clear_upstream(&ChannelId::from(channel)).await {
            debug!(channel, error = %e, "overlay: clear_upstream");
        }
        OverlayStats::inc(&ov.stats.pulls_stopped);
        info!(channel, "overlay: pull stopped");
    }

    /// A REGISTER succeeded: the AoR's binding goes into the overlay (RFC 7904), in the
    /// background; a failure is logged and counted, never seen by the UE.
    pub(super) fn overlay_register(&self, aor: &str, bindings: &[CurrentBinding]) {
        if self.overlay().is_none() {
            return;
        }
        let resource = directory::registration_resource(aor);
        let uri = bindings.first().map(|b| b.uri.clone()).unwrap_or_default();
        let svc = self.clone();
        tokio::spawn(async move {
            let Some(ov) = svc.overlay() else { return };
            let value = directory::encode_sip_registration(&uri);
            match ov.store_registration(&resource, value).await {
                Ok(()) => OverlayStats::inc(&ov.stats.registrations),
                Err(e) => {
                    OverlayStats::inc(&ov.stats.registration_failures);
                    warn!(aor = %resource, error = %e, "overlay: SIP-REGISTRATION not stored");
                }
            }
        });
    }
}
