//! The RELOAD wire format (RFC 6940 section 6.3), sans-IO and strict.
//!
//! A [`Message`] is a [`ForwardingHeader`] (what routing peers read), [`MessageContents`]
//! (code, body bytes, extensions) and a [`SecurityBlock`] (certificates and the signature).
//! Bodies are typed by [`Body`] on demand, so a peer that only forwards never decodes them
//! ([`ForwardingHeader::decode_prefix`] and [`ForwardingHeader::encode_with_payload`] rewrite
//! the header around the untouched rest). Stored values, specifiers and metadata are
//! [`StoredData`], [`StoredDataSpecifier`] and [`StoredMetaData`]; the values of this
//! project's kinds are [`SipRegistration`], [`ChannelRelay`] and [`ChannelDirectoryEntry`].
//! Links frame messages with [`FramedMessage`] and [`FrameDecoder`]. [`examples`] holds one
//! sample of every message (tests, bench, fuzz seeds) and the fuzz property.
//!
//! Decoding never panics and never allocates more than the input: every length prefix is
//! checked against what remains of its enclosing structure before use, structures must fill
//! their space exactly, Boolean octets are 0 or 1, and none of the structures recurse. The
//! signed byte strings of RFC 6940 sections 6.3.4 and 7.1 come from
//! [`message_signature_input`] and [`stored_data_signature_input`]; [`sign`] signs and
//! verifies them with ECDSA P-256 / SHA-256.

mod body;
mod codec;
mod contents;
mod data;
mod error;
pub mod examples;
mod framing;
mod header;
mod kinds;
pub mod pcap;
mod security;
pub mod sign;

pub use body::{
    AppAttach, AttachReqAns, Body, CandType, ChordLeaveData, ChordUpdate, ChordUpdateKind,
    ConfigUpdateReq, ErrorResponse, FetchKindResponse, FetchReq, FindKindData, FindReq,
    IceCandidate, IceExtension, JoinAns, JoinReq, LeaveReq, OverlayLinkType, PingAns,
    ProbeInformation, ProbeInformationType, RouteQueryReq, StatKindResponse, StatReq,
    StoreKindData, StoreKindResponse, StoreReq,
};
pub use contents::{
    ErrorCode, MessageCode, MessageContents, MessageExtension, MessageExtensionType,
};
pub use data::{
    ArrayRange, DataModel, DataSpecifier, DataValue, KindId, KindModels, MetaData, MetaDataValue,
    StoredData, StoredDataSpecifier, StoredDataValue, StoredMetaData,
};
pub use error::WireError;
pub use framing::{
    encode_data, FrameDecoder, FrameItem, FramedMessage, OversizeFrame, FRAME_ACK, FRAME_DATA,
    MAX_FRAMED_MESSAGE,
};
pub use header::{
    overlay_hash, Destination, DestinationList, ForwardingFlags, ForwardingHeader,
    ForwardingOption, ForwardingOptionType, Fragment, NodeId, ParseNodeIdError, ResourceId,
    TransactionId, DEFAULT_TTL, FIXED_HEADER_LEN, MAX_HEADER_LEN, NODE_ID_LEN, RELOAD_VERSION,
    RELO_TOKEN,
};
pub use kinds::{ChannelDirectoryEntry, ChannelRelay, SipRegistration};
pub use security::{
    message_signature_input, stored_data_signature_input, CertificateType, GenericCertificate,
    HashAlgorithm, SecurityBlock, Signature, SignatureAlgorithm, SignatureAndHashAlgorithm,
    SignerIdentity,
};
pub use sign::{
    cert_hash_identity, certificate_public_key, find_certificate, verify, verify_message,
    verify_stored_data, SignError, Signer,
};

use codec::Reader;

/// A whole RELOAD message (RFC 6940 section 6.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The forwarding header.
    pub forwarding: ForwardingHeader,
    /// Code, body and extensions.
    pub contents: MessageContents,
    /// Certificates and signature.
    pub security: SecurityBlock,
}

impl Message {
    /// A message with a typed body and an unsigned security block.
    pub fn new(forwarding: ForwardingHeader, body: &Body) -> Result<Self, WireError> {
        Ok(Message {
            forwarding,
            contents: MessageContents::from_body(body)?,
            security: SecurityBlock::unsigned(),
        })
    }

    /// Appends the encoded message; the header's length field is filled in.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        self.forwarding.encode_start(out)?;
        let r = self
            .contents
            .encode(out)
            .and_then(|()| self.security.encode(out));
        if let Err(e) = r {
            out.truncate(start);
            return Err(e);
        }
        ForwardingHeader::patch_length(out, start)
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut v = Vec::with_capacity(128 + self.contents.body.len());
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decodes a whole message; the header's length must equal `buf.len()`.
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        let (forwarding, at) = ForwardingHeader::decode_prefix(buf)?;
        let mut r = Reader::new(&buf[at..]);
        let contents = MessageContents::decode(&mut r)?;
        let security = SecurityBlock::decode(&mut r)?;
        r.finish("message")?;
        Ok(Message {
            forwarding,
            contents,
            security,
        })
    }

    /// [`Message::decode`] after checking the size against the overlay's
    /// `max-message-size` (answer [`ErrorCode::MESSAGE_TOO_LARGE`] on [`WireError::TooLarge`]).
    pub fn decode_limited(buf: &[u8], max: usize) -> Result<Message, WireError> {
        if buf.len() > max {
            return Err(WireError::TooLarge {
                len: buf.len(),
                max,
            });
        }
        Self::decode(buf)
    }

    /// The typed body (default kind table).
    pub fn body(&self) -> Result<Body, WireError> {
        self.contents.typed_body()
    }

    /// The encoded MessageContents, as the signature covers them.
    pub fn contents_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut v = Vec::new();
        self.contents.encode(&mut v)?;
        Ok(v)
    }

    /// The bytes this message's signature covers (RFC 6940 section 6.3.4), for the signer
    /// identity in its security block.
    pub fn signature_input(&self) -> Result<Vec<u8>, WireError> {
        message_signature_input(
            self.forwarding.overlay,
            self.forwarding.transaction_id,
            &self.contents_bytes()?,
            &self.security.signature.identity,
        )
    }
}
