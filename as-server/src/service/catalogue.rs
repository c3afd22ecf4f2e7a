//! Adapter from the service to the sqlx store ([`crate::store::Store`]): channel rows as the
//! [`ChannelEntry`] of the `iptv-channels` package, session rows keyed by a service-chosen id,
//! store errors mapped to [`crate::error::Error`].

use std::net::SocketAddr;

use crate::error::{Error, Result};
use crate::store::{self, Channel, ChannelKind, Store};

use super::channel_list::ChannelEntry;

/// What the service records when a session starts.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Call-ID (also the base of the row id).
    pub call_id: String,
    /// Channel watched or fed.
    pub channel: String,
    /// Peer AoR.
    pub peer: String,
    /// Start, ms since the Unix epoch.
    pub started_ms: i64,
    /// The relay serving it (`relay-0`, ...); `None`: the catalogue's default relay name.
    pub relay: Option<String>,
}

/// The catalogue as the service sees it.
#[derive(Debug, Clone)]
pub struct Catalogue {
    store: Store,
    relay_name: String,
}

fn store_err(e: store::Error) -> Error {
    match e {
        store::Error::Duplicate(m) => Error::Conflict(m),
        store::Error::NotFound(m) => Error::NotFound(m),
        e => Error::Store(e.to_string()),
    }
}

fn entry(c: Channel) -> ChannelEntry {
    ChannelEntry {
        id: c.id,
        name: c.name,
        kind: c.kind.as_str().to_owned(),
        owner: c.owner,
        created_ms: c.created_ms,
    }
}

impl Catalogue {
    /// Over a connected store; `relay_name` is recorded as the relay of channels and sessions.
    pub fn new(store: Store, relay_name: impl Into<String>) -> Self {
        Self {
            store,
            relay_name: relay_name.into(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every channel.
    pub async fn list(&self) -> Result<Vec<ChannelEntry>> {
        Ok(self
            .store
            .list_channels()
            .await
            .map_err(store_err)?
            .into_iter()
            .map(entry)
            .collect())
    }

    /// Every channel as stored (with kind and ingest).
    pub async fn list_raw(&self) -> Result<Vec<Channel>> {
        self.store.list_channels().await.map_err(store_err)
    }

    /// One channel, `None` if absent.
    pub async fn get(&self, id: &str) -> Result<Option<ChannelEntry>> {
        match self.store.get_channel(id).await {
            Ok(c) => Ok(Some(entry(c))),
            Err(store::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Inserts a channel (409 if the id exists).
    pub async fn insert(&self, e: &ChannelEntry, ingest: Option<SocketAddr>) -> Result<()> {
        self.insert_on(e, ingest, None).await
    }

    /// Inserts a channel whose ingest is on relay `relay` (`None`: the default name).
    pub async fn insert_on(
        &self,
        e: &ChannelEntry,
        ingest: Option<SocketAddr>,
        relay: Option<&str>,
    ) -> Result<()> {
        let kind: ChannelKind = e
            .kind
            .parse()
            .map_err(|_| Error::Invalid(format!("kind {:?}", e.kind)))?;
        self.store
            .create_channel(&Channel {
                id: e.id.clone(),
                name: e.name.clone(),
                kind,
                owner: e.owner.clone(),
                created_ms: e.created_ms,
                ingest_addr: ingest,
                relay: Some(relay.unwrap_or(&self.relay_name).to_owned()),
            })
            .await
            .map_err(store_err)
    }

    /// Records a (new) ingest address of an existing channel.
    pub async fn set_ingest(&self, id: &str, ingest: SocketAddr) -> Result<()> {
        self.set_ingest_on(id, ingest, None).await
    }

    /// Records a (new) ingest address of an existing channel, on relay `relay` (`None`:
    /// the default name).
    pub async fn set_ingest_on(
        &self,
        id: &str,
        ingest: SocketAddr,
        relay: Option<&str>,
    ) -> Result<()> {
        self.store
            .set_channel_ingest(id, Some(ingest), Some(relay.unwrap_or(&self.relay_name)))
            .await
            .map_err(store_err)
    }

    /// Records the relay now serving a session (after a failover).
    pub async fn set_session_relay(&self, id: &str, relay: &str) -> Result<()> {
        match self.store.set_session_relay(id, Some(relay)).await {
            Ok(()) | Err(store::Error::Ended(_)) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Deletes a channel (`Ok(false)` if it was not there).
    pub async fn delete(&self, id: &str) -> Result<bool> {
        match self.store.delete_channel(id).await {
            Ok(()) => Ok(true),
            Err(store::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Writes a session row; returns its id.
    pub async fn start_session(&self, row: &SessionRow, id: &str) -> Result<String> {
        self.store
            .start_session(&store::Session::new(
                id,
                row.channel.clone(),
                row.peer.clone(),
                row.call_id.clone(),
                Some(row.relay.clone().unwrap_or_else(|| self.relay_name.clone())),
                row.started_ms,
            ))
            .await
            .map_err(store_err)?;
        Ok(id.to_owned())
    }

    /// Records a zap.
    pub async fn zap_session(&self, id: &str, channel: &str, now_ms: i64) -> Result<()> {
        self.store
            .switch_session_channel(id, channel, now_ms)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    /// Ends a session.
    pub async fn end_session(&self, id: &str, now_ms: i64) -> Result<()> {
        match self.store.end_session(id, now_ms).await {
            Ok(_) | Err(store::Error::Ended(_)) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }
}
