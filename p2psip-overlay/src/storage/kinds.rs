//! Kind registry (RFC 6940 section 7.4.1 / 11; RFC 7904 section 3).
//!
//! A kind fixes a data model, an access control policy and size limits. The
//! registry holds SIP-REGISTRATION (RFC 7904: kind 1, dictionary,
//! USER-NODE-MATCH, the dictionary key is the registering peer's Node-ID) and
//! the project's private-range kinds: `0xf0000001` channel -> relays
//! (dictionary keyed by the relay's Node-ID) and `0xf0000002` the channel
//! directory shared by every AS (dictionary keyed by channel name).

use std::collections::BTreeMap;

/// Kind-ID (RFC 6940 section 7.4.1, 32 bits). Open newtype: unknown values survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KindId(pub u32);

impl KindId {
    /// SIP-REGISTRATION (RFC 7904 section 3).
    pub const SIP_REGISTRATION: KindId = KindId(1);
    /// Project kind: channel -> relays that carry it (private range).
    pub const CHANNEL_RELAYS: KindId = KindId(0xf000_0001);
    /// Project kind: the channel directory shared by every AS (private range).
    pub const CHANNEL_DIRECTORY: KindId = KindId(0xf000_0002);
}

/// Data models (RFC 6940 section 7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataModel {
    /// One value per resource and kind (7.2.1).
    Single,
    /// A sparse array indexed by u32 (7.2.2).
    Array,
    /// A map from opaque keys to values (7.2.3).
    Dictionary,
}

impl From<DataModel> for crate::wire::DataModel {
    fn from(m: DataModel) -> Self {
        match m {
            DataModel::Single => Self::Single,
            DataModel::Array => Self::Array,
            DataModel::Dictionary => Self::Dictionary,
        }
    }
}

/// Access control policies (RFC 6940 section 7.3, plus two project policies
/// for the private-range kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessPolicy {
    /// 7.3.1: hash(signer's user name) == Resource-ID.
    UserMatch,
    /// 7.3.2: hash(signer's Node-ID) == Resource-ID.
    NodeMatch,
    /// 7.3.3: USER-MATCH, and the dictionary key is the signer's Node-ID.
    UserNodeMatch,
    /// 7.3.4: hash(Node-ID || i) == Resource-ID for some 1 <= i <= max
    /// (`i` as 4 big-endian bytes, max-node-multiple from the configuration).
    NodeMultiple {
        /// max-node-multiple.
        max: u32,
    },
    /// Project policy for channel -> relays: any enrolled signer may write,
    /// only under the dictionary key equal to its own Node-ID (a relay
    /// advertises itself and nobody else).
    NodeKeyMatch,
    /// Project policy for the channel directory: any enrolled signer may create
    /// an entry; only its first signer may overwrite it.
    FirstWriterOwns,
}

/// A kind definition (what the overlay configuration's `<kind>` element says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindDef {
    /// The Kind-ID.
    pub id: KindId,
    /// Human name.
    pub name: &'static str,
    /// Data model.
    pub model: DataModel,
    /// Access control.
    pub policy: AccessPolicy,
    /// max-count: values per resource (array entries / dictionary keys).
    pub max_count: u32,
    /// max-size: bytes per value.
    pub max_size: u32,
}

/// The kinds an overlay knows.
#[derive(Clone, Debug)]
pub struct KindRegistry {
    kinds: BTreeMap<KindId, KindDef>,
}

impl Default for KindRegistry {
    fn default() -> Self {
        let mut r = Self {
            kinds: BTreeMap::new(),
        };
        r.register(KindDef {
            id: KindId::SIP_REGISTRATION,
            name: "SIP-REGISTRATION",
            model: DataModel::Dictionary,
            policy: AccessPolicy::UserNodeMatch,
            max_count: 100,
            max_size: 4096,
        });
        r.register(KindDef {
            id: KindId::CHANNEL_RELAYS,
            name: "IPTV-CHANNEL-RELAYS",
            model: DataModel::Dictionary,
            policy: AccessPolicy::NodeKeyMatch,
            max_count: 1000,
            max_size: 1024,
        });
        r.register(KindDef {
            id: KindId::CHANNEL_DIRECTORY,
            name: "IPTV-CHANNEL-DIRECTORY",
            model: DataModel::Dictionary,
            policy: AccessPolicy::FirstWriterOwns,
            max_count: 100_000,
            max_size: 4096,
        });
        r
    }
}

impl KindRegistry {
    /// An empty registry.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            kinds: BTreeMap::new(),
        }
    }

    /// Add or replace a kind.
    pub fn register(&mut self, def: KindDef) {
        self.kinds.insert(def.id, def);
    }

    /// Look a kind up.
    #[must_use]
    pub fn get(&self, id: KindId) -> Option<&KindDef> {
        self.kinds.get(&id)
    }

    /// The kinds among `kinds` not registered, each once, in order (the error_info of
    /// Error_Unknown_Kind, RFC 6940 section 7.4.1.2).
    #[must_use]
    pub fn unknown(&self, kinds: impl IntoIterator<Item = KindId>) -> Vec<KindId> {
        let mut out: Vec<KindId> = Vec::new();
        for k in kinds {
            if self.get(k).is_none() && !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// The wire data model of a kind, `None` for a kind not registered: the kind table
    /// the RELOAD codec decodes StoredData with ([`crate::wire::KindModels`]), so a
    /// request naming a kind this registry lacks is Error_Unknown_Kind
    /// (RFC 6940 section 7.4.1.2).
    #[must_use]
    pub fn wire_model(&self, id: crate::wire::KindId) -> Option<crate::wire::DataModel> {
        self.get(KindId(id.0)).map(|d| d.model.into())
    }
}
