//! The sans-IO message layer of a real peer: the [`Node`] core behind the RELOAD security
//! checks, and the encoder that signs what the core sends. The tokio driver
//! ([`super::start`]) moves bytes between links and a [`Peer`]; tests drive a [`Peer`]
//! directly with bytes and a virtual clock (`tests/hostile.rs`).
//!
//! Inbound ([`Peer::receive_bytes`], [`Peer::receive`]), before anything reaches the core:
//! - **Lengths** (RFC 6940 section 6.3.2): a message over the overlay's max-message-size
//!   gets Error_Message_Too_Large, one whose forwarding header decodes but whose contents or
//!   security block do not (truncated, length beyond, bytes left over) gets
//!   Error_Invalid_Message; both only when the message is a request (odd message code,
//!   section 6.3.3; responses are never answered). A header whose `length` is not the
//!   frame's, or that does not decode, gives no trustworthy transaction id or via list:
//!   the frame is dropped. (The link enforces the same size limit on frames: it reads past
//!   an oversize frame keeping only its head, which [`Peer::receive_oversize`] answers with
//!   Error_Message_Too_Large from the forwarding header; it closes a link whose framing
//!   breaks, [`crate::link`].)
//! - **Loops**: a request whose via list holds this node's own Node-ID gets
//!   Error_Not_Found (it cannot be routed on from here without looping; RFC 6940 names
//!   no code of its own for it); such a response is dropped.
//! - **Signatures** (sections 6.3.4 and 11.3): the signer certificate must be in the
//!   security block, chain to the overlay's root ([`Trust`]), name a Node-ID of this
//!   overlay equal to the message's sender (the first via entry, or the link's peer for a
//!   message straight from its originator), and the signature must verify. A Join or
//!   Leave names the sender itself. Every StoredData signature of a StoreReq (or of a
//!   FetchAns this node asked for) is checked the same way ([`DataSigs::on_receive`]).
//!   Any failure: Error_Forbidden for a request (section 6.3.3.1), drop for a response.
//! - **Configuration sequence** (section 6.3.2): a request whose sequence differs from
//!   this node's ([`Node::config_sequence`]; 0 on either side is not checked) gets
//!   Error_Config_Too_Old or Error_Config_Too_New; outgoing messages carry this node's.
//! - **Unknown kinds** (section 7.4.1.2): a Store, Fetch or Stat naming kinds the storage
//!   does not know gets Error_Unknown_Kind whose error_info lists every one of them; the
//!   kinds are read before any model-specific decoding ([`wire::Body::unknown_kinds`]), so
//!   the whole request is refused (a Fetch of a known and an unknown kind too).
//! - TTL 0 and the access policies are the core's and the storage's checks.
//!
//! A refused message never reaches the core, so it never changes stored data.
//!
//! Outbound ([`Peer::encode`]): a message this node originates is signed with its key
//! (certificate included; StoredData keep their original signatures, [`DataSigs`]); a
//! message it forwards keeps the originator's contents and security block byte for byte.
//! Every message carries the address option of [`super::addr`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::addr::{self, AddressBook};
use super::sigs::DataSigs;
use super::DriverError;
use crate::cert::Trust;
use crate::link::LinkConfig;
use crate::node::convert::{from_wire, to_wire, ConvertError};
use crate::node::msg::{error_code, Body, Frame, Message};
use crate::node::{Node, NodeConfig};
use crate::storage::Signer;
use crate::topology::Id;
use crate::wire::{
    self, find_certificate, overlay_hash, verify_message, CertificateType, Destination,
    ForwardingHeader, MessageContents, SecurityBlock,
};

/// Bound of the forwarded-security cache.
const FORWARD_CACHE: usize = 4096;
/// Bound of the table of this node's fetches in flight.
const FETCH_TABLE: usize = 4096;

/// What happened to a received message (for counters and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Handed to the core.
    Accepted,
    /// A request refused with this RFC 6940 error code (the answer is queued).
    Refused(u16),
    /// Dropped without an answer (a response, or nothing trustworthy to answer to).
    Dropped,
}

/// One peer's message layer (module docs).
#[derive(Debug)]
pub struct Peer {
    pub(super) node: Node,
    pub(super) me: Id,
    pub(super) listen: SocketAddr,
    overlay: u32,
    overlay_name: String,
    signer: wire::Signer,
    trust: Trust,
    pub(super) sigs: DataSigs,
    pub(super) book: AddressBook,
    /// (transaction id, is response, originator) -> the contents and security block as
    /// received, so that forwarding keeps the originator's signature.
    forwarded: HashMap<(u64, bool, Id), (MessageContents, SecurityBlock)>,
    /// Transaction id of each FetchReq this node sent -> its Resource-ID.
    fetches: HashMap<u64, Id>,
    /// Transaction id of each FetchReq this node received -> its Resource-ID (the
    /// resource the StoredData signatures of the answer cover).
    answering: HashMap<u64, Id>,
    max_message: usize,
    rx_seq: u32,
    refused: BTreeMap<u16, u64>,
    dropped: u64,
}

impl Peer {
    /// A peer with the identity, roots and overlay of `link` (which also gives the
    /// max-message-size), listening on `listen` (advertised in the address option).
    pub fn new(
        link: &LinkConfig,
        listen: SocketAddr,
        node: NodeConfig,
    ) -> Result<Self, DriverError> {
        let identity = &link.identity;
        let signer = wire::Signer::ecdsa_p256(
            &identity.key_pkcs8,
            identity.chain.first().map_or(&[][..], |c| c.as_ref()),
        )?;
        let me = Id(identity.node.to_u128());
        let mut sigs = DataSigs::default();
        if let Some(c) = identity.chain.first() {
            sigs.add_own_cert(c);
        }
        Ok(Self {
            node: Node::new(me, node),
            me,
            listen,
            overlay: overlay_hash(&link.overlay),
            overlay_name: link.overlay.clone(),
            signer,
            trust: Trust::new(&link.roots, &link.overlay)?,
            sigs,
            book: AddressBook::default(),
            forwarded: HashMap::new(),
            fetches: HashMap::new(),
            answering: HashMap::new(),
            max_message: link.max_message,
            rx_seq: 1,
            refused: BTreeMap::new(),
            dropped: 0,
        })
    }

    /// The node core.
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node core, to start, join, store or fetch.
    pub fn node_mut(&mut self) -> &mut Node {
        &mut self.node
    }

    /// The address book (Node-ID -> listen address).
    pub fn book_mut(&mut self) -> &mut AddressBook {
        &mut self.book
    }

    /// Requests refused so far, by RFC 6940 error code.
    #[must_use]
    pub fn refused(&self) -> &BTreeMap<u16, u64> {
        &self.refused
    }

    /// Messages dropped so far without an answer.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes of one RELOAD message (a link's DATA frame payload) from the link's peer
    /// `link_peer`, at `now` (monotonic, for the core) and `now_unix_s` (wall clock, for
    /// certificate validity).
    pub fn receive_bytes(
        &mut self,
        now: Instant,
        now_unix_s: u64,
        link_peer: Id,
        bytes: &[u8],
    ) -> Inbound {
        let m = match wire::Message::decode_limited(bytes, self.max_message) {
            Ok(m) => m,
            Err(e) => {
                let code = match e {
                    wire::WireError::TooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
                    _ => error_code::INVALID_MESSAGE,
                };
                return self.refuse_raw(now, link_peer, bytes, code, &e.to_string());
            }
        };
        self.receive(now, now_unix_s, link_peer, &m)
    }

    /// The head of a message of `len` bytes that the link read past because it is over the
    /// max-message-size ([`crate::link::LinkEvent::Oversize`]): a request whose forwarding
    /// header decodes from the head gets Error_Message_Too_Large (RFC 6940 section 6.3.2);
    /// anything else is dropped.
    pub fn receive_oversize(
        &mut self,
        now: Instant,
        link_peer: Id,
        len: usize,
        head: &[u8],
    ) -> Inbound {
        let why = format!(
            "message of {len} bytes over the limit of {}",
            self.max_message
        );
        let Ok((header, at)) = ForwardingHeader::decode_head(head, len) else {
            return self.drop_msg(&why);
        };
        let code_point = head
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let is_request = code_point.is_some_and(|c| c % 2 == 1 && c != 0xffff);
        if !is_request || header.overlay != self.overlay {
            return self.drop_msg(&why);
        }
        self.refuse(now, link_peer, &header, error_code::MESSAGE_TOO_LARGE, &why)
    }

    /// An undecodable or oversize message: answered when its header and message code say
    /// it is a request, else dropped.
    fn refuse_raw(
        &mut self,
        now: Instant,
        link_peer: Id,
        bytes: &[u8],
        code: u16,
        why: &str,
    ) -> Inbound {
        // the header of an oversize message is read from a copy with its own length
        let (header, at) = if bytes.len() > self.max_message {
            let mut v = bytes[..bytes.len().min(64 * 1024)].to_vec();
            let n = u32::try_from(v.len()).unwrap_or(0);
            let Some(len) = v.get_mut(16..20) else {
                return self.drop_msg(why);
            };
            let declared = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if declared != bytes.len() {
                return self.drop_msg(why);
            }
            len.copy_from_slice(&n.to_be_bytes());
            match ForwardingHeader::decode_prefix(&v) {
                Ok(x) => x,
                Err(_) => return self.drop_msg(why),
            }
        } else {
            match ForwardingHeader::decode_prefix(bytes) {
                Ok(x) => x,
                Err(_) => return self.drop_msg(why),
            }
        };
        let code_point = bytes
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let is_request = code_point.is_some_and(|c| c % 2 == 1 && c != 0xffff);
        if !is_request || header.overlay != self.overlay {
            return self.drop_msg(why);
        }
        self.refuse(now, link_peer, &header, code, why)
    }

    fn drop_msg(&mut self, why: &str) -> Inbound {
        debug!("message dropped: {why}");
        self.dropped += 1;
        Inbound::Dropped
    }

    /// Answers the request with `header` with an error, or drops it when its via list
    /// cannot be answered over.
    fn refuse(
        &mut self,
        now: Instant,
        link_peer: Id,
        header: &ForwardingHeader,
        code: u16,
        why: &str,
    ) -> Inbound {
        let mut via = Vec::with_capacity(header.via_list.len());
        for d in &header.via_list {
            match d {
                Destination::Node(n) => via.push(Id(n.to_u128())),
                _ => return self.drop_msg(why),
            }
        }
        debug!(code, "request refused: {why}");
        self.node
            .answer_error(now, link_peer, header.transaction_id.0, via, code, why);
        *self.refused.entry(code).or_default() += 1;
        Inbound::Refused(code)
    }

    /// Answers the request `m` with Error_Unknown_Kind listing `kinds` (RFC 6940 section
    /// 7.4.1.2), or drops it when its via list cannot be answered over.
    fn refuse_unknown_kinds(
        &mut self,
        now: Instant,
        link_peer: Id,
        m: &wire::Message,
        kinds: Vec<wire::KindId>,
    ) -> Inbound {
        let why = format!("unknown kinds {kinds:?}");
        let mut via = Vec::with_capacity(m.forwarding.via_list.len());
        for d in &m.forwarding.via_list {
            match d {
                Destination::Node(n) => via.push(Id(n.to_u128())),
                _ => return self.drop_msg(&why),
            }
        }
        debug!("request refused: {why}");
        let kinds = kinds
            .into_iter()
            .map(|k| crate::storage::KindId(k.0))
            .collect();
        self.node
            .answer_unknown_kinds(now, link_peer, m.forwarding.transaction_id.0, via, kinds);
        let code = error_code::UNKNOWN_KIND;
        *self.refused.entry(code).or_default() += 1;
        Inbound::Refused(code)
    }

    /// Refuses `m`: an error answer for a request, a drop for a response.
    fn refuse_msg(
        &mut self,
        now: Instant,
        link_peer: Id,
        m: &wire::Message,
        code: u16,
        why: &str,
    ) -> Inbound {
        if m.contents.code.is_request() {
            self.refuse(now, link_peer, &m.forwarding, code, why)
        } else {
            self.drop_msg(why)
        }
    }

    /// A decoded RELOAD message from the link's peer `link_peer` (module docs).
    pub fn receive(
        &mut self,
        now: Instant,
        now_unix_s: u64,
        link_peer: Id,
        m: &wire::Message,
    ) -> Inbound {
        if m.forwarding.overlay != self.overlay {
            return self.drop_msg("message for another overlay");
        }
        // RFC 6940 section 6.3.2: a request with a configuration sequence other than this
        // node's (0 on either side: not checked) is refused, Error_Config_Too_Old /
        // _Too_New; responses pass (the error itself must reach the requester)
        let (theirs, mine) = (
            m.forwarding.configuration_sequence,
            self.node.config_sequence(),
        );
        if m.contents.code.is_request() && theirs != 0 && mine != 0 && theirs != mine {
            let (code, why) = if theirs < mine {
                (error_code::CONFIG_TOO_OLD, "configuration sequence too old")
            } else {
                (error_code::CONFIG_TOO_NEW, "configuration sequence too new")
            };
            return self.refuse_msg(now, link_peer, m, code, why);
        }
        let me = wire::NodeId::from_u128(self.me.0);
        if m.forwarding.via_list.contains(&Destination::Node(me)) {
            return self.refuse_msg(
                now,
                link_peer,
                m,
                error_code::NOT_FOUND,
                "via list loop: this node is on it",
            );
        }
        // RFC 6940 section 6.3.4: the signature covers overlay, transaction id, contents
        // and signer identity, with the certificate in the security block.
        let forbidden = error_code::FORBIDDEN;
        let Some(cert) = find_certificate(&m.security, &m.security.signature.identity) else {
            return self.refuse_msg(now, link_peer, m, forbidden, "unsigned: no certificate");
        };
        let intermediates: Vec<rustls::pki_types::CertificateDer<'_>> = m
            .security
            .certificates
            .iter()
            .filter(|c| c.cert_type == CertificateType::X509 && c.certificate != cert)
            .map(|c| rustls::pki_types::CertificateDer::from(c.certificate.as_slice()))
            .collect();
        let who = match self.trust.check(cert, &intermediates, now_unix_s) {
            Ok(w) => w,
            Err(e) => {
                let why = format!("signer certificate not from the overlay CA: {e}");
                return self.refuse_msg(now, link_peer, m, forbidden, &why);
            }
        };
        if let Err(e) = verify_message(m, Some(cert)) {
            let why = format!("bad signature: {e}");
            return self.refuse_msg(now, link_peer, m, forbidden, &why);
        }
        // the sender: the first via entry, or the link's peer for a direct message
        let origin = match m.forwarding.via_list.first() {
            Some(Destination::Node(n)) => *n,
            Some(_) => return self.refuse_msg(now, link_peer, m, forbidden, "bad via list"),
            None => wire::NodeId::from_u128(link_peer.0),
        };
        if !who.has_node(&origin, &self.overlay_name) {
            let why = format!("signer certificate does not name the sender {origin}");
            return self.refuse_msg(now, link_peer, m, forbidden, &why);
        }
        let signer = Signer {
            node_id: Id(origin.to_u128()),
            user_name: who.user.clone().unwrap_or_default(),
        };
        // RFC 6940 section 7.4.1.2: a request naming kinds this node does not know gets
        // Error_Unknown_Kind listing them, found before any model-specific decoding
        if m.contents.code.is_request() {
            let reg = self.node.storage().kinds();
            let models = |k: wire::KindId| reg.wire_model(k);
            if let Ok(kinds) = wire::Body::unknown_kinds(m.contents.code, &m.contents.body, &models)
            {
                if !kinds.is_empty() {
                    return self.refuse_unknown_kinds(now, link_peer, m, kinds);
                }
            }
        }
        let mut msg = match from_wire(m, &signer) {
            Ok(x) => x,
            Err(ConvertError::Unsupported(code)) => {
                return self.drop_msg(&format!("message code {code} not handled"));
            }
            Err(ConvertError::Wire(wire::WireError::UnknownKind(k)))
                if m.contents.code.is_request() =>
            {
                return self.refuse_unknown_kinds(now, link_peer, m, vec![wire::KindId(k)]);
            }
            Err(e) => {
                let why = format!("undecodable message: {e}");
                return self.refuse_msg(now, link_peer, m, error_code::INVALID_MESSAGE, &why);
            }
        };
        let origin = Id(origin.to_u128());
        let names_other = match &msg.body {
            Body::JoinReq { joining } => *joining != origin,
            Body::LeaveReq { leaving, .. } => *leaving != origin,
            _ => false,
        };
        if names_other {
            return self.refuse_msg(now, link_peer, m, forbidden, "Join/Leave for another peer");
        }
        let fetched = match msg.body {
            Body::FetchAns { .. } => self.fetches.get(&msg.txid).copied(),
            _ => None,
        };
        if let Err(e) = self
            .sigs
            .on_receive(m, &mut msg, &mut self.trust, now_unix_s, fetched)
        {
            return self.refuse_msg(now, link_peer, m, forbidden, &e.to_string());
        }
        // The address option: only the link peer's own listen address is taken (the
        // first entry, naming the link's authenticated Node-ID); other peers' addresses
        // come from Attach (section 6.5.1).
        for o in &m.forwarding.options {
            if o.option_type == addr::ADDR_OPTION {
                if let Some(&(id, a)) = addr::decode(&o.value).as_deref().and_then(<[_]>::first) {
                    if id == link_peer && id != self.me {
                        self.book.set(id, a);
                    }
                }
            }
        }
        if fetched.is_some() {
            self.fetches.remove(&msg.txid);
        }
        if let Body::FetchReq { resource, .. } = msg.body {
            if self.answering.len() >= FETCH_TABLE {
                self.answering.clear();
            }
            self.answering.insert(msg.txid, resource);
        }
        if self.forwarded.len() >= FORWARD_CACHE {
            self.forwarded.clear();
        }
        let origin = msg.via.first().copied().unwrap_or(link_peer);
        self.forwarded.insert(
            (msg.txid, msg.body.is_response(), origin),
            (m.contents.clone(), m.security.clone()),
        );
        let seq = self.rx_seq;
        self.rx_seq = self.rx_seq.wrapping_add(1);
        self.node.handle(
            now,
            link_peer,
            Frame::Data {
                seq,
                msg: Box::new(msg),
            },
        );
        Inbound::Accepted
    }

    /// Encodes, signs (or keeps the originator's signature) one message (module docs).
    pub fn encode(&mut self, msg: &Message) -> Result<Vec<u8>, String> {
        let mut w = to_wire(msg, self.overlay).map_err(|e| e.to_string())?;
        w.forwarding.configuration_sequence = self.node.config_sequence();
        // the address option: this node's own listen address only
        w.forwarding.options = vec![addr::encode(&[(self.me, self.listen)])];
        // A message with a via list is one this node forwards (the core pushes the
        // previous hop); one without is its own.
        let cached = msg
            .via
            .first()
            .and_then(|&o| self.forwarded.get(&(msg.txid, msg.body.is_response(), o)));
        if let Some((contents, security)) = cached {
            w.contents = contents.clone();
            w.security = security.clone();
        } else {
            let resource = match &msg.body {
                Body::StoreReq { resource, .. } => Some(*resource),
                Body::FetchReq { resource, .. } => {
                    if self.fetches.len() >= FETCH_TABLE {
                        self.fetches.clear();
                    }
                    self.fetches.insert(msg.txid, *resource);
                    None
                }
                Body::FetchAns { .. } => self.answering.remove(&msg.txid),
                _ => None,
            };
            let extra = if matches!(msg.body, Body::StoreReq { .. } | Body::FetchAns { .. }) {
                self.sigs
                    .on_send(&mut w, &self.signer, resource)
                    .map_err(|e| e.to_string())?
            } else {
                Vec::new()
            };
            self.signer
                .sign_message(&mut w)
                .map_err(|e| e.to_string())?;
            for c in extra {
                if !w.security.certificates.contains(&c) {
                    w.security.certificates.push(c);
                }
            }
        }
        w.to_bytes().map_err(|e| e.to_string())
    }
}
