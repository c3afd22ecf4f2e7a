//! Stored data (RFC 6940 section 7): Kind-IDs and data models, the values a Store carries
//! and a Fetch returns, the specifiers of Fetch and Stat, and the metadata of Stat. A
//! StoredDataValue does not say its own data model: the kind does, so decoding takes a
//! kind table ([`KindId::default_data_model`] by default).

use super::codec::{put_list, put_opaque, put_u32, put_u64, put_vec, Reader};
use super::{Signature, WireError};

/// A Kind-ID (RFC 6940 section 7.2; IANA "RELOAD Data Kind-ID"). Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KindId(pub u32);

impl KindId {
    /// `INVALID` (0).
    pub const INVALID: Self = Self(0);
    /// SIP-REGISTRATION (RFC 7904 section 3): dictionary keyed by the registering Node-ID,
    /// values are [`super::SipRegistration`].
    pub const SIP_REGISTRATION: Self = Self(1);
    /// TURN-SERVICE (RFC 6940 section 8.1): single value.
    pub const TURN_SERVICE: Self = Self(2);
    /// CERTIFICATE_BY_NODE (RFC 6940 section 8.2): array.
    pub const CERTIFICATE_BY_NODE: Self = Self(3);
    /// CERTIFICATE_BY_USER (RFC 6940 section 8.2): array.
    pub const CERTIFICATE_BY_USER: Self = Self(16);
    /// This project's channel -> relays kind (private range 0xf0000000-0xfffffffe):
    /// dictionary keyed by the relay's Node-ID, values are [`super::ChannelRelay`].
    pub const CHANNEL_RELAYS: Self = Self(0xf000_0001);
    /// This project's channel directory kind: dictionary keyed by channel name, values are
    /// [`super::ChannelDirectoryEntry`].
    pub const CHANNEL_DIRECTORY: Self = Self(0xf000_0002);

    /// The data model of the kinds this project knows.
    pub fn default_data_model(self) -> Option<DataModel> {
        match self {
            Self::SIP_REGISTRATION | Self::CHANNEL_RELAYS | Self::CHANNEL_DIRECTORY => {
                Some(DataModel::Dictionary)
            }
            Self::TURN_SERVICE => Some(DataModel::Single),
            Self::CERTIFICATE_BY_NODE | Self::CERTIFICATE_BY_USER => Some(DataModel::Array),
            _ => None,
        }
    }
}

/// A kind table: the data model of a kind, or `None` for an unknown kind.
pub type KindModels<'a> = &'a dyn Fn(KindId) -> Option<DataModel>;

/// The data models (RFC 6940 section 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataModel {
    /// `single_value(1)`.
    Single,
    /// `array(2)`.
    Array,
    /// `dictionary(3)`.
    Dictionary,
}

/// `DataValue` (RFC 6940 section 7.2): a value, or a tombstone when `exists` is false.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataValue {
    /// False marks a deleted value.
    pub exists: bool,
    /// `opaque value<0..2^32-1>`.
    pub value: Vec<u8>,
}

impl DataValue {
    /// An existing value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        DataValue {
            exists: true,
            value: value.into(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(u8::from(self.exists));
        put_opaque(out, 4, "DataValue", &self.value)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DataValue {
            exists: r.boolean("DataValue exists")?,
            value: r.opaque(4, "DataValue")?.to_vec(),
        })
    }
}

/// `StoredDataValue` (RFC 6940 section 7.2): one entry of the kind's data model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoredDataValue {
    /// A single value.
    Single(DataValue),
    /// `ArrayEntry`.
    Array {
        /// The array index (0xffffffff on Store: append).
        index: u32,
        /// The value.
        value: DataValue,
    },
    /// `DictionaryEntry`.
    Dictionary {
        /// `DictionaryKey`, `opaque<0..2^16-1>`.
        key: Vec<u8>,
        /// The value.
        value: DataValue,
    },
}

impl StoredDataValue {
    /// Its data model.
    pub fn model(&self) -> DataModel {
        match self {
            StoredDataValue::Single(_) => DataModel::Single,
            StoredDataValue::Array { .. } => DataModel::Array,
            StoredDataValue::Dictionary { .. } => DataModel::Dictionary,
        }
    }

    /// The data value.
    pub fn data(&self) -> &DataValue {
        match self {
            StoredDataValue::Single(v)
            | StoredDataValue::Array { value: v, .. }
            | StoredDataValue::Dictionary { value: v, .. } => v,
        }
    }

    /// Appends the encoding (no model tag: the kind implies it).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            StoredDataValue::Single(v) => v.encode(out),
            StoredDataValue::Array { index, value } => {
                put_u32(out, *index);
                value.encode(out)
            }
            StoredDataValue::Dictionary { key, value } => {
                put_opaque(out, 2, "DictionaryKey", key)?;
                value.encode(out)
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, model: DataModel) -> Result<Self, WireError> {
        Ok(match model {
            DataModel::Single => StoredDataValue::Single(DataValue::decode(r)?),
            DataModel::Array => StoredDataValue::Array {
                index: r.u32("array index")?,
                value: DataValue::decode(r)?,
            },
            DataModel::Dictionary => StoredDataValue::Dictionary {
                key: r.opaque(2, "DictionaryKey")?.to_vec(),
                value: DataValue::decode(r)?,
            },
        })
    }
}

/// `StoredData` (RFC 6940 section 7.1): a value with its storage time, lifetime and the
/// storing user's signature (over [`super::stored_data_signature_input`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredData {
    /// Storage time, milliseconds since the Unix epoch (set by the storing user).
    pub storage_time: u64,
    /// Seconds the value lives.
    pub lifetime: u32,
    /// The value.
    pub value: StoredDataValue,
    /// The signature.
    pub signature: Signature,
}

impl StoredData {
    /// Appends the encoding (32-bit length first).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_vec(out, 4, "StoredData", |out| {
            put_u64(out, self.storage_time);
            put_u32(out, self.lifetime);
            self.value.encode(out)?;
            self.signature.encode(out)
        })
    }

    pub(crate) fn decode(r: &mut Reader<'_>, model: DataModel) -> Result<Self, WireError> {
        let mut s = r.sub(4, "StoredData")?;
        let d = StoredData {
            storage_time: s.u64("storage_time")?,
            lifetime: s.u32("lifetime")?,
            value: StoredDataValue::decode(&mut s, model)?,
            signature: Signature::decode(&mut s)?,
        };
        s.finish("StoredData")?;
        Ok(d)
    }
}

/// `ArrayRange` (RFC 6940 section 7.4.2): indices `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArrayRange {
    /// First index.
    pub first: u32,
    /// Last index (0xffffffff: to the end).
    pub last: u32,
}

/// What part of a kind's data a Fetch or Stat asks for (the `model_specifier`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataSpecifier {
    /// A single-value kind: the value.
    Single,
    /// An array kind: these index ranges.
    Array(Vec<ArrayRange>),
    /// A dictionary kind: these keys (none: every key).
    Dictionary(Vec<Vec<u8>>),
}

/// `StoredDataSpecifier` (RFC 6940 section 7.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredDataSpecifier {
    /// The kind.
    pub kind: KindId,
    /// The generation the requester has (0: any); data at that generation is not resent.
    pub generation: u64,
    /// Which entries.
    pub model: DataSpecifier,
}

impl StoredDataSpecifier {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_u32(out, self.kind.0);
        put_u64(out, self.generation);
        put_vec(out, 2, "model_specifier", |out| match &self.model {
            DataSpecifier::Single => Ok(()),
            DataSpecifier::Array(r) => put_list(out, 2, "indices", r, |r, out| {
                put_u32(out, r.first);
                put_u32(out, r.last);
                Ok(())
            }),
            DataSpecifier::Dictionary(k) => put_list(out, 2, "keys", k, |k, out| {
                put_opaque(out, 2, "DictionaryKey", k)
            }),
        })
    }

    pub(crate) fn decode(r: &mut Reader<'_>, models: KindModels<'_>) -> Result<Self, WireError> {
        let kind = KindId(r.u32("kind")?);
        let generation = r.u64("generation")?;
        let mut m = r.sub(2, "model_specifier")?;
        let model = match models(kind).ok_or(WireError::UnknownKind(kind.0))? {
            DataModel::Single => DataSpecifier::Single,
            DataModel::Array => DataSpecifier::Array(m.list(2, "indices", |r| {
                Ok(ArrayRange {
                    first: r.u32("first")?,
                    last: r.u32("last")?,
                })
            })?),
            DataModel::Dictionary => DataSpecifier::Dictionary(
                m.list(2, "keys", |r| Ok(r.opaque(2, "DictionaryKey")?.to_vec()))?,
            ),
        };
        m.finish("model_specifier")?;
        Ok(StoredDataSpecifier {
            kind,
            generation,
            model,
        })
    }
}

/// `MetaData` (RFC 6940 section 7.4.3): what Stat says about a value instead of the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaData {
    /// False for a tombstone.
    pub exists: bool,
    /// The value's length.
    pub value_length: u32,
    /// The hash algorithm of `hash_value`.
    pub hash_algorithm: super::HashAlgorithm,
    /// `opaque hash_value<0..255>`.
    pub hash_value: Vec<u8>,
}

impl MetaData {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(u8::from(self.exists));
        put_u32(out, self.value_length);
        out.push(self.hash_algorithm.0);
        put_opaque(out, 1, "hash_value", &self.hash_value)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MetaData {
            exists: r.boolean("MetaData exists")?,
            value_length: r.u32("value_length")?,
            hash_algorithm: super::HashAlgorithm(r.u8("hash_algorithm")?),
            hash_value: r.opaque(1, "hash_value")?.to_vec(),
        })
    }
}

/// `MetaDataValue` (RFC 6940 section 7.4.3): metadata of one entry of the kind's model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetaDataValue {
    /// A single value.
    Single(MetaData),
    /// `ArrayEntryMeta`.
    Array {
        /// The index.
        index: u32,
        /// The metadata.
        value: MetaData,
    },
    /// `DictionaryEntryMeta`.
    Dictionary {
        /// The key.
        key: Vec<u8>,
        /// The metadata.
        value: MetaData,
    },
}

/// `StoredMetaData` (RFC 6940 section 7.4.3): like `StoredData`, a 32-bit length of what
/// follows, then storage time, lifetime and the metadata (the value's own length is in
/// [`MetaData::value_length`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredMetaData {
    /// Storage time.
    pub storage_time: u64,
    /// Lifetime in seconds.
    pub lifetime: u32,
    /// The metadata.
    pub metadata: MetaDataValue,
}

impl StoredMetaData {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_vec(out, 4, "StoredMetaData", |out| {
            put_u64(out, self.storage_time);
            put_u32(out, self.lifetime);
            match &self.metadata {
                MetaDataValue::Single(m) => m.encode(out),
                MetaDataValue::Array { index, value } => {
                    put_u32(out, *index);
                    value.encode(out)
                }
                MetaDataValue::Dictionary { key, value } => {
                    put_opaque(out, 2, "DictionaryKey", key)?;
                    value.encode(out)
                }
            }
        })
    }

    pub(crate) fn decode(r: &mut Reader<'_>, model: DataModel) -> Result<Self, WireError> {
        let mut s = r.sub(4, "StoredMetaData")?;
        let m = StoredMetaData {
            storage_time: s.u64("storage_time")?,
            lifetime: s.u32("lifetime")?,
            metadata: match model {
                DataModel::Single => MetaDataValue::Single(MetaData::decode(&mut s)?),
                DataModel::Array => MetaDataValue::Array {
                    index: s.u32("array index")?,
                    value: MetaData::decode(&mut s)?,
                },
                DataModel::Dictionary => MetaDataValue::Dictionary {
                    key: s.opaque(2, "DictionaryKey")?.to_vec(),
                    value: MetaData::decode(&mut s)?,
                },
            },
        };
        s.finish("StoredMetaData")?;
        Ok(m)
    }
}
