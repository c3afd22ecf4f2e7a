//! Errors of the RELOAD wire codec (RFC 6940 section 6.3), split by cause: the peer sent
//! bytes that are not a RELOAD PDU (truncated, bad lengths, bad code points), or the caller
//! asked to encode something the wire cannot carry (a vector longer than its length prefix).

/// Why a RELOAD PDU could not be decoded, or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a field.
    #[error("truncated {what}: need {need} more bytes, {have} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left in the enclosing structure.
        have: usize,
    },
    /// A length prefix says more bytes than its enclosing structure holds.
    #[error("{what}: length {len} exceeds the {have} bytes left")]
    LengthBeyondBuffer {
        /// The vector or structure.
        what: &'static str,
        /// Its declared length.
        len: u64,
        /// Bytes left.
        have: usize,
    },
    /// Bytes are left over after a structure that must fill its space exactly.
    #[error("{what}: {extra} trailing bytes")]
    TrailingBytes {
        /// The structure.
        what: &'static str,
        /// Left-over bytes.
        extra: usize,
    },
    /// The forwarding header's length does not match the PDU (RFC 6940 section 6.3.2).
    #[error("forwarding header length {declared} but the message has {actual} bytes")]
    LengthMismatch {
        /// The `length` field.
        declared: u32,
        /// Bytes actually present.
        actual: usize,
    },
    /// The first four bytes are not the RELOAD token 0xd2454c4f ("\xd2ELO").
    #[error("bad relo token {0:#010x}")]
    BadToken(u32),
    /// A protocol version this codec does not speak (RFC 6940 uses 10, 0x0a).
    #[error("unknown RELOAD version {0:#04x}")]
    UnknownVersion(u8),
    /// The fragment field's high bit (always set, RFC 6940 section 6.3.2) is clear.
    #[error("fragment field {0:#010x} lacks the high bit")]
    BadFragment(u32),
    /// A code point that the structure forbids (invalid(0), an unknown select arm...).
    #[error("{what}: invalid value {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value seen.
        value: u64,
    },
    /// A Boolean octet that is neither 0 nor 1.
    #[error("{what}: Boolean octet {value} is not 0 or 1")]
    BadBoolean {
        /// The field.
        what: &'static str,
        /// The octet.
        value: u8,
    },
    /// A Kind whose data model the decoder does not know (needed to read StoredDataValue,
    /// StoredDataSpecifier and MetaDataValue, RFC 6940 section 7). Answer Unknown_Kind.
    #[error("unknown kind {0:#010x}")]
    UnknownKind(u32),
    /// The message is larger than the caller's limit (Message_Too_Large).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes seen or announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Encoding: a value does not fit its length prefix (caller misuse).
    #[error("cannot encode {what}: length {len} exceeds {max}")]
    TooLong {
        /// The vector.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The largest the prefix allows.
        max: usize,
    },
    /// A body decoded for one message code was asked to be the body of another.
    #[error("body for message code {expected:#06x} cannot be read as {got:#06x}")]
    CodeMismatch {
        /// The body's code.
        expected: u16,
        /// The code asked for.
        got: u16,
    },
}
