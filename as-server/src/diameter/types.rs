//! Open newtypes for Diameter code points and header/AVP flag bytes (RFC 6733 sections 3 and
//! 4.1). Every code point is a `u32` newtype with named constants, so values this crate does not
//! know survive decoding and re-encoding unchanged.

use std::fmt;

macro_rules! open_u32 {
    ($(#[$m:meta])* $name:ident { $($(#[$cm:meta])* $konst:ident = $val:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub u32);

        impl $name {
            $($(#[$cm])* pub const $konst: $name = $name($val);)*

            /// The registered name of this value, if this crate knows it.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $val => Some(stringify!($konst)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({}:{})", stringify!($name), self.0, n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{} ({})", self.0, n),
                    None => write!(f, "{}", self.0),
                }
            }
        }

        impl From<u32> for $name {
            fn from(v: u32) -> Self {
                $name(v)
            }
        }
    };
}

open_u32! {
    /// Command code (24 bits on the wire; RFC 6733 section 3, IANA registry; 3GPP TS 29.329
    /// section 6.1 for Sh).
    CommandCode {
        /// CER/CEA (RFC 6733 section 5.3).
        CAPABILITIES_EXCHANGE = 257,
        /// RAR/RAA (section 8.3).
        RE_AUTH = 258,
        /// ACR/ACA (section 9.7; Rf uses it, TS 32.299).
        ACCOUNTING = 271,
        /// ASR/ASA (section 8.5).
        ABORT_SESSION = 274,
        /// STR/STA (section 8.4).
        SESSION_TERMINATION = 275,
        /// DWR/DWA (section 5.5).
        DEVICE_WATCHDOG = 280,
        /// DPR/DPA (section 5.4).
        DISCONNECT_PEER = 282,
        /// Sh UDR/UDA (TS 29.329 section 6.1.1).
        USER_DATA = 306,
        /// Sh PUR/PUA.
        PROFILE_UPDATE = 307,
        /// Sh SNR/SNA.
        SUBSCRIBE_NOTIFICATIONS = 308,
        /// Sh PNR/PNA (TS 29.329 section 6.1.7).
        PUSH_NOTIFICATION = 309,
    }
}

open_u32! {
    /// Application-Id (RFC 6733 section 2.4).
    ApplicationId {
        /// Diameter common messages (CER, DWR, DPR): 0.
        COMMON = 0,
        /// NASREQ (RFC 7155).
        NASREQ = 1,
        /// Diameter base accounting (RFC 6733 section 9; 3GPP Rf, TS 32.299).
        BASE_ACCOUNTING = 3,
        /// Credit control (RFC 4006; 3GPP Ro).
        CREDIT_CONTROL = 4,
        /// 3GPP Cx.
        TGPP_CX = 16_777_216,
        /// 3GPP Sh (TS 29.329 section 6).
        TGPP_SH = 16_777_217,
        /// Relay (RFC 6733 section 2.4).
        RELAY = 0xffff_ffff,
    }
}

open_u32! {
    /// Vendor-Id / SMI network management private enterprise code. 0 means "IETF" (no vendor,
    /// no V bit).
    VendorId {
        /// IETF AVPs (no Vendor-Id field on the wire).
        IETF = 0,
        /// 3GPP.
        TGPP = 10415,
    }
}

open_u32! {
    /// AVP code (RFC 6733 section 4.1). Named constants for the AVPs this crate knows are in
    /// [`crate::diameter::dict`] (`AvpCode::ORIGIN_HOST`, ...); the full definition (vendor,
    /// type, M-bit rule) is the matching `dict::ORIGIN_HOST`.
    AvpCode {}
}

open_u32! {
    /// Result-Code / Experimental-Result-Code value (RFC 6733 section 7.1). The constants are
    /// the base protocol's; 3GPP Sh experimental codes are in [`crate::diameter::sh::experimental`]
    /// (carried in Experimental-Result with Vendor-Id 10415, not in Result-Code).
    ResultCode {
        /// 1001 (section 7.1.1).
        DIAMETER_MULTI_ROUND_AUTH = 1001,
        /// 2001 (section 7.1.2).
        DIAMETER_SUCCESS = 2001,
        /// 2002.
        DIAMETER_LIMITED_SUCCESS = 2002,
        /// 3001 (section 7.1.3, protocol errors: answer with the E bit).
        DIAMETER_COMMAND_UNSUPPORTED = 3001,
        /// 3002.
        DIAMETER_UNABLE_TO_DELIVER = 3002,
        /// 3003.
        DIAMETER_REALM_NOT_SERVED = 3003,
        /// 3004.
        DIAMETER_TOO_BUSY = 3004,
        /// 3005.
        DIAMETER_LOOP_DETECTED = 3005,
        /// 3006.
        DIAMETER_REDIRECT_INDICATION = 3006,
        /// 3007.
        DIAMETER_APPLICATION_UNSUPPORTED = 3007,
        /// 3008: header bits invalid or inconsistent with the command.
        DIAMETER_INVALID_HDR_BITS = 3008,
        /// 3009: AVP flag bits invalid or inconsistent with the AVP's definition.
        DIAMETER_INVALID_AVP_BITS = 3009,
        /// 3010.
        DIAMETER_UNKNOWN_PEER = 3010,
        /// 4001 (section 7.1.4, transient failures).
        DIAMETER_AUTHENTICATION_REJECTED = 4001,
        /// 4002.
        DIAMETER_OUT_OF_SPACE = 4002,
        /// 4003.
        ELECTION_LOST = 4003,
        /// 5001 (section 7.1.5, permanent failures): unknown AVP with the M bit.
        DIAMETER_AVP_UNSUPPORTED = 5001,
        /// 5002.
        DIAMETER_UNKNOWN_SESSION_ID = 5002,
        /// 5003.
        DIAMETER_AUTHORIZATION_REJECTED = 5003,
        /// 5004.
        DIAMETER_INVALID_AVP_VALUE = 5004,
        /// 5005.
        DIAMETER_MISSING_AVP = 5005,
        /// 5006.
        DIAMETER_RESOURCES_EXCEEDED = 5006,
        /// 5007.
        DIAMETER_CONTRADICTING_AVPS = 5007,
        /// 5008.
        DIAMETER_AVP_NOT_ALLOWED = 5008,
        /// 5009.
        DIAMETER_AVP_OCCURS_TOO_MANY_TIMES = 5009,
        /// 5010.
        DIAMETER_NO_COMMON_APPLICATION = 5010,
        /// 5011.
        DIAMETER_UNSUPPORTED_VERSION = 5011,
        /// 5012.
        DIAMETER_UNABLE_TO_COMPLY = 5012,
        /// 5013.
        DIAMETER_INVALID_BIT_IN_HEADER = 5013,
        /// 5014.
        DIAMETER_INVALID_AVP_LENGTH = 5014,
        /// 5015.
        DIAMETER_INVALID_MESSAGE_LENGTH = 5015,
        /// 5016.
        DIAMETER_INVALID_AVP_BIT_COMBO = 5016,
        /// 5017.
        DIAMETER_NO_COMMON_SECURITY = 5017,
    }
}

impl ResultCode {
    /// 1xxx.
    #[must_use]
    pub fn is_informational(self) -> bool {
        (1000..2000).contains(&self.0)
    }
    /// 2xxx.
    #[must_use]
    pub fn is_success(self) -> bool {
        (2000..3000).contains(&self.0)
    }
    /// 3xxx: a protocol error, answered with the E bit set (RFC 6733 section 7.1.3).
    #[must_use]
    pub fn is_protocol_error(self) -> bool {
        (3000..4000).contains(&self.0)
    }
    /// 4xxx.
    #[must_use]
    pub fn is_transient_failure(self) -> bool {
        (4000..5000).contains(&self.0)
    }
    /// 5xxx.
    #[must_use]
    pub fn is_permanent_failure(self) -> bool {
        (5000..6000).contains(&self.0)
    }
}

macro_rules! flag_byte {
    ($(#[$m:meta])* $name:ident { $($(#[$cm:meta])* $konst:ident = $val:expr, $getter:ident;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u8);

        impl $name {
            $($(#[$cm])* pub const $konst: $name = $name($val);)*
            $(
                #[doc = concat!("Whether the `", stringify!($konst), "` bit is set.")]
                #[must_use]
                pub fn $getter(self) -> bool {
                    self.0 & $val != 0
                }
            )*
            /// No bits.
            pub const EMPTY: $name = $name(0);

            /// Whether all bits of `other` are set.
            #[must_use]
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// With the bits of `other` set (`on`) or cleared.
            #[must_use]
            pub fn with(self, other: $name, on: bool) -> $name {
                if on { $name(self.0 | other.0) } else { $name(self.0 & !other.0) }
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                let mut first = true;
                $(
                    if self.0 & $val != 0 {
                        if !first { f.write_str("|")?; }
                        f.write_str(stringify!($konst))?;
                        first = false;
                    }
                )*
                let rest = self.0 & !(0 $(| $val)*);
                if rest != 0 {
                    if !first { f.write_str("|")?; }
                    write!(f, "{rest:#04x}")?;
                }
                f.write_str(")")
            }
        }
    };
}

flag_byte! {
    /// Command flags (RFC 6733 section 3): `R P E T r r r r`. Reserved bits are kept as
    /// received (section 3: "ignored by the receiver").
    CommandFlags {
        /// R: request (else answer).
        REQUEST = 0x80, is_request;
        /// P: proxiable.
        PROXIABLE = 0x40, is_proxiable;
        /// E: the answer carries a protocol error (section 7.1.3); never on a request.
        ERROR = 0x20, is_error;
        /// T: potentially retransmitted (after a failover, section 5.5.4).
        RETRANSMIT = 0x10, is_retransmit;
    }
}

flag_byte! {
    /// AVP flags (RFC 6733 section 4.1): `V M P r r r r r`. The V bit always matches whether
    /// the AVP has a Vendor-Id; the encoder sets it from [`crate::diameter::Avp::vendor`].
    AvpFlags {
        /// V: the Vendor-Id field is present.
        VENDOR = 0x80, is_vendor;
        /// M: mandatory (section 4.1, 4.2 "M-bit").
        MANDATORY = 0x40, is_mandatory;
        /// P: protected (end-to-end security; no longer used, section 4.1).
        PROTECTED = 0x20, is_protected;
    }
}
