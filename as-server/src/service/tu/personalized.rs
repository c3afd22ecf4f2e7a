//! The service side of personalised channels (see [`crate::service::personalized`] for the
//! definition and the flows): the SIP MESSAGE handler, creation in the catalogue and on the
//! relays, the category table.
//!
//! A personalised channel is made on every live relay that has all its sources (a
//! test-pattern source is on every relay, a producer or personal channel on one; with the
//! relay tree, every relay pulls every channel), so a viewer placed on any of them gets the
//! same schedule; each relay splices its own copy. Sources spread over relays (`[relay]
//! count` > 1, no relay has them all): the relay with most of them pulls the others from
//! their ingest relays (`RelayHandle::set_upstream`, `media_relay::tree`); the splicer holds
//! each such pull like a viewer would, and the relay stops it when no personalised channel
//! there uses the source any more.
//! Deletion is the common channel teardown (`delete_ingest` on each relay removes the
//! splicer).
//!
//! Persistence: the channel's row keeps its definition ([`def::Stored`]: the definition as
//! created and the schedule in force, the `definition` column), so an AS restarted on the
//! same database re-creates each personalised channel on its fresh relays
//! ([`Service::restore_personalized`], from `app.rs` start-up) with the URI it had. Slots
//! whose source is gone by then are dropped (warning logged); a channel left without any
//! slot, or that no relay can splice, is removed (warning logged).
//!
//! Deleting a source (`DELETE /api/channels/{id}`, a personal channel's owner hanging up)
//! removes that source's slots from every personalised channel that uses it, on the relays
//! (`RelayHandle::update_personalized`: viewers stay, the new schedule starts at once) and
//! in the store; a personalised channel left without any slot is deleted like any channel
//! (its viewers get a BYE, subscribers a NOTIFY). So the operator never keeps a channel
//! that shows a frozen source, and a restart shows what ran before it.

use std::collections::BTreeMap;

use media_relay::control::Error as RelayError;
use tracing::{debug, info, warn};

use super::{error_reject, now, relay_err, Service};
use crate::error::{Error, Result};
use crate::service::channel_list::ChannelEntry;
use crate::service::personal;
use crate::service::personalized::{
    self as def, Created, Definition, DefinitionError, SlotDef, Stored,
};
use crate::service::rules::Reject;
use crate::service::{sipmsg, TuRequest};
use crate::sip::{HeaderName, Response};
use crate::store::{Channel, ChannelKind};

fn store_err(e: crate::store::Error) -> Error {
    match e {
        crate::store::Error::Duplicate(m) => Error::Conflict(m),
        crate::store::Error::NotFound(m) => Error::NotFound(m),
        e => Error::Store(e.to_string()),
    }
}

fn invalid(e: DefinitionError) -> Error {
    Error::Invalid(e.reason_phrase())
}

impl Service {
    /// Sets the category table used by category rules (`[categories]` of the configuration:
    /// category -> channel ids).
    pub fn set_categories(&self, categories: BTreeMap<String, Vec<String>>) {
        *self
            .inner
            .categories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = categories;
    }

    /// The category table.
    pub fn categories(&self) -> BTreeMap<String, Vec<String>> {
        self.inner
            .categories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Creates a personalised channel from its definition; `owner` is the creator's AoR (the
    /// MESSAGE's From), `None` over HTTP. Errors: `Invalid` with the reason (bad definition,
    /// unknown or unusable source, sources on no common relay), `Conflict` (id taken),
    /// relay errors.
    pub async fn create_personalized(
        &self,
        definition: Definition,
        owner: Option<String>,
    ) -> Result<Created> {
        let name = definition.name.trim().to_owned();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::Invalid("Name must be 1 to 200 bytes".into()));
        }
        let channels = self.inner.catalogue.list_raw().await?;
        let categories = self.categories();
        let slots = def::expand(&definition, &categories, |c| {
            channels.iter().any(|ch| ch.id == c)
        })
        .map_err(invalid)?;
        let mut sources: Vec<String> = Vec::new();
        for slot in &slots {
            match channels.iter().find(|ch| ch.id == slot.channel) {
                None => {
                    return Err(invalid(DefinitionError::UnknownChannel(
                        slot.channel.clone(),
                    )))
                }
                Some(ch) if ch.kind == ChannelKind::Personalized => {
                    return Err(invalid(DefinitionError::BadSource(ch.id.clone())))
                }
                Some(_) => {}
            }
            if !sources.contains(&slot.channel) {
                sources.push(slot.channel.clone());
            }
        }
        let id = match definition.id.clone() {
            Some(id) => {
                if !personal::is_valid_channel_id(&id) {
                    return Err(Error::Invalid(format!(
                        "Channel id {id:?}: use 1-64 of a-z 0-9 - _ ."
                    )));
                }
                if channels.iter().any(|c| c.id == id) {
                    return Err(Error::Conflict(format!("channel {id}")));
                }
                id
            }
            None => personal::unique_id(&name, |c| channels.iter().any(|t| t.id == c))
                .ok_or_else(|| Error::Conflict("no free id for this name".into()))?,
        };
        let targets = self.splice_targets(&sources).await;
        if targets.is_empty() {
            return Err(Error::Invalid("Sources are not on a live relay".into()));
        }
        let spec = def::relay_spec(&id, &slots);
        let mut made: Vec<usize> = Vec::new();
        let mut last_err = None;
        for i in targets {
            let relay = self.relay(i).clone();
            match self
                .relay_call(i, relay.create_personalized(spec.clone()))
                .await
            {
                Ok(_) => {
                    self.inner.relays.state().add_channel(i, &id);
                    made.push(i);
                }
                Err(e) => {
                    debug!(channel = %id, relay = %self.inner.relays.name(i), error = %e, "create_personalized");
                    last_err = Some(e);
                }
            }
        }
        let Some(&first) = made.first() else {
            let retry = self.inner.cfg.limits.retry_after_secs;
            return Err(match last_err {
                Some(RelayError::UnknownChannel(c)) => {
                    invalid(DefinitionError::UnknownChannel(c.to_string()))
                }
                Some(RelayError::Invalid(m)) => Error::Invalid(m.to_owned()),
                Some(e) => relay_err(e, retry),
                None => Error::Overloaded { retry_after: retry },
            });
        };
        let entry = ChannelEntry {
            id: id.clone(),
            name,
            kind: ChannelKind::Personalized.as_str().to_owned(),
            owner,
            created_ms: now().1,
        };
        let stored = Stored {
            definition,
            schedule: slots.clone(),
        };
        let row = Channel {
            id: id.clone(),
            name: entry.name.clone(),
            kind: ChannelKind::Personalized,
            owner: entry.owner.clone(),
            created_ms: entry.created_ms,
            ingest_addr: None,
            relay: Some(self.inner.relays.name(first).to_owned()),
        };
        if let Err(e) = self
            .inner
            .catalogue
            .store()
            .create_channel_with_definition(&row, &stored.to_json())
            .await
            .map_err(store_err)
        {
            self.drop_ingest(&id).await;
            return Err(e);
        }
        let relays: Vec<String> = made
            .iter()
            .map(|&i| self.inner.relays.name(i).to_owned())
            .collect();
        info!(channel = %id, ?relays, slots = slots.len(), "personalised channel created");
        self.list_changed().await;
        Ok(Created {
            uri: format!("sip:{id}@{}", self.inner.cfg.domain),
            id,
            channel: entry,
            schedule: slots,
            relays,
        })
    }

    /// The relays to splice a channel of `sources` on: every live relay that has all of them
    /// (an ingest, or a pull of the relay tree); when none has and the sources are spread
    /// over relays, the live relay that has most of them, made to pull each other one from
    /// the relays with its ingest (`RelayHandle::set_upstream`: the relay holds that pull
    /// while the source feeds a splicer there, viewers or not, and stops it when no
    /// personalised channel uses the source any more, `media_relay::tree`). Empty when a
    /// source is on no live relay or a pull cannot be set.
    async fn splice_targets(&self, sources: &[String]) -> Vec<usize> {
        let (best, missing) = {
            let st = self.inner.relays.state();
            let has = |i: usize, s: &str| st.carries(i, s) || st.pullers(s).contains(&i);
            let healthy = st.healthy();
            let all: Vec<usize> = healthy
                .iter()
                .copied()
                .filter(|&i| sources.iter().all(|s| has(i, s)))
                .collect();
            if !all.is_empty() {
                return all;
            }
            let Some(best) = healthy.iter().copied().max_by_key(|&i| {
                (
                    sources.iter().filter(|s| has(i, s)).count(),
                    std::cmp::Reverse(i),
                )
            }) else {
                return Vec::new();
            };
            let mut missing = Vec::new();
            for s in sources.iter().filter(|s| !has(best, s)) {
                // Ingest relays only: a pulling relay is never a candidate (no loops).
                let homes = st.carriers(s);
                if homes.is_empty() {
                    return Vec::new();
                }
                missing.push((s.clone(), homes));
            }
            (best, missing)
        };
        let relay = self.relay(best).clone();
        for (source, homes) in missing {
            let candidates: Vec<media_relay::Upstream> = homes
                .iter()
                .map(|&h| media_relay::Upstream::Local(self.relay(h).clone()))
                .collect();
            let channel = media_relay::control::ChannelId::from(source.as_str());
            match self
                .relay_call(best, relay.set_upstream(channel, candidates))
                .await
            {
                Ok(()) => self.inner.relays.state().set_pulled(best, &source, true),
                Err(e) => {
                    warn!(source = %source, relay = %self.inner.relays.name(best), error = %e, "relay cannot pull a source of a personalised channel");
                    return Vec::new();
                }
            }
            info!(source = %source, relay = %self.inner.relays.name(best), "relay pulls a source for a personalised channel");
        }
        vec![best]
    }

    /// Makes personalised channel `id` with `slots` on every healthy relay that carries all
    /// its sources; the relays that made it.
    async fn splice_on_relays(&self, id: &str, slots: &[SlotDef]) -> Vec<usize> {
        let mut sources: Vec<String> = Vec::new();
        for s in slots {
            if !sources.contains(&s.channel) {
                sources.push(s.channel.clone());
            }
        }
        let targets = self.splice_targets(&sources).await;
        let spec = def::relay_spec(id, slots);
        let mut made = Vec::new();
        for i in targets {
            let relay = self.relay(i).clone();
            match self
                .relay_call(i, relay.create_personalized(spec.clone()))
                .await
            {
                Ok(_) => {
                    self.inner.relays.state().add_channel(i, id);
                    made.push(i);
                }
                Err(e) => {
                    debug!(channel = %id, relay = %self.inner.relays.name(i), error = %e, "create_personalized");
                }
            }
        }
        made
    }

    /// Start-up: re-creates every personalised channel of the store on the relays, from its
    /// stored schedule (module docs). Call after the other channels are restored (they are
    /// the sources). A channel without a readable definition (made by an older version),
    /// without any source left, or that no relay can splice is removed, with a warning.
    pub async fn restore_personalized(&self) {
        let store = self.inner.catalogue.store().clone();
        let (channels, defs) = match (
            store.list_channels().await,
            store.channel_definitions().await,
        ) {
            (Ok(c), Ok(d)) => (c, d),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "personalised channels not restored: store");
                return;
            }
        };
        let defs: BTreeMap<String, String> = defs.into_iter().collect();
        let is_source = |c: &str| {
            channels
                .iter()
                .any(|ch| ch.id == c && ch.kind != ChannelKind::Personalized)
        };
        for ch in channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Personalized)
        {
            let stored = match defs.get(&ch.id).map(|d| Stored::from_json(d)) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    warn!(channel = %ch.id, error = %e, "personalised channel removed: unreadable definition");
                    let _ = store.delete_channel(&ch.id).await;
                    continue;
                }
                None => {
                    warn!(channel = %ch.id, "personalised channel removed: no stored definition");
                    let _ = store.delete_channel(&ch.id).await;
                    continue;
                }
            };
            let mut kept = stored.clone();
            for src in stored.sources() {
                if !is_source(&src) {
                    warn!(channel = %ch.id, source = %src, "source of a personalised channel is gone: its slots dropped");
                    kept.remove_source(&src);
                }
            }
            if kept.schedule.is_empty() {
                warn!(channel = %ch.id, "personalised channel removed: none of its sources exists");
                let _ = store.delete_channel(&ch.id).await;
                continue;
            }
            let made = self.splice_on_relays(&ch.id, &kept.schedule).await;
            if made.is_empty() {
                warn!(channel = %ch.id, "personalised channel removed: no relay carries all its sources");
                let _ = store.delete_channel(&ch.id).await;
                continue;
            }
            if kept != stored {
                if let Err(e) = store
                    .set_channel_definition(&ch.id, Some(&kept.to_json()))
                    .await
                {
                    warn!(channel = %ch.id, error = %e, "personalised channel definition not updated");
                }
            }
            info!(channel = %ch.id, slots = kept.schedule.len(), relays = made.len(), "personalised channel restored");
        }
    }

    /// Failover: the personalised channels among `channels` (those with a stored
    /// definition).
    pub(super) async fn personalized_among(&self, channels: &[String]) -> Vec<String> {
        match self.inner.catalogue.store().channel_definitions().await {
            Ok(defs) => defs
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| channels.contains(id))
                .collect(),
            Err(e) => {
                warn!(error = %e, "personalised channels not found: store");
                Vec::new()
            }
        }
    }

    /// Failover: personalised channel `id` lost every relay that spliced it; it is made
    /// again from its stored schedule on the live relays (its sources re-homed before), so
    /// its viewers move to a splicer and not to an empty channel. A failure is logged; its
    /// viewers' sessions then end like those of any channel without a relay.
    pub(super) async fn rehome_personalized(&self, id: &str) {
        let store = self.inner.catalogue.store().clone();
        let stored = match store
            .channel_definition(id)
            .await
            .map(|d| d.map(|d| Stored::from_json(&d)))
        {
            Ok(Some(Ok(s))) => s,
            _ => {
                warn!(channel = %id, "personalised channel lost its relay: no readable definition");
                return;
            }
        };
        let made = self.splice_on_relays(id, &stored.schedule).await;
        match made.first() {
            Some(&i) => {
                info!(channel = %id, relay = %self.inner.relays.name(i), "personalised channel re-made");
            }
            None => {
                warn!(channel = %id, "personalised channel lost its relay: no live relay has its sources")
            }
        }
    }

    /// Source channel `source` was deleted: its slots leave every personalised channel that
    /// used it, on the relays and in the store; a channel left without a slot is deleted
    /// (module docs). Called by the common channel teardown, which tears down the channels
    /// this returns (those left without a slot).
    pub(super) async fn source_removed(&self, source: &str) -> Vec<String> {
        // Two sources deleted at once (two owners hanging up) must not both rewrite one
        // definition from what they read before the other's write.
        static EDITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _edit = EDITS.lock().await;
        let mut emptied = Vec::new();
        let store = self.inner.catalogue.store().clone();
        let defs = match store.channel_definitions().await {
            Ok(d) => d,
            Err(e) => {
                warn!(channel = source, error = %e, "personalised channels not updated: store");
                return emptied;
            }
        };
        for (id, text) in defs {
            let Ok(mut stored) = Stored::from_json(&text) else {
                continue;
            };
            if !stored.remove_source(source) {
                continue;
            }
            if stored.schedule.is_empty() {
                info!(channel = %id, source, "personalised channel lost its last source: removed");
                emptied.push(id);
                continue;
            }
            let spec = def::relay_spec(&id, &stored.schedule);
            let carriers = self.inner.relays.state().carriers(&id);
            for i in carriers {
                let relay = self.relay(i).clone();
                if let Err(e) = self
                    .relay_call(i, relay.update_personalized(spec.clone()))
                    .await
                {
                    warn!(channel = %id, relay = %self.inner.relays.name(i), error = %e, "personalised schedule not updated");
                }
            }
            if let Err(e) = store
                .set_channel_definition(&id, Some(&stored.to_json()))
                .await
            {
                warn!(channel = %id, error = %e, "personalised channel definition not updated");
            }
            info!(channel = %id, source, slots = stored.schedule.len(), "source removed from personalised channel");
        }
        emptied
    }

    /// The splicer of personalised channel `id` at each relay that has it (`NotFound` when
    /// no relay reports it: not a personalised channel).
    pub async fn personalized_status(&self, id: &str) -> Result<Vec<def::RelayStatus>> {
        let carriers = self.inner.relays.state().carriers(id);
        let mut out = Vec::new();
        for i in carriers {
            let relay = self.relay(i).clone();
            let Ok(stats) = self.relay_call(i, relay.personalized_stats()).await else {
                continue;
            };
            out.extend(
                stats
                    .into_iter()
                    .filter(|s| s.channel.as_str() == id)
                    .map(|stats| def::RelayStatus {
                        relay: self.inner.relays.name(i).to_owned(),
                        stats,
                    }),
            );
        }
        if out.is_empty() {
            return Err(Error::NotFound(format!("personalised channel {id}")));
        }
        Ok(out)
    }

    /// A MESSAGE (RFC 3428): to `sip:new-channel@<as-host>` with a JSON definition it
    /// creates a personalised channel (`200 OK`, `Contact: <sip:<id>@<as-host:port>>`);
    /// anything else is refused (module docs of [`crate::service::personalized`]).
    pub(super) async fn message(&self, tr: &TuRequest) -> Response {
        let req = tr.request();
        let tag = self.tag();
        let reject = |r: Reject| sipmsg::reject(req, &r, Some(&tag));
        if req.uri.user.as_deref() != Some(personal::CREATION_USER) {
            return reject(Reject::new(404, "Not Found"));
        }
        if !req.content_type_is(def::CONTENT_TYPE) {
            return reject(
                Reject::new(415, "Unsupported Media Type").with("Accept", def::CONTENT_TYPE),
            );
        }
        let definition = match def::parse(&req.body) {
            Ok(d) => d,
            Err(e) => return reject(Reject::new(400, e.reason_phrase())),
        };
        let owner = req.from().map(|f| sipmsg::aor(&f.uri)).ok();
        match self.create_personalized(definition, owner).await {
            Ok(created) => {
                let mut r = sipmsg::response(req, 200, "OK", Some(&tag));
                r.headers
                    .push(HeaderName::CONTACT, self.contact_for(&created.id));
                r
            }
            Err(e) => reject(error_reject(&e)),
        }
    }
}
