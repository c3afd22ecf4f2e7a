//! Message contents (RFC 6940 section 6.3.3): the message code, the body as bytes (typed by
//! [`super::Body`]) and the message extensions. The error codes of section 6.3.3.1 are here.

use super::codec::{put_opaque, put_u16, put_vec, Reader};
use super::WireError;

/// `message_code` (RFC 6940 section 6.3.3, IANA "RELOAD Message Codes"): odd codes are
/// requests, the next even code is the answer, 0xffff is an error. Open: unknown codes survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageCode(pub u16);

impl MessageCode {
    /// `invalid(0)`.
    pub const INVALID: Self = Self(0);
    /// Probe (section 6.4.2.5).
    pub const PROBE_REQ: Self = Self(1);
    /// Probe answer.
    pub const PROBE_ANS: Self = Self(2);
    /// Attach (section 6.5.1).
    pub const ATTACH_REQ: Self = Self(3);
    /// Attach answer.
    pub const ATTACH_ANS: Self = Self(4);
    /// Store (section 7.4.1).
    pub const STORE_REQ: Self = Self(7);
    /// Store answer.
    pub const STORE_ANS: Self = Self(8);
    /// Fetch (section 7.4.2).
    pub const FETCH_REQ: Self = Self(9);
    /// Fetch answer.
    pub const FETCH_ANS: Self = Self(10);
    /// Find (section 7.4.4).
    pub const FIND_REQ: Self = Self(13);
    /// Find answer.
    pub const FIND_ANS: Self = Self(14);
    /// Join (section 6.4.2.2).
    pub const JOIN_REQ: Self = Self(15);
    /// Join answer.
    pub const JOIN_ANS: Self = Self(16);
    /// Leave (section 6.4.2.3).
    pub const LEAVE_REQ: Self = Self(17);
    /// Leave answer.
    pub const LEAVE_ANS: Self = Self(18);
    /// Update (section 6.4.2.1).
    pub const UPDATE_REQ: Self = Self(19);
    /// Update answer.
    pub const UPDATE_ANS: Self = Self(20);
    /// RouteQuery (section 6.4.2.4).
    pub const ROUTE_QUERY_REQ: Self = Self(21);
    /// RouteQuery answer.
    pub const ROUTE_QUERY_ANS: Self = Self(22);
    /// Ping (section 6.5.3).
    pub const PING_REQ: Self = Self(23);
    /// Ping answer.
    pub const PING_ANS: Self = Self(24);
    /// Stat (section 7.4.3).
    pub const STAT_REQ: Self = Self(25);
    /// Stat answer.
    pub const STAT_ANS: Self = Self(26);
    /// AppAttach (section 6.5.2).
    pub const APP_ATTACH_REQ: Self = Self(29);
    /// AppAttach answer.
    pub const APP_ATTACH_ANS: Self = Self(30);
    /// ConfigUpdate (section 6.5.4).
    pub const CONFIG_UPDATE_REQ: Self = Self(33);
    /// ConfigUpdate answer.
    pub const CONFIG_UPDATE_ANS: Self = Self(34);
    /// Error (section 6.3.3.1).
    pub const ERROR: Self = Self(0xffff);

    /// A request code (odd, not the error code).
    pub fn is_request(self) -> bool {
        self.0 & 1 == 1 && self != Self::ERROR
    }

    /// The answer code of a request code.
    pub fn answer(self) -> Option<Self> {
        self.is_request().then(|| Self(self.0 + 1))
    }

    /// The RFC name, if the code is known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "probe_req",
            2 => "probe_ans",
            3 => "attach_req",
            4 => "attach_ans",
            7 => "store_req",
            8 => "store_ans",
            9 => "fetch_req",
            10 => "fetch_ans",
            13 => "find_req",
            14 => "find_ans",
            15 => "join_req",
            16 => "join_ans",
            17 => "leave_req",
            18 => "leave_ans",
            19 => "update_req",
            20 => "update_ans",
            21 => "route_query_req",
            22 => "route_query_ans",
            23 => "ping_req",
            24 => "ping_ans",
            25 => "stat_req",
            26 => "stat_ans",
            29 => "app_attach_req",
            30 => "app_attach_ans",
            33 => "config_update_req",
            34 => "config_update_ans",
            0xffff => "error",
            _ => return None,
        })
    }
}

/// `MessageExtensionType` (RFC 6940 section 6.3.3): open 16-bit code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageExtensionType(pub u16);

/// One message extension (RFC 6940 section 6.3.3). A receiver that does not understand a
/// critical extension answers Unknown_Extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageExtension {
    /// The extension type.
    pub ext_type: MessageExtensionType,
    /// Whether a receiver must understand it.
    pub critical: bool,
    /// `opaque extension_contents<0..2^32-1>`.
    pub contents: Vec<u8>,
}

/// Message contents (RFC 6940 section 6.3.3). The body is kept as the bytes that were signed;
/// [`super::Body::decode`] types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContents {
    /// The message code.
    pub code: MessageCode,
    /// `opaque message_body<0..2^32-1>`.
    pub body: Vec<u8>,
    /// `MessageExtension extensions<0..2^32-1>`.
    pub extensions: Vec<MessageExtension>,
}

impl MessageContents {
    /// Contents with a typed body and no extensions.
    pub fn from_body(body: &super::Body) -> Result<Self, WireError> {
        let mut b = Vec::new();
        body.encode(&mut b)?;
        Ok(MessageContents {
            code: body.code(),
            body: b,
            extensions: Vec::new(),
        })
    }

    /// The typed body, with the default kind table ([`super::KindId::default_data_model`]).
    pub fn typed_body(&self) -> Result<super::Body, WireError> {
        super::Body::decode(self.code, &self.body)
    }

    /// A critical extension whose type is not in `known` makes the message unacceptable
    /// (RFC 6940 section 6.3.3): the Unknown_Extension error to answer with.
    pub fn check_extensions(
        &self,
        known: &[MessageExtensionType],
    ) -> Result<(), super::ErrorResponse> {
        match self
            .extensions
            .iter()
            .find(|e| e.critical && !known.contains(&e.ext_type))
        {
            Some(e) => Err(super::ErrorResponse {
                code: ErrorCode::UNKNOWN_EXTENSION,
                info: e.ext_type.0.to_be_bytes().to_vec(),
            }),
            None => Ok(()),
        }
    }

    /// Appends the encoded contents.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_u16(out, self.code.0);
        put_opaque(out, 4, "message_body", &self.body)?;
        put_vec(out, 4, "extensions", |out| {
            for e in &self.extensions {
                put_u16(out, e.ext_type.0);
                out.push(u8::from(e.critical));
                put_opaque(out, 4, "extension_contents", &e.contents)?;
            }
            Ok(())
        })
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let code = MessageCode(r.u16("message_code")?);
        let body = r.opaque(4, "message_body")?.to_vec();
        let extensions = r.list(4, "extensions", |r| {
            Ok(MessageExtension {
                ext_type: MessageExtensionType(r.u16("MessageExtensionType")?),
                critical: r.boolean("extension critical")?,
                contents: r.opaque(4, "extension_contents")?.to_vec(),
            })
        })?;
        Ok(MessageContents {
            code,
            body,
            extensions,
        })
    }
}

/// RELOAD error codes (RFC 6940 section 6.3.3.1, IANA "RELOAD Error Codes"). Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// `invalid(0)`.
    pub const INVALID: Self = Self(0);
    /// The request is not allowed (access control, bad signature...).
    pub const FORBIDDEN: Self = Self(2);
    /// Nothing at that destination / no such data.
    pub const NOT_FOUND: Self = Self(3);
    /// No answer in time.
    pub const REQUEST_TIMEOUT: Self = Self(4);
    /// The store's generation counter is below the stored one.
    pub const GENERATION_COUNTER_TOO_LOW: Self = Self(5);
    /// The peer cannot join / speak this overlay.
    pub const INCOMPATIBLE_WITH_OVERLAY: Self = Self(6);
    /// A critical forwarding option is not understood.
    pub const UNSUPPORTED_FORWARDING_OPTION: Self = Self(7);
    /// A stored value is larger than the kind allows.
    pub const DATA_TOO_LARGE: Self = Self(8);
    /// The value's storage time is older than the stored one.
    pub const DATA_TOO_OLD: Self = Self(9);
    /// The TTL reached 0.
    pub const TTL_EXCEEDED: Self = Self(10);
    /// The message is larger than the peer accepts.
    pub const MESSAGE_TOO_LARGE: Self = Self(11);
    /// A kind the peer does not know.
    pub const UNKNOWN_KIND: Self = Self(12);
    /// A critical message extension is not understood.
    pub const UNKNOWN_EXTENSION: Self = Self(13);
    /// The answer would exceed `max_response_length`.
    pub const RESPONSE_TOO_LARGE: Self = Self(14);
    /// The sender's configuration is older than the receiver's.
    pub const CONFIG_TOO_OLD: Self = Self(15);
    /// The sender's configuration is newer than the receiver's.
    pub const CONFIG_TOO_NEW: Self = Self(16);
    /// The request is being worked on (a retransmission arrived early).
    pub const IN_PROGRESS: Self = Self(17);
    /// Experimental A.
    pub const EXP_A: Self = Self(18);
    /// Experimental B.
    pub const EXP_B: Self = Self(19);
    /// The message could not be parsed or makes no sense.
    pub const INVALID_MESSAGE: Self = Self(20);

    /// The RFC name, if the code is known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            2 => "Error_Forbidden",
            3 => "Error_Not_Found",
            4 => "Error_Request_Timeout",
            5 => "Error_Generation_Counter_Too_Low",
            6 => "Error_Incompatible_with_Overlay",
            7 => "Error_Unsupported_Forwarding_Option",
            8 => "Error_Data_Too_Large",
            9 => "Error_Data_Too_Old",
            10 => "Error_TTL_Exceeded",
            11 => "Error_Message_Too_Large",
            12 => "Error_Unknown_Kind",
            13 => "Error_Unknown_Extension",
            14 => "Error_Response_Too_Large",
            15 => "Error_Config_Too_Old",
            16 => "Error_Config_Too_New",
            17 => "Error_In_Progress",
            18 => "Error_Exp_A",
            19 => "Error_Exp_B",
            20 => "Error_Invalid_Message",
            _ => return None,
        })
    }
}

impl From<&WireError> for ErrorCode {
    /// The error code a peer answers a PDU it could not decode with.
    fn from(e: &WireError) -> Self {
        match e {
            WireError::UnknownKind(_) => ErrorCode::UNKNOWN_KIND,
            WireError::TooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            WireError::UnknownVersion(_) => ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
            _ => ErrorCode::INVALID_MESSAGE,
        }
    }
}

impl std::fmt::Display for MessageCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "message_code({:#06x})", self.0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Error({})", self.0),
        }
    }
}
