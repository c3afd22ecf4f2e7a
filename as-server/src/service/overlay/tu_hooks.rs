//! The service's side of the overlay (see [`crate::service::overlay`]): start and stop,
//! the publish and poll tasks, remote channels in the list, joins and zaps of remote
//! channels (pulls, released when the last session here ends), their session rows,
//! REGISTER bindings. A child module of the TU (`#[path]` from `tu.rs`), so it
//! reaches the service's state the way `aaa/tu_hooks.rs` does.

use std::collections::BTreeMap;

use p2psip_overlay::storage::{KindId, ValueKey};

use super::*;
use crate::service::overlay::directory::{
    self, DirChannel, DirectoryValue, RelayAd, RelaysValue, DIRECTORY_RESOURCE,
};
use crate::service::overlay::pull::{self, Pull, PullHold};
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
        self.overlay_publish(&mut published, true, true).await;
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

    /// Stores what changed when poked; the directory entry again every half directory TTL
    /// (its storage time is what other ASes' [`directory::Freshness`] watch), everything
    /// again every half value lifetime. A failed store is retried every `poll_ms`.
    async fn run_overlay_publisher(&self, mut published: Published) {
        let Some(ov) = self.overlay() else { return };
        let dir_every = (ov.directory_ttl() / 2).max(Duration::from_secs(1));
        let all_every = Duration::from_secs(u64::from(ov.cfg.lifetime_s.max(2) / 2).max(1));
        let retry = Duration::from_millis(ov.cfg.poll_ms.max(1));
        let mut last_all = now().0;
        // (directory, everything) to store again even if unchanged.
        let mut force = (false, false);
        loop {
            let ok = self.overlay_publish(&mut published, force.0, force.1).await;
            if ok && force.1 {
                last_all = now().0;
            }
            let wait = if ok { dir_every } else { retry };
            tokio::select! {
                () = ov.poke.notified() => {
                    if ok {
                        force = (false, false);
                    }
                }
                () = tokio::time::sleep(wait) => {
                    if ok {
                        let all = now().0.saturating_duration_since(last_all) + dir_every / 2
                            >= all_every;
                        force = (true, all);
                    }
                }
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
    /// (the directory entry anyway when `force_dir`, all of them when `force`). `false` if
    /// a store failed (the publisher retries soon).
    async fn overlay_publish(
        &self,
        published: &mut Published,
        force_dir: bool,
        force: bool,
    ) -> bool {
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
        if force || force_dir || published.directory.as_ref() != Some(&bytes) {
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
        let entries: Vec<(Vec<u8>, u64, Vec<u8>)> = values
            .into_iter()
            .filter_map(|v| match v.key {
                ValueKey::Key(k) => Some((k, v.storage_time, v.data)),
                _ => None,
            })
            .collect();
        // Entries their AS stopped refreshing (it crashed) are left out after the TTL.
        let stale = {
            let mut fresh = ov
                .fresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let stale = fresh.observe(
                now().0,
                ov.directory_ttl(),
                entries.iter().map(|(k, t, _)| (k.as_slice(), *t)),
            );
            if fresh.newly_stale() > 0 {
                warn!(
                    entries = fresh.newly_stale(),
                    "overlay: directory entries not refreshed within the TTL left out"
                );
                ov.stats
                    .entries_stale
                    .fetch_add(fresh.newly_stale() as u64, Ordering::Relaxed);
            }
            stale
        };
        let entries: Vec<(Vec<u8>, Vec<u8>)> = entries
            .into_iter()
            .filter(|(k, _, _)| !stale.contains(k))
            .map(|(k, _, d)| (k, d))
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

    /// Before a join of (or a zap to) `channel`: when another AS owns it, make sure one
    /// local relay is told where it is carried (`set_upstream` with the owner's relays, see
    /// [`crate::service::overlay::pull`]); the relay pulls one copy while it has viewers.
    /// A new pull goes on relay `prefer` when it is live (a zapping viewer's relay), else
    /// on the least loaded one. `Ok(Some(hold))`: a remote channel, whose pull is not
    /// released while `hold` lives (keep it until the session is in the table).
    pub(super) async fn overlay_prepare_join(
        &self,
        channel: &str,
        prefer: Option<usize>,
    ) -> std::result::Result<Option<PullHold>, Reject> {
        let Some(ov) = self.overlay() else {
            return Ok(None);
        };
        let Some(rc) = ov.remote(channel) else {
            return Ok(None);
        };
        let mut pulls = ov.pulls.lock().await;
        if let Some(p) = pulls.get(channel) {
            if self.inner.relays.state().carries(p.relay, channel) {
                return Ok(Some(p.hold()));
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
        let picked = {
            let st = self.inner.relays.state();
            prefer
                .filter(|&i| st.is_healthy(i))
                .or_else(|| st.pick_least_loaded())
        };
        let Some(i) = picked else {
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
        let pull = Pull::new(i, candidates);
        let hold = pull.hold();
        pulls.insert(channel, pull);
        OverlayStats::inc(&ov.stats.pulls_started);
        Ok(Some(hold))
    }

    /// Relay failover: `channel`, which only a dead relay carried, is a pulled remote
    /// channel: it is pulled again on a live relay (the owner's relays looked up again), so
    /// its viewers move to a copy rather than to an empty ingest. `false`: not a pulled
    /// remote channel (the caller re-homes it as a local one).
    pub(super) async fn overlay_repull(&self, channel: &str) -> bool {
        let Some(ov) = self.overlay() else {
            return false;
        };
        if ov.pulls.lock().await.get(channel).is_none() {
            return false;
        }
        match self.overlay_prepare_join(channel, None).await {
            Ok(_) => info!(
                channel,
                "overlay: remote channel pulled again after a relay failure"
            ),
            Err(_) => warn!(
                channel,
                "overlay: remote channel not pulled again: its sessions end"
            ),
        }
        true
    }

    /// A session of `channel` ended, a join or zap into it failed, or a zap left it: when
    /// it is a pulled remote channel that no session here watches and no join or zap is
    /// entering, the local relay stops pulling it and its ingest goes
    /// (`clear_upstream`, `delete_ingest`); the next first join looks its relays up again.
    pub(super) async fn overlay_release_unused(&self, channel: &str) {
        let Some(ov) = self.overlay() else { return };
        let mut pulls = ov.pulls.lock().await;
        if pulls.get(channel).is_none() {
            return;
        }
        let watched = self
            .state()
            .sessions
            .values()
            .any(|s| s.channel() == channel);
        if !pulls.releasable(channel, watched) {
            return;
        }
        let Some(p) = pulls.remove(channel) else {
            return;
        };
        let relay = self.relay(p.relay).clone();
        let id = ChannelId::from(channel);
        if let Err(e) = self.relay_call(p.relay, relay.clear_upstream(&id)).await {
            debug!(channel, error = %e, "overlay: clear_upstream");
        }
        self.drop_ingest(channel).await;
        OverlayStats::inc(&ov.stats.pulls_released);
        info!(channel, relay = %self.inner.relays.name(p.relay), "overlay: pull released (no session here)");
    }

    /// Writes the row of a session that starts: a catalogue channel's, or (not in the
    /// catalogue) a remote channel's. `None` (logged) when it was not stored.
    pub(super) async fn start_row(&self, row: &SessionRow, id: &str) -> Option<String> {
        let r = match self.inner.catalogue.start_session(row, id).await {
            Err(Error::NotFound(_)) if self.overlay_remote_entry(&row.channel).is_some() => {
                let s = crate::store::Session::new(
                    id,
                    row.channel.clone(),
                    row.peer.clone(),
                    row.call_id.clone(),
                    row.relay.clone(),
                    row.started_ms,
                );
                self.inner
                    .catalogue
                    .store()
                    .start_session_unlisted(&s)
                    .await
                    .map(|()| id.to_owned())
                    .map_err(|e| Error::Store(e.to_string()))
            }
            r => r,
        };
        r.map_err(|e| warn!(channel = %row.channel, error = %e, "session row not stored"))
            .ok()
    }

    /// Records a zap of row `id` to `to` (a catalogue or a remote channel).
    pub(super) async fn zap_row(&self, id: &str, to: &str) {
        let ms = now().1;
        let r = match self.inner.catalogue.zap_session(id, to, ms).await {
            Err(Error::NotFound(_)) if self.overlay_remote_entry(to).is_some() => self
                .inner
                .catalogue
                .store()
                .switch_session_channel_unlisted(id, to, ms)
                .await
                .map(|_| ())
                .map_err(|e| Error::Store(e.to_string())),
            r => r,
        };
        if let Err(e) = r {
            warn!(channel = to, error = %e, "session zap not stored");
        }
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
    /// background, for the seconds the registrar granted it (its `expires` in the 200 OK;
    /// each re-REGISTER stores it again: the refresh); none left (an unregister): the
    /// empty URI, for the configured lifetime. A failure is logged and counted, never
    /// seen by the UE.
    pub(super) fn overlay_register(&self, aor: &str, bindings: &[CurrentBinding]) {
        if self.overlay().is_none() {
            return;
        }
        let resource = directory::registration_resource(aor);
        let (uri, lifetime) = bindings.first().map_or((String::new(), None), |b| {
            (b.uri.clone(), Some(b.expires.max(1)))
        });
        let svc = self.clone();
        tokio::spawn(async move {
            let Some(ov) = svc.overlay() else { return };
            let value = directory::encode_sip_registration(&uri);
            match ov.store_registration(&resource, value, lifetime).await {
                Ok(()) => OverlayStats::inc(&ov.stats.registrations),
                Err(e) => {
                    OverlayStats::inc(&ov.stats.registration_failures);
                    warn!(aor = %resource, error = %e, "overlay: SIP-REGISTRATION not stored");
                }
            }
        });
    }
}
