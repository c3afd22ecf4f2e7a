//! Diameter (RFC 6733): our own codec and the typed 3GPP applications the AS uses, sans-IO.
//!
//! # Layout
//!
//! | module | what |
//! | --- | --- |
//! | [`types`] | open newtypes for code points ([`CommandCode`], [`ApplicationId`], [`VendorId`], [`AvpCode`], [`ResultCode`]) and the flag bytes ([`CommandFlags`], [`AvpFlags`]) |
//! | [`dict`] | the AVPs we know (base, base accounting, Sh, Rf/IMS charging): code, vendor, data type, M-bit rule, applications |
//! | [`avp`] | [`Avp`] / [`AvpValue`] (owned, typed by the dictionary, unknown AVPs raw), [`AvpRef`] / [`AvpIter`] (borrowed, no allocation), [`Address`], [`Time`], [`AvpList`] look-ups with ABNF occurrence checks |
//! | [`message`] | [`Header`], [`Message`] (`decode` / `encode`), [`MessageRef`], stream framing [`frame_len`], [`Message::check_avps`] (M bit, 5001 / 3009) |
//! | [`error`] | [`DecodeError`] (Result-Code, Failed-AVP, the request's header and Session-Id, [`DecodeError::error_answer`]), [`FrameError`], [`EncodeError`] |
//! | [`base`] | typed CER/CEA, DWR/DWA, DPR/DPA (RFC 6733 section 5) |
//! | [`sh`] | typed Sh UDR/UDA, PNR/PNA (3GPP TS 29.328/29.329) and the IPTV profile carried in User-Data |
//! | [`rf`] | typed Rf ACR/ACA (3GPP TS 32.299, RFC 6733 section 9) with Service-Information / IMS-Information |
//!
//! # How it fits
//!
//! A connection driver reads bytes, asks [`frame_len`] for the length of the next message
//! (`Ok(None)`: read more; `Err`: close), and hands each complete message to
//! [`Message::decode`]. A request that fails to decode is answered with
//! [`DecodeError::error_answer`] (RFC 6733 section 7.2: E bit for 3xxx, Result-Code,
//! Failed-AVP). A decoded request is checked with [`Message::check_avps`] (unknown mandatory
//! AVPs, section 4.1) and then read by a typed parser (`Cer::from_message`,
//! `Udr::from_message`, ...) whose occurrence checks give 5005/5009 the same way. The peer
//! state machine (CER/CEA, DWR/DWA, DPR/DPA, failover) sits on top of these types and owns the
//! Hop-by-Hop / End-to-End identifiers: typed builders produce messages with both set to 0.
//!
//! Hostile input is bounded: every length is checked against the bytes before use, a
//! message is at most 16 MiB by format and [`frame_len`]'s maximum in practice, AVP vectors
//! grow with the input, and Grouped AVPs nest at most [`MAX_GROUP_DEPTH`] deep. Nothing
//! panics.

pub mod avp;
pub mod base;
pub mod dict;
pub mod driver;
pub mod error;
pub mod message;
pub mod peer;
pub mod rf;
pub mod router;
pub mod sh;
pub mod types;
pub mod watchdog;

pub use avp::{Address, Avp, AvpIter, AvpList, AvpRef, AvpValue, Time, MAX_GROUP_DEPTH};
pub use error::{DecodeError, DecodeErrorKind, EncodeError, FrameError};
pub use message::{frame_len, Header, Message, MessageRef, DEFAULT_MAX_MESSAGE_SIZE, HEADER_LEN};
pub use types::{
    ApplicationId, AvpCode, AvpFlags, CommandCode, CommandFlags, ResultCode, VendorId,
};
