//! Values of the kinds this project stores (the `value` of a [`super::DataValue`]):
//! SIP-REGISTRATION (RFC 7904 section 3) and the project's own channel kinds in the private
//! Kind-ID range (RFC 6940 section 14.6: 0xf0000000-0xfffffffe are private use).

use std::net::SocketAddr;

use super::body::{decode_addr, encode_addr};
use super::codec::{put_list, put_opaque, put_u32, put_u64, put_vec, Reader};
use super::{Destination, WireError};

/// A SIP-REGISTRATION value (RFC 7904 section 3): where the AoR's user can be reached.
/// Stored in a dictionary keyed by the registering peer's Node-ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SipRegistration {
    /// `sip_registration_uri(1)`: a SIP or SIPS URI (a contact reachable without the overlay).
    Uri(String),
    /// `sip_registration_route(2)`: caller preferences and a destination list through the
    /// overlay.
    Route {
        /// `opaque contact_prefs<0..2^16-1>` (RFC 3840 feature parameters).
        contact_prefs: Vec<u8>,
        /// `Destination destination_list<0..2^16-1>`.
        destination_list: Vec<Destination>,
    },
}

impl SipRegistration {
    /// Encodes the value.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        out.push(match self {
            SipRegistration::Uri(_) => 1,
            SipRegistration::Route { .. } => 2,
        });
        put_vec(&mut out, 2, "SipRegistration", |out| match self {
            SipRegistration::Uri(u) => put_opaque(out, 2, "uri", u.as_bytes()),
            SipRegistration::Route {
                contact_prefs,
                destination_list,
            } => {
                put_opaque(out, 2, "contact_prefs", contact_prefs)?;
                put_list(out, 2, "destination_list", destination_list, |d, out| {
                    d.encode(out)
                })
            }
        })?;
        Ok(out)
    }

    /// Decodes a value.
    pub fn from_bytes(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b);
        let t = r.u8("SipRegistrationType")?;
        let mut d = r.sub(2, "SipRegistration")?;
        let v = match t {
            1 => SipRegistration::Uri(String::from_utf8(d.opaque(2, "uri")?.to_vec()).map_err(
                |_| WireError::InvalidValue {
                    what: "SIP-REGISTRATION uri (not UTF-8)",
                    value: 0,
                },
            )?),
            2 => SipRegistration::Route {
                contact_prefs: d.opaque(2, "contact_prefs")?.to_vec(),
                destination_list: d.list(2, "destination_list", Destination::decode)?,
            },
            t => {
                return Err(WireError::InvalidValue {
                    what: "SipRegistrationType",
                    value: u64::from(t),
                })
            }
        };
        d.finish("SipRegistration")?;
        r.finish("SipRegistration")?;
        Ok(v)
    }
}

/// A CHANNEL-RELAYS value (kind 0xf0000001): one relay that carries the channel, keyed in
/// the dictionary by the relay's Node-ID. Wire form: `IpAddressPort addr; uint32 load;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRelay {
    /// The relay's control/media address.
    pub addr: SocketAddr,
    /// Its load (viewers served, or a per-mille figure; higher is busier).
    pub load: u32,
}

impl ChannelRelay {
    /// Encodes the value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        encode_addr(&self.addr, &mut out);
        put_u32(&mut out, self.load);
        out
    }

    /// Decodes a value.
    pub fn from_bytes(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b);
        let v = ChannelRelay {
            addr: decode_addr(&mut r)?,
            load: r.u32("load")?,
        };
        r.finish("ChannelRelay")?;
        Ok(v)
    }
}

/// A CHANNEL-DIRECTORY value (kind 0xf0000002): one channel of the network, keyed in the
/// dictionary by channel name. Wire form:
/// `opaque title<0..2^16-1>; opaque sip_uri<0..2^16-1>; uint64 created_ms;`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelDirectoryEntry {
    /// Human-readable title.
    pub title: String,
    /// The URI to join it (`sip:<channel>@<domain>`).
    pub sip_uri: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl ChannelDirectoryEntry {
    /// Encodes the value.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        put_opaque(&mut out, 2, "title", self.title.as_bytes())?;
        put_opaque(&mut out, 2, "sip_uri", self.sip_uri.as_bytes())?;
        put_u64(&mut out, self.created_ms);
        Ok(out)
    }

    /// Decodes a value.
    pub fn from_bytes(b: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(b);
        let utf8 = |b: &[u8], what| {
            String::from_utf8(b.to_vec()).map_err(|_| WireError::InvalidValue { what, value: 0 })
        };
        let v = ChannelDirectoryEntry {
            title: utf8(r.opaque(2, "title")?, "channel title (not UTF-8)")?,
            sip_uri: utf8(r.opaque(2, "sip_uri")?, "channel uri (not UTF-8)")?,
            created_ms: r.u64("created_ms")?,
        };
        r.finish("ChannelDirectoryEntry")?;
        Ok(v)
    }
}
