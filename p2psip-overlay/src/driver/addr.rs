//! The driver's address book and the forwarding option that carries the sender's address.
//!
//! The node core names peers by Node-ID only; a link needs a socket address. Addresses of
//! other peers come from Attach (RFC 6940 section 6.5.1, no-ICE host candidates; see
//! [`super`]). Every message a driver puts on a link also carries a project forwarding
//! option (type [`ADDR_OPTION`], not critical, so peers that do not know it forward it
//! untouched, RFC 6940 section 6.3.2.3) with the sender's own listen address, so a peer
//! that accepted a link can reopen it later; the receiver takes only that first entry and
//! only for the link's authenticated Node-ID ([`super::peer`]). Forwarding options are
//! outside the signature (section 6.3.4), so each hop rewrites its own. The codec and the
//! book still read lists of entries ([`AddressBook::learn`], [`AddressBook::entries_for`]).
//!
//! Entry: `node_id[16] family(1: 4 | 6) address(4 | 16) port(2)`; at most [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::topology::Id;
use crate::wire::{ForwardingFlags, ForwardingOption, ForwardingOptionType};

/// Forwarding option type of the address list (a value RFC 6940 leaves unassigned; this
/// project's private use).
pub const ADDR_OPTION: ForwardingOptionType = ForwardingOptionType(0xfe);

/// Most entries in one option.
pub const MAX_ENTRIES: usize = 64;

/// Encodes `entries` (the first is the sender itself) into the option.
#[must_use]
pub fn encode(entries: &[(Id, SocketAddr)]) -> ForwardingOption {
    let mut value = Vec::with_capacity(entries.len() * 23);
    for (id, addr) in entries.iter().take(MAX_ENTRIES) {
        value.extend_from_slice(&id.to_be_bytes());
        match addr.ip() {
            IpAddr::V4(a) => {
                value.push(4);
                value.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                value.push(6);
                value.extend_from_slice(&a.octets());
            }
        }
        value.extend_from_slice(&addr.port().to_be_bytes());
    }
    ForwardingOption {
        option_type: ADDR_OPTION,
        flags: ForwardingFlags::default(),
        value,
    }
}

/// Decodes the option's value; `None` when it is malformed (the option is then ignored).
#[must_use]
pub fn decode(mut v: &[u8]) -> Option<Vec<(Id, SocketAddr)>> {
    let mut out = Vec::new();
    while !v.is_empty() {
        if out.len() >= MAX_ENTRIES || v.len() < 17 {
            return None;
        }
        let id = Id::from_be_slice(&v[..16]);
        let (ip, rest): (IpAddr, &[u8]) = match v[16] {
            4 if v.len() >= 17 + 4 + 2 => {
                let o: [u8; 4] = v[17..21].try_into().ok()?;
                (Ipv4Addr::from(o).into(), &v[21..])
            }
            6 if v.len() >= 17 + 16 + 2 => {
                let o: [u8; 16] = v[17..33].try_into().ok()?;
                (Ipv6Addr::from(o).into(), &v[33..])
            }
            _ => return None,
        };
        let port = u16::from_be_bytes([rest[0], rest[1]]);
        out.push((id, SocketAddr::new(ip, port)));
        v = &rest[2..];
    }
    Some(out)
}

/// Node-ID -> listen address, learnt from the options.
#[derive(Debug, Default)]
pub struct AddressBook {
    map: HashMap<Id, SocketAddr>,
}

impl AddressBook {
    /// The address of `id`.
    #[must_use]
    pub fn get(&self, id: Id) -> Option<SocketAddr> {
        self.map.get(&id).copied()
    }

    /// Records what a peer says about itself (always taken: a restarted peer may move).
    pub fn set(&mut self, id: Id, addr: SocketAddr) {
        self.map.insert(id, addr);
    }

    /// Records a third party's claim (only for ids we know nothing about).
    pub fn offer(&mut self, id: Id, addr: SocketAddr) {
        self.map.entry(id).or_insert(addr);
    }

    /// Forgets `id` (its address refused a connection).
    pub fn forget(&mut self, id: Id) {
        self.map.remove(&id);
    }

    /// Learns from a received option: the first entry is the sender itself.
    pub fn learn(&mut self, entries: &[(Id, SocketAddr)], me: Id) {
        for (i, &(id, addr)) in entries.iter().enumerate() {
            if id == me {
                continue;
            }
            if i == 0 {
                self.set(id, addr);
            } else {
                self.offer(id, addr);
            }
        }
    }

    /// Entries for `ids` that are known, after `(me, my_addr)`, without duplicates.
    #[must_use]
    pub fn entries_for(
        &self,
        me: Id,
        my_addr: SocketAddr,
        ids: impl IntoIterator<Item = Id>,
    ) -> Vec<(Id, SocketAddr)> {
        let mut out = vec![(me, my_addr)];
        for id in ids {
            if out.len() >= MAX_ENTRIES {
                break;
            }
            if out.iter().any(|(x, _)| *x == id) {
                continue;
            }
            if let Some(a) = self.get(id) {
                out.push((id, a));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let e = vec![
            (Id(1), "127.0.0.1:4000".parse().unwrap()),
            (Id(u128::MAX), "[::1]:5".parse().unwrap()),
        ];
        let o = encode(&e);
        assert_eq!(decode(&o.value).unwrap(), e);
        assert!(decode(&o.value[..o.value.len() - 1]).is_none());
        let mut bad = o.value.clone();
        bad[16] = 9;
        assert!(decode(&bad).is_none());
        assert_eq!(decode(&[]).unwrap(), vec![]);
    }

    #[test]
    fn book_prefers_self_claims() {
        let mut b = AddressBook::default();
        let a1: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a2: SocketAddr = "127.0.0.1:2".parse().unwrap();
        b.learn(&[(Id(7), a1), (Id(8), a1)], Id(0));
        b.learn(&[(Id(9), a2), (Id(8), a2), (Id(0), a2)], Id(0));
        assert_eq!(b.get(Id(8)), Some(a1));
        assert_eq!(b.get(Id(0)), None);
        b.learn(&[(Id(8), a2)], Id(0));
        assert_eq!(b.get(Id(8)), Some(a2));
        let e = b.entries_for(Id(0), a1, [Id(8), Id(8), Id(42)]);
        assert_eq!(e, vec![(Id(0), a1), (Id(8), a2)]);
    }
}
