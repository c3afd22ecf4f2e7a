//! RELOAD storage (RFC 6940 section 7): the data a peer holds for the
//! Resource-IDs it is responsible for, and the replicas it keeps for its
//! predecessors.
//!
//! [`Storage`] is a plain engine: it checks a Store against the kind's data
//! model, size limits, access policy ([`kinds::AccessPolicy`], section 7.3)
//! and generation counter (7.4.1), applies it all-or-nothing, answers Fetches,
//! and drops values whose lifetime ran out against the `now` it is given. It
//! never decides who is responsible: [`crate::node`] does that and uses
//! [`Storage::export`] to replicate and hand data over.

pub mod kinds;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use kinds::{AccessPolicy, DataModel, KindDef, KindId, KindRegistry};

use crate::topology::{hash_to_id, Id};

/// Array index that means "append" (RFC 6940 section 7.2.2).
pub const APPEND: u32 = 0xffff_ffff;

/// Who signed a value or a request: the identity from its certificate
/// (RFC 6940 section 7.3). The transport/security layer vouches for it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Signer {
    /// Node-ID from the certificate.
    pub node_id: Id,
    /// User name (rfc822Name) from the certificate.
    pub user_name: String,
}

/// The model-specific part of a stored value (RFC 6940 section 7.2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueKey {
    /// Single value.
    Single,
    /// Array entry at this index ([`APPEND`] to append).
    Index(u32),
    /// Dictionary entry under this key.
    Key(Vec<u8>),
}

/// One StoredData (RFC 6940 section 7.1 / 7.2): storage time, lifetime and a
/// value with its `exists` flag, plus the signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// Where in the model.
    pub key: ValueKey,
    /// storage_time: milliseconds since the epoch, set by the writer.
    pub storage_time: u64,
    /// lifetime in seconds.
    pub lifetime: u32,
    /// `exists` = false is a delete (the tombstone lives for `lifetime`).
    pub exists: bool,
    /// The value bytes.
    pub data: Vec<u8>,
    /// Signer of this value.
    pub signer: Signer,
}

/// StoreKindData (RFC 6940 section 7.4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindData {
    /// Kind.
    pub kind: KindId,
    /// generation_counter: 0 = do not check.
    pub generation: u64,
    /// Values.
    pub values: Vec<StoredValue>,
}

/// A StoreKindResponse: the kind's generation after the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreResult {
    /// Kind.
    pub kind: KindId,
    /// New generation counter.
    pub generation: u64,
}

/// What to fetch of one kind (StoredDataSpecifier, RFC 6940 section 7.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSpec {
    /// Kind.
    pub kind: KindId,
    /// If non-zero and equal to the stored generation, no values are returned.
    pub generation: u64,
    /// Which values.
    pub select: Select,
}

/// MetaData of one value (RFC 6940 section 7.4.3): what Stat says about a value
/// instead of the value itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueMeta {
    /// Which value of the kind's model.
    pub key: ValueKey,
    /// Storage time (ms since the Unix epoch, as stored).
    pub storage_time: u64,
    /// Lifetime in seconds (as stored).
    pub lifetime: u32,
    /// False for a tombstone.
    pub exists: bool,
    /// Length of the value's data.
    pub value_length: u32,
    /// SHA-256 of the value's data (`hash_algorithm` sha256).
    pub hash: Vec<u8>,
}

/// StatKindResponse (RFC 6940 section 7.4.3): a kind's generation and value metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatKind {
    /// Kind.
    pub kind: KindId,
    /// Generation counter (0: nothing stored).
    pub generation: u64,
    /// Metadata of the selected values.
    pub values: Vec<ValueMeta>,
}

/// Model-specific selection for a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Select {
    /// The single value.
    Single,
    /// Array ranges (inclusive first, last).
    Indices(Vec<(u32, u32)>),
    /// Dictionary keys; empty = all keys.
    Keys(Vec<Vec<u8>>),
}

/// Errors of a Store or Fetch, with their RFC 6940 section 14.9 codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The signer does not meet the kind's access policy.
    #[error("forbidden by access policy {0:?}")]
    Forbidden(AccessPolicy),
    /// The kind is not in the configuration.
    #[error("unknown kind {0:?}")]
    UnknownKind(KindId),
    /// Generation counter did not match (7.4.1.1).
    #[error("generation counter too low: stored {stored}, request {got}")]
    GenerationCounterTooLow {
        /// The stored counter.
        stored: u64,
        /// The request's counter.
        got: u64,
    },
    /// A value is bigger than max-size or the resource would exceed max-count.
    #[error("data too large")]
    DataTooLarge,
    /// storage_time older than what is stored.
    #[error("data too old")]
    DataTooOld,
    /// The value does not fit the kind's data model.
    #[error("value does not match the kind's data model")]
    InvalidMessage,
}

impl StoreError {
    /// RFC 6940 section 14.9 error code.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            StoreError::Forbidden(_) => 2,
            StoreError::GenerationCounterTooLow { .. } => 5,
            StoreError::DataTooLarge => 8,
            StoreError::DataTooOld => 9,
            StoreError::UnknownKind(_) => 12,
            StoreError::InvalidMessage => 20,
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    v: StoredValue,
    expires: Instant,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    generation: u64,
    values: BTreeMap<ValueKey, Entry>,
}

/// The storage engine of one peer.
#[derive(Clone, Debug)]
pub struct Storage {
    kinds: KindRegistry,
    data: BTreeMap<(Id, KindId), Slot>,
}

impl Default for Storage {
    fn default() -> Self {
        Self::new(KindRegistry::default())
    }
}

/// Check one value against the policy (RFC 6940 section 7.3).
fn policy_allows(
    policy: AccessPolicy,
    resource: Id,
    signer: &Signer,
    key: &ValueKey,
    existing: Option<&Entry>,
) -> bool {
    let user_match = || hash_to_id(signer.user_name.as_bytes()) == resource;
    let key_is_node =
        || matches!(key, ValueKey::Key(k) if k.as_slice() == signer.node_id.to_be_bytes());
    match policy {
        AccessPolicy::UserMatch => user_match(),
        AccessPolicy::NodeMatch => hash_to_id(&signer.node_id.to_be_bytes()) == resource,
        AccessPolicy::UserNodeMatch => user_match() && key_is_node(),
        AccessPolicy::NodeMultiple { max } => (1..=max).any(|i| {
            let mut b = signer.node_id.to_be_bytes().to_vec();
            b.extend_from_slice(&i.to_be_bytes());
            hash_to_id(&b) == resource
        }),
        AccessPolicy::NodeKeyMatch => key_is_node(),
        AccessPolicy::FirstWriterOwns => {
            existing.is_none_or(|e| e.v.signer.node_id == signer.node_id)
        }
    }
}

impl Storage {
    /// Empty storage with these kinds.
    #[must_use]
    pub fn new(kinds: KindRegistry) -> Self {
        Self {
            kinds,
            data: BTreeMap::new(),
        }
    }

    /// The kind registry.
    #[must_use]
    pub fn kinds(&self) -> &KindRegistry {
        &self.kinds
    }

    /// Store (RFC 6940 section 7.4.1.1), all-or-nothing. `requester` is the
    /// signer of the StoreReq; for a non-replica store both it and every
    /// value's signer must meet the policy (7.3). A replica store
    /// (`replica` = true) carries the responsible peer's generation counter
    /// and is not checked against it.
    pub fn store(
        &mut self,
        now: Instant,
        resource: Id,
        replica: bool,
        kind_data: &[KindData],
        requester: &Signer,
    ) -> Result<Vec<StoreResult>, StoreError> {
        // Validate everything first.
        for kd in kind_data {
            let def = self
                .kinds
                .get(kd.kind)
                .ok_or(StoreError::UnknownKind(kd.kind))?;
            let slot = self.data.get(&(resource, kd.kind));
            let stored_gen = slot.map_or(0, |s| s.generation);
            if !replica && kd.generation != 0 && kd.generation != stored_gen {
                return Err(StoreError::GenerationCounterTooLow {
                    stored: stored_gen,
                    got: kd.generation,
                });
            }
            let mut new_keys = 0usize;
            for v in &kd.values {
                let model_ok = matches!(
                    (def.model, &v.key),
                    (DataModel::Single, ValueKey::Single)
                        | (DataModel::Array, ValueKey::Index(_))
                        | (DataModel::Dictionary, ValueKey::Key(_))
                );
                if !model_ok {
                    return Err(StoreError::InvalidMessage);
                }
                if v.data.len() > def.max_size as usize {
                    return Err(StoreError::DataTooLarge);
                }
                let existing = slot.and_then(|s| s.values.get(&v.key));
                let signers: &[&Signer] = if replica {
                    &[&v.signer]
                } else {
                    &[&v.signer, requester]
                };
                for s in signers {
                    if !policy_allows(def.policy, resource, s, &v.key, existing) {
                        return Err(StoreError::Forbidden(def.policy));
                    }
                }
                match existing {
                    Some(e) if e.v.storage_time > v.storage_time => {
                        return Err(StoreError::DataTooOld)
                    }
                    Some(_) => {}
                    None => new_keys += 1,
                }
            }
            let have = slot.map_or(0, |s| s.values.len());
            if have + new_keys > def.max_count as usize {
                return Err(StoreError::DataTooLarge);
            }
        }
        // Apply.
        let mut out = Vec::with_capacity(kind_data.len());
        for kd in kind_data {
            let slot = self.data.entry((resource, kd.kind)).or_default();
            for v in &kd.values {
                let mut v = v.clone();
                if v.key == ValueKey::Index(APPEND) {
                    let next = slot
                        .values
                        .keys()
                        .filter_map(|k| match k {
                            ValueKey::Index(i) => Some(i.saturating_add(1)),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0);
                    v.key = ValueKey::Index(next.min(APPEND - 1));
                }
                let expires = now + Duration::from_secs(u64::from(v.lifetime));
                slot.values.insert(v.key.clone(), Entry { v, expires });
            }
            slot.generation = if replica {
                kd.generation.max(slot.generation)
            } else {
                slot.generation + 1
            };
            out.push(StoreResult {
                kind: kd.kind,
                generation: slot.generation,
            });
        }
        Ok(out)
    }

    /// Fetch (RFC 6940 section 7.4.2). Expired values are not returned.
    /// A resource with nothing stored for a kind answers with generation 0 and
    /// no values (the RFC's "empty" answer, not an error).
    pub fn fetch(
        &self,
        now: Instant,
        resource: Id,
        specs: &[FetchSpec],
    ) -> Result<Vec<KindData>, StoreError> {
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            if self.kinds.get(spec.kind).is_none() {
                return Err(StoreError::UnknownKind(spec.kind));
            }
            let Some(slot) = self.data.get(&(resource, spec.kind)) else {
                out.push(KindData {
                    kind: spec.kind,
                    generation: 0,
                    values: Vec::new(),
                });
                continue;
            };
            let mut values = Vec::new();
            if spec.generation == 0 || spec.generation != slot.generation {
                let live = slot.values.values().filter(|e| e.expires > now);
                for e in live {
                    let pick = match (&spec.select, &e.v.key) {
                        (Select::Single, ValueKey::Single) => true,
                        (Select::Indices(r), ValueKey::Index(i)) => {
                            r.iter().any(|&(a, b)| (a..=b).contains(i))
                        }
                        (Select::Keys(ks), ValueKey::Key(k)) => ks.is_empty() || ks.contains(k),
                        _ => false,
                    };
                    if pick {
                        values.push(e.v.clone());
                    }
                }
            }
            out.push(KindData {
                kind: spec.kind,
                generation: slot.generation,
                values,
            });
        }
        Ok(out)
    }

    /// Stat (RFC 6940 section 7.4.3): the metadata of what [`Storage::fetch`] would
    /// return for `specs` (same selection, generation and errors), with the length and
    /// SHA-256 hash of each value instead of the value.
    pub fn stat(
        &self,
        now: Instant,
        resource: Id,
        specs: &[FetchSpec],
    ) -> Result<Vec<StatKind>, StoreError> {
        Ok(self
            .fetch(now, resource, specs)?
            .into_iter()
            .map(|kd| StatKind {
                kind: kd.kind,
                generation: kd.generation,
                values: kd
                    .values
                    .into_iter()
                    .map(|v| ValueMeta {
                        value_length: u32::try_from(v.data.len()).unwrap_or(u32::MAX),
                        hash: ring::digest::digest(&ring::digest::SHA256, &v.data)
                            .as_ref()
                            .to_vec(),
                        key: v.key,
                        storage_time: v.storage_time,
                        lifetime: v.lifetime,
                        exists: v.exists,
                    })
                    .collect(),
            })
            .collect())
    }

    /// Find (RFC 6940 section 7.4.4): per kind, the stored Resource-ID with live data of
    /// that kind closest at or after `resource` going clockwise round the ring, among
    /// those `mine` accepts (the node passes its region of responsibility); `None` when
    /// there is none (or the kind is unknown).
    pub fn find(
        &self,
        now: Instant,
        resource: Id,
        kinds: &[KindId],
        mine: impl Fn(Id) -> bool,
    ) -> Vec<(KindId, Option<Id>)> {
        kinds
            .iter()
            .map(|&kind| {
                let best = self
                    .data
                    .iter()
                    .filter(|(&(r, k), slot)| {
                        k == kind && mine(r) && slot.values.values().any(|e| e.expires > now)
                    })
                    .map(|(&(r, _), _)| r)
                    .min_by_key(|r| r.0.wrapping_sub(resource.0));
                (kind, best)
            })
            .collect()
    }

    /// Drop values whose lifetime has run out; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for slot in self.data.values_mut() {
            let before = slot.values.len();
            slot.values.retain(|_, e| e.expires > now);
            n += before - slot.values.len();
        }
        self.data.retain(|_, s| !s.values.is_empty());
        n
    }

    /// The earliest expiry among stored values.
    #[must_use]
    pub fn next_expiry(&self) -> Option<Instant> {
        self.data
            .values()
            .flat_map(|s| s.values.values().map(|e| e.expires))
            .min()
    }

    /// Resource-IDs with data.
    #[must_use]
    pub fn resources(&self) -> Vec<Id> {
        let mut v: Vec<Id> = self.data.keys().map(|k| k.0).collect();
        v.dedup();
        v
    }

    /// Everything stored under `resource`, as StoreKindData with the current
    /// generation and remaining lifetimes, for replication and handover
    /// (RFC 6940 section 9: replicas on successors, handover on join and leave).
    #[must_use]
    pub fn export(&self, now: Instant, resource: Id) -> Vec<KindData> {
        self.data
            .range((resource, KindId(0))..=(resource, KindId(u32::MAX)))
            .map(|(&(_, kind), slot)| KindData {
                kind,
                generation: slot.generation,
                values: slot
                    .values
                    .values()
                    .filter(|e| e.expires > now)
                    .map(|e| {
                        let mut v = e.v.clone();
                        let left = e.expires.saturating_duration_since(now).as_secs();
                        v.lifetime = u32::try_from(left).unwrap_or(u32::MAX);
                        v
                    })
                    .collect(),
            })
            .collect()
    }

    /// Forget a resource (after handing it over).
    pub fn remove(&mut self, resource: Id) {
        self.data.retain(|&(r, _), _| r != resource);
    }

    /// Number of stored values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.data.values().map(|s| s.values.len()).sum()
    }

    /// True when nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
