//! What the AS writes into the overlay and how it reads it back, sans-IO: the channel
//! directory value, the channel -> relays value, the RFC 7904 SIP-REGISTRATION value, the
//! resource names, and [`merge`], which turns the directory entries of every other AS into
//! the remote part of this AS's channel list.
//!
//! * **Directory** (kind CHANNEL-DIRECTORY, resource [`DIRECTORY_RESOURCE`], one dictionary
//!   entry per AS keyed by its Node-ID): a compact JSON [`DirectoryValue`]: the owner AS's
//!   SIP address and its channels (id, name, kind, owner AoR, creation time, the HTTP
//!   control addresses of the relays that carry it). At most [`MAX_VALUE`] bytes (the kind's
//!   max-size): channels that do not fit are left out, and [`encode_directory`] says how many.
//! * **Channel -> relays** (kind CHANNEL-RELAYS, resource [`channel_resource`], one entry per
//!   AS keyed by its Node-ID): a [`RelaysValue`]: per relay of that AS carrying the channel,
//!   its control address, RTP ingest and load (viewers). An empty list means "no longer here"
//!   (the driver has no remove: RFC 6940 section 7.4.1 `exists = false` is not offered).
//! * **SIP-REGISTRATION** (RFC 7904 section 3, kind 1, resource = the AoR without its
//!   scheme, [`registration_resource`]): a `SipRegistration` of type `sip_registration_uri`
//!   naming the contact; an empty URI marks a removed binding (same reason as above).
//!
//! [`Freshness`] tells a reader which directory entries their AS stopped refreshing (it
//! crashed or was cut off without storing its empty entry): those are left out of the merge
//! after the directory TTL, long before the stored value's lifetime runs out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::service::channel_list::ChannelEntry;

/// Resource name of the channel directory.
pub const DIRECTORY_RESOURCE: &str = "iptv:directory";

/// Largest value the directory and relays kinds accept (their max-size in
/// `p2psip_overlay::storage::kinds`); the relays kind allows 1024.
pub const MAX_VALUE: usize = 4096;

/// Largest channel -> relays value.
pub const MAX_RELAYS_VALUE: usize = 1024;

/// Resource name of a channel's relays: `iptv:channel:<id>`.
pub fn channel_resource(id: &str) -> String {
    format!("iptv:channel:{id}")
}

/// Resource name of an AoR's SIP-REGISTRATION (RFC 7904 section 3): the AoR without its
/// `sip:`/`sips:` scheme (`alice@example.com`), the form a certificate's rfc822Name takes,
/// which the kind's USER-NODE-MATCH policy compares (RFC 6940 section 7.3.3).
pub fn registration_resource(aor: &str) -> String {
    let a = aor.trim();
    let lower = a.to_ascii_lowercase();
    if lower.starts_with("sips:") {
        a[5..].to_owned()
    } else if lower.starts_with("sip:") {
        a[4..].to_owned()
    } else {
        a.to_owned()
    }
}

/// One channel in a directory value (short keys: the value is bounded by [`MAX_VALUE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirChannel {
    /// Channel id.
    #[serde(rename = "i")]
    pub id: String,
    /// Name.
    #[serde(rename = "n")]
    pub name: String,
    /// `producer`, `personal` or `personalized`.
    #[serde(rename = "k")]
    pub kind: String,
    /// Owner AoR (personal channels).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Creation time, ms since the Unix epoch.
    #[serde(rename = "t")]
    pub created_ms: i64,
    /// HTTP control addresses of the owner's relays that carry it.
    #[serde(rename = "r", default)]
    pub relays: Vec<SocketAddr>,
}

/// One AS's entry of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryValue {
    /// Format version (1).
    pub v: u8,
    /// The owner AS's SIP address (`host:port`).
    pub sip: String,
    /// Its channels.
    #[serde(rename = "c")]
    pub channels: Vec<DirChannel>,
}

/// Encodes `v` within `max` bytes: channels are left out from the end until it fits.
/// Returns the bytes and how many channels were left out.
pub fn encode_directory(v: &DirectoryValue, max: usize) -> (Vec<u8>, usize) {
    let mut v = v.clone();
    let mut dropped = 0;
    loop {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        if bytes.len() <= max || v.channels.is_empty() {
            return (bytes, dropped);
        }
        v.channels.pop();
        dropped += 1;
    }
}

/// Decodes a directory value (`None`: not ours, or garbage).
pub fn decode_directory(b: &[u8]) -> Option<DirectoryValue> {
    serde_json::from_slice::<DirectoryValue>(b)
        .ok()
        .filter(|v| v.v == 1)
}

/// A channel another AS owns, as this AS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteChannel {
    /// The list entry (what NOTIFY and `/api/channels` show).
    pub entry: ChannelEntry,
    /// Dictionary key (Node-ID bytes) of the owner AS.
    pub node: Vec<u8>,
    /// The owner AS's SIP address.
    pub sip: String,
    /// Control addresses of the owner's relays that carry it.
    pub relays: Vec<SocketAddr>,
}

/// Why a remote channel is not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// An entry that is not a directory value.
    Garbage {
        /// Its key.
        node: Vec<u8>,
    },
    /// A local channel has the id (a remote channel never hides a local one).
    LocalClash {
        /// The id.
        id: String,
    },
    /// Two other ASes list the id: the older channel (then the smaller key) is kept.
    RemoteClash {
        /// The id.
        id: String,
        /// Key of the AS whose channel is not listed.
        node: Vec<u8>,
    },
    /// Not a valid channel id.
    BadId {
        /// The id.
        id: String,
    },
}

/// The remote channels and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Remote channels by id.
    pub channels: BTreeMap<String, RemoteChannel>,
    /// Entries left out.
    pub skipped: Vec<Skipped>,
}

/// Merges the directory entries `(key, value)` of every AS into the remote channel list of
/// the AS whose key is `me` and whose own channels are `local`: its own entry is ignored,
/// ids it has itself are not listed, ids two other ASes share go to the older channel
/// (ties: smaller key), entries that do not decode are skipped. The result does not
/// depend on the order of `entries`.
pub fn merge(me: &[u8], local: &BTreeSet<String>, entries: &[(Vec<u8>, Vec<u8>)]) -> Merged {
    let mut out = Merged::default();
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (node, data) in sorted {
        if node.as_slice() == me {
            continue;
        }
        let Some(v) = decode_directory(data) else {
            out.skipped.push(Skipped::Garbage { node: node.clone() });
            continue;
        };
        for c in v.channels {
            if !crate::service::personal::is_valid_channel_id(&c.id) {
                out.skipped.push(Skipped::BadId { id: c.id });
                continue;
            }
            if local.contains(&c.id) {
                out.skipped.push(Skipped::LocalClash { id: c.id });
                continue;
            }
            let rc = RemoteChannel {
                entry: ChannelEntry {
                    id: c.id.clone(),
                    name: c.name,
                    kind: c.kind,
                    owner: c.owner,
                    created_ms: c.created_ms,
                },
                node: node.clone(),
                sip: v.sip.clone(),
                relays: c.relays,
            };
            match out.channels.get(&c.id) {
                // Keys come in ascending order: on equal age the one held stays.
                Some(held) if held.entry.created_ms <= rc.entry.created_ms => {
                    out.skipped.push(Skipped::RemoteClash {
                        id: c.id,
                        node: node.clone(),
                    });
                }
                Some(held) => {
                    out.skipped.push(Skipped::RemoteClash {
                        id: c.id.clone(),
                        node: held.node.clone(),
                    });
                    out.channels.insert(c.id, rc);
                }
                None => {
                    out.channels.insert(c.id, rc);
                }
            }
        }
    }
    out
}

/// When each AS's directory entry was last refreshed, as one reader saw it. An entry whose
/// storage time (RFC 6940 section 7.1 `storage_time`, written by its AS at every store) has
/// not changed for `ttl` of the reader's own clock is stale: its AS stopped refreshing it.
/// The writer's stamp is only compared with itself, so clock skew between ASes does not
/// matter; an entry first seen is given a full `ttl`.
#[derive(Debug, Default)]
pub struct Freshness {
    /// Key -> (storage time, since when, stale).
    seen: BTreeMap<Vec<u8>, (u64, Instant, bool)>,
    newly_stale: usize,
}

impl Freshness {
    /// Feeds the entries `(key, storage_time)` of one fetch at `now`; returns the keys of
    /// the stale ones. Keys not fetched any more are forgotten.
    pub fn observe<'a>(
        &mut self,
        now: Instant,
        ttl: Duration,
        entries: impl IntoIterator<Item = (&'a [u8], u64)>,
    ) -> BTreeSet<Vec<u8>> {
        let mut next = BTreeMap::new();
        let mut stale = BTreeSet::new();
        self.newly_stale = 0;
        for (key, stamp) in entries {
            let (since, was) = match self.seen.get(key) {
                Some(&(s, since, was)) if s == stamp => (since, was),
                _ => (now, false),
            };
            let is = now.saturating_duration_since(since) >= ttl;
            if is {
                stale.insert(key.to_vec());
                self.newly_stale += usize::from(!was);
            }
            next.insert(key.to_vec(), (stamp, since, is));
        }
        self.seen = next;
        stale
    }

    /// How many entries the last [`Freshness::observe`] found stale for the first time.
    pub fn newly_stale(&self) -> usize {
        self.newly_stale
    }
}

/// One relay carrying a channel, as the channel -> relays value names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayAd {
    /// The relay's HTTP control API (where another relay asks for a copy).
    pub control: SocketAddr,
    /// Its RTP ingest for the channel.
    pub ingest: SocketAddr,
    /// Viewers on it (the AS's count).
    pub load: u32,
}

/// One AS's entry under `iptv:channel:<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaysValue {
    /// The owner AS's SIP address.
    pub sip: String,
    /// Its relays that carry the channel (empty: it no longer does).
    pub relays: Vec<RelayAd>,
}

/// Encodes a channel -> relays value within [`MAX_RELAYS_VALUE`] (relays beyond it are
/// left out).
pub fn encode_relays(v: &RelaysValue) -> Vec<u8> {
    let mut v = v.clone();
    loop {
        let b = serde_json::to_vec(&v).unwrap_or_default();
        if b.len() <= MAX_RELAYS_VALUE || v.relays.is_empty() {
            return b;
        }
        v.relays.pop();
    }
}

/// Every relay of every AS in the fetched values, least loaded first (garbage skipped).
pub fn relay_candidates(values: &[Vec<u8>]) -> Vec<RelayAd> {
    let mut out: Vec<RelayAd> = values
        .iter()
        .filter_map(|b| serde_json::from_slice::<RelaysValue>(b).ok())
        .flat_map(|v| v.relays)
        .collect();
    out.sort_by_key(|r| (r.load, r.control));
    out
}

/// `sip_registration_uri` (RFC 7904 section 3).
pub const SIP_REGISTRATION_URI: u8 = 1;

/// Encodes a `SipRegistration` of type `sip_registration_uri` (RFC 7904 section 3):
/// `type (1) | length (2) | uri<0..2^16-1>`. URIs longer than 65,533 bytes are cut.
pub fn encode_sip_registration(uri: &str) -> Vec<u8> {
    let u = &uri.as_bytes()[..uri.len().min(usize::from(u16::MAX) - 2)];
    let ulen = u16::try_from(u.len()).unwrap_or(0);
    let mut b = Vec::with_capacity(5 + u.len());
    b.push(SIP_REGISTRATION_URI);
    b.extend_from_slice(&(ulen + 2).to_be_bytes());
    b.extend_from_slice(&ulen.to_be_bytes());
    b.extend_from_slice(u);
    b
}

/// Decodes a `sip_registration_uri` value; `None` for another type or bad lengths.
pub fn decode_sip_registration(b: &[u8]) -> Option<String> {
    let (&t, rest) = b.split_first()?;
    if t != SIP_REGISTRATION_URI || rest.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let ulen = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    if len != ulen + 2 || rest.len() != 2 + len {
        return None;
    }
    String::from_utf8(rest[4..].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: &str, t: i64) -> DirChannel {
        DirChannel {
            id: id.into(),
            name: id.to_uppercase(),
            kind: "personal".into(),
            owner: Some(format!("sip:{id}@x")),
            created_ms: t,
            relays: vec!["127.0.0.1:9000".parse().unwrap()],
        }
    }

    fn val(sip: &str, chans: Vec<DirChannel>) -> Vec<u8> {
        encode_directory(
            &DirectoryValue {
                v: 1,
                sip: sip.into(),
                channels: chans,
            },
            MAX_VALUE,
        )
        .0
    }

    #[test]
    fn merge_lists_others_and_never_hides_local() {
        let local: BTreeSet<String> = ["news".to_owned()].into();
        let entries = vec![
            (vec![1], val("as1:5060", vec![ch("mine", 5)])),
            (vec![2], val("as2:5060", vec![ch("cam", 10), ch("news", 1)])),
            (vec![3], b"not json".to_vec()),
        ];
        let m = merge(&[1], &local, &entries);
        assert_eq!(m.channels.keys().collect::<Vec<_>>(), ["cam"]);
        let cam = &m.channels["cam"];
        assert_eq!(cam.sip, "as2:5060");
        assert_eq!(cam.node, vec![2]);
        assert_eq!(cam.entry.owner.as_deref(), Some("sip:cam@x"));
        assert_eq!(cam.relays.len(), 1);
        assert!(m
            .skipped
            .contains(&Skipped::LocalClash { id: "news".into() }));
        assert!(m.skipped.contains(&Skipped::Garbage { node: vec![3] }));
    }

    #[test]
    fn remote_clash_goes_to_the_older_channel_whatever_the_order() {
        let a = (vec![7], val("a:1", vec![ch("cam", 20)]));
        let b = (vec![9], val("b:1", vec![ch("cam", 10)]));
        let none = BTreeSet::new();
        for entries in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let m = merge(&[0], &none, &entries);
            assert_eq!(m.channels["cam"].sip, "b:1");
            assert_eq!(
                m.skipped,
                [Skipped::RemoteClash {
                    id: "cam".into(),
                    node: vec![7]
                }]
            );
        }
        // same age: the smaller key wins
        let c = (vec![3], val("c:1", vec![ch("cam", 10)]));
        let m = merge(&[0], &none, &[b, c]);
        assert_eq!(m.channels["cam"].sip, "c:1");
    }

    #[test]
    fn bad_ids_are_skipped() {
        let m = merge(
            &[0],
            &BTreeSet::new(),
            &[(
                vec![1],
                val("a:1", vec![ch("Bad Id", 1), ch("new-channel", 1)]),
            )],
        );
        assert!(m.channels.is_empty());
        assert_eq!(m.skipped.len(), 2);
    }

    #[test]
    fn directory_fits_its_max_size() {
        let many: Vec<DirChannel> = (0..200).map(|i| ch(&format!("channel-{i}"), i)).collect();
        let v = DirectoryValue {
            v: 1,
            sip: "127.0.0.1:5060".into(),
            channels: many,
        };
        let (b, dropped) = encode_directory(&v, MAX_VALUE);
        assert!(b.len() <= MAX_VALUE);
        assert!(dropped > 0);
        let back = decode_directory(&b).unwrap();
        assert_eq!(back.channels.len() + dropped, 200);
        assert_eq!(back.channels[0], v.channels[0]);
        assert!(decode_directory(br#"{"v":2,"sip":"x","c":[]}"#).is_none());
    }

    #[test]
    fn relays_value_and_candidates() {
        let ad = |p: u16, load| RelayAd {
            control: SocketAddr::from(([127, 0, 0, 1], p)),
            ingest: SocketAddr::from(([127, 0, 0, 1], p + 1)),
            load,
        };
        let a = encode_relays(&RelaysValue {
            sip: "a".into(),
            relays: vec![ad(100, 5), ad(200, 1)],
        });
        let b = encode_relays(&RelaysValue {
            sip: "b".into(),
            relays: vec![],
        });
        let c = relay_candidates(&[a, b, b"junk".to_vec()]);
        assert_eq!(c, [ad(200, 1), ad(100, 5)]);
        let big = RelaysValue {
            sip: "a".into(),
            relays: (0..100).map(|i| ad(1000 + i, 0)).collect(),
        };
        assert!(encode_relays(&big).len() <= MAX_RELAYS_VALUE);
    }

    #[test]
    fn sip_registration_round_trip() {
        let b = encode_sip_registration("sip:alice@127.0.0.1:5099");
        assert_eq!(b[0], 1);
        assert_eq!(u16::from_be_bytes([b[1], b[2]]) as usize, b.len() - 3);
        assert_eq!(
            decode_sip_registration(&b).as_deref(),
            Some("sip:alice@127.0.0.1:5099")
        );
        assert_eq!(
            decode_sip_registration(&encode_sip_registration("")).as_deref(),
            Some("")
        );
        assert_eq!(decode_sip_registration(&[2, 0, 2, 0, 0]), None);
        assert_eq!(decode_sip_registration(&[1, 0, 9, 0, 7, b'x']), None);
        assert_eq!(decode_sip_registration(&[]), None);
    }

    #[test]
    fn freshness_drops_entries_not_refreshed_within_the_ttl() {
        #[expect(clippy::disallowed_methods, reason = "a test needs one base instant")]
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut f = Freshness::default();
        let (a, b): (&[u8], &[u8]) = (&[1], &[2]);
        assert!(f.observe(at(0), ttl, [(a, 100), (b, 5)]).is_empty());
        // a refreshes (new stamp), b does not.
        assert!(f.observe(at(30), ttl, [(a, 130), (b, 5)]).is_empty());
        assert_eq!(
            f.observe(at(60), ttl, [(a, 130), (b, 5)]),
            BTreeSet::from([b.to_vec()])
        );
        assert_eq!(f.newly_stale(), 1);
        assert_eq!(f.observe(at(61), ttl, [(a, 130), (b, 5)]).len(), 1);
        assert_eq!(f.newly_stale(), 0, "counted once");
        assert!(f.observe(at(89), ttl, [(a, 130)]).is_empty(), "b forgotten");
        assert_eq!(
            f.observe(at(90), ttl, [(a, 130), (b, 5)]),
            BTreeSet::from([a.to_vec()]),
            "a's ttl is up; b, seen anew, has a full ttl again"
        );
        assert!(f.observe(at(149), ttl, [(b, 5)]).is_empty());
        assert_eq!(
            f.observe(at(150), ttl, [(b, 5)]),
            BTreeSet::from([b.to_vec()])
        );
        // A stamp that goes back (the AS restarted with a slower clock) is a refresh too.
        assert!(f.observe(at(151), ttl, [(b, 1)]).is_empty());
    }

    #[test]
    fn resource_names() {
        assert_eq!(
            registration_resource("sip:alice@example.com"),
            "alice@example.com"
        );
        assert_eq!(registration_resource("SIPS:bob@x"), "bob@x");
        assert_eq!(registration_resource("carol@y"), "carol@y");
        assert_eq!(channel_resource("cam"), "iptv:channel:cam");
    }
}
