//! The dictionary of AVPs this crate understands: base protocol (RFC 6733 section 4.5),
//! base accounting (section 9.8), the Sh AVPs of 3GPP TS 29.329 / TS 29.229 and the Rf/IMS
//! charging AVPs of 3GPP TS 32.299, with their data type (section 4.2-4.3), Vendor-Id and
//! M-bit rule.
//!
//! The decoder uses [`lookup`] to type an AVP's data (unknown AVPs stay raw bytes and are
//! re-encoded byte for byte); builders use the definitions (`dict::ORIGIN_HOST`, ...) so an
//! AVP gets the right code, Vendor-Id, V and M bits; [`crate::diameter::Message::check_avps`]
//! uses [`AvpDef::apps`] to answer DIAMETER_AVP_UNSUPPORTED (5001) for a mandatory AVP the
//! message's application does not define.

use super::types::{ApplicationId, AvpCode, VendorId};

/// Data format of an AVP (RFC 6733 sections 4.2 basic and 4.3 derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvpType {
    /// Arbitrary bytes (4.2).
    OctetString,
    /// 32-bit signed, network order (4.2).
    Integer32,
    /// 64-bit signed.
    Integer64,
    /// 32-bit unsigned.
    Unsigned32,
    /// 64-bit unsigned.
    Unsigned64,
    /// IEEE 754 single.
    Float32,
    /// IEEE 754 double.
    Float64,
    /// A sequence of AVPs (4.4).
    Grouped,
    /// Address family (IANA address family numbers) + address (4.3.1).
    Address,
    /// NTP seconds since 1900 (4.3.1).
    Time,
    /// UTF-8 text (4.3.1).
    Utf8String,
    /// FQDN or realm, ASCII (4.3.1).
    DiameterIdentity,
    /// `aaa://` / `aaas://` URI (4.3.1).
    DiameterUri,
    /// Integer32 with named values (4.3.1).
    Enumerated,
    /// IP filter rule text (4.3.1).
    IpFilterRule,
}

/// The M-bit rule of an AVP definition (RFC 6733 section 4.5 "AVP Flag rules").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MRule {
    /// MUST be set; builders set it.
    Must,
    /// MAY be set; builders set it (TS 32.299 lists most charging AVPs as "M: may"; the
    /// Wireshark and freeDiameter dictionaries have them as "must").
    May,
    /// MUST NOT be set: a received AVP with M set is DIAMETER_INVALID_AVP_BITS (3009).
    MustNot,
}

/// The applications that define an AVP (a bit set). Base protocol AVPs are allowed in every
/// application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Apps(pub u8);

impl Apps {
    /// Defined by the base protocol: allowed in every message.
    pub const BASE: Apps = Apps(1);
    /// Base accounting / Rf (application 3).
    pub const ACCT: Apps = Apps(2);
    /// 3GPP Sh (and the Cx AVPs Sh reuses).
    pub const SH: Apps = Apps(4);
    /// Base accounting and Sh.
    pub const ACCT_SH: Apps = Apps(6);

    /// Whether a message of application `app` may carry an AVP with these apps.
    #[must_use]
    pub fn allows(self, app: ApplicationId) -> bool {
        if self.0 & Apps::BASE.0 != 0 {
            return true;
        }
        match app {
            ApplicationId::BASE_ACCOUNTING => self.0 & Apps::ACCT.0 != 0,
            ApplicationId::TGPP_SH => self.0 & Apps::SH.0 != 0,
            // The relay application carries everything.
            ApplicationId::RELAY => true,
            _ => false,
        }
    }
}

/// One dictionary entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvpDef {
    /// Registered name.
    pub name: &'static str,
    /// AVP code.
    pub code: AvpCode,
    /// Vendor-Id ([`VendorId::IETF`] = no V bit).
    pub vendor: VendorId,
    /// Data format.
    pub ty: AvpType,
    /// M-bit rule.
    pub m: MRule,
    /// Applications that define it.
    pub apps: Apps,
}

macro_rules! dictionary {
    ($($(#[$cm:meta])* $konst:ident = $code:literal, $vendor:literal, $name:literal, $ty:ident, $m:ident, $apps:ident;)*) => {
        impl AvpCode {
            $($(#[$cm])* pub const $konst: AvpCode = AvpCode($code);)*
        }

        $(
            $(#[$cm])*
            pub const $konst: AvpDef = AvpDef {
                name: $name,
                code: AvpCode($code),
                vendor: VendorId($vendor),
                ty: AvpType::$ty,
                m: MRule::$m,
                apps: Apps::$apps,
            };
        )*

        /// The definition of AVP `code` from `vendor` ([`VendorId::IETF`] for none).
        #[must_use]
        pub fn lookup(code: AvpCode, vendor: VendorId) -> Option<&'static AvpDef> {
            match (vendor.0, code.0) {
                $(($vendor, $code) => Some(&$konst),)*
                _ => None,
            }
        }

        /// Every definition (for tests and tools).
        pub const ALL: &[AvpDef] = &[$($konst,)*];
    };
}

dictionary! {
    // ---- RFC 6733 section 4.5 (base protocol) ----
    /// User-Name (1), UTF8String.
    USER_NAME = 1, 0, "User-Name", Utf8String, Must, BASE;
    /// Class (25), OctetString.
    CLASS = 25, 0, "Class", OctetString, Must, BASE;
    /// Session-Timeout (27), Unsigned32.
    SESSION_TIMEOUT = 27, 0, "Session-Timeout", Unsigned32, Must, BASE;
    /// Proxy-State (33), OctetString.
    PROXY_STATE = 33, 0, "Proxy-State", OctetString, Must, BASE;
    /// Acct-Session-Id (44), OctetString.
    ACCT_SESSION_ID = 44, 0, "Acct-Session-Id", OctetString, Must, BASE;
    /// Acct-Multi-Session-Id (50), UTF8String.
    ACCT_MULTI_SESSION_ID = 50, 0, "Acct-Multi-Session-Id", Utf8String, Must, BASE;
    /// Event-Timestamp (55), Time.
    EVENT_TIMESTAMP = 55, 0, "Event-Timestamp", Time, Must, BASE;
    /// Acct-Interim-Interval (85), Unsigned32.
    ACCT_INTERIM_INTERVAL = 85, 0, "Acct-Interim-Interval", Unsigned32, Must, BASE;
    /// Host-IP-Address (257), Address.
    HOST_IP_ADDRESS = 257, 0, "Host-IP-Address", Address, Must, BASE;
    /// Auth-Application-Id (258), Unsigned32.
    AUTH_APPLICATION_ID = 258, 0, "Auth-Application-Id", Unsigned32, Must, BASE;
    /// Acct-Application-Id (259), Unsigned32.
    ACCT_APPLICATION_ID = 259, 0, "Acct-Application-Id", Unsigned32, Must, BASE;
    /// Vendor-Specific-Application-Id (260), Grouped.
    VENDOR_SPECIFIC_APPLICATION_ID = 260, 0, "Vendor-Specific-Application-Id", Grouped, Must, BASE;
    /// Redirect-Host-Usage (261), Enumerated.
    REDIRECT_HOST_USAGE = 261, 0, "Redirect-Host-Usage", Enumerated, Must, BASE;
    /// Redirect-Max-Cache-Time (262), Unsigned32.
    REDIRECT_MAX_CACHE_TIME = 262, 0, "Redirect-Max-Cache-Time", Unsigned32, Must, BASE;
    /// Session-Id (263), UTF8String.
    SESSION_ID = 263, 0, "Session-Id", Utf8String, Must, BASE;
    /// Origin-Host (264), DiameterIdentity.
    ORIGIN_HOST = 264, 0, "Origin-Host", DiameterIdentity, Must, BASE;
    /// Supported-Vendor-Id (265), Unsigned32.
    SUPPORTED_VENDOR_ID = 265, 0, "Supported-Vendor-Id", Unsigned32, Must, BASE;
    /// Vendor-Id (266), Unsigned32.
    VENDOR_ID = 266, 0, "Vendor-Id", Unsigned32, Must, BASE;
    /// Firmware-Revision (267), Unsigned32, M must not.
    FIRMWARE_REVISION = 267, 0, "Firmware-Revision", Unsigned32, MustNot, BASE;
    /// Result-Code (268), Unsigned32.
    RESULT_CODE = 268, 0, "Result-Code", Unsigned32, Must, BASE;
    /// Product-Name (269), UTF8String, M must not.
    PRODUCT_NAME = 269, 0, "Product-Name", Utf8String, MustNot, BASE;
    /// Session-Binding (270), Unsigned32.
    SESSION_BINDING = 270, 0, "Session-Binding", Unsigned32, Must, BASE;
    /// Session-Server-Failover (271), Enumerated.
    SESSION_SERVER_FAILOVER = 271, 0, "Session-Server-Failover", Enumerated, Must, BASE;
    /// Multi-Round-Time-Out (272), Unsigned32.
    MULTI_ROUND_TIME_OUT = 272, 0, "Multi-Round-Time-Out", Unsigned32, Must, BASE;
    /// Disconnect-Cause (273), Enumerated.
    DISCONNECT_CAUSE = 273, 0, "Disconnect-Cause", Enumerated, Must, BASE;
    /// Auth-Request-Type (274), Enumerated.
    AUTH_REQUEST_TYPE = 274, 0, "Auth-Request-Type", Enumerated, Must, BASE;
    /// Auth-Grace-Period (276), Unsigned32.
    AUTH_GRACE_PERIOD = 276, 0, "Auth-Grace-Period", Unsigned32, Must, BASE;
    /// Auth-Session-State (277), Enumerated.
    AUTH_SESSION_STATE = 277, 0, "Auth-Session-State", Enumerated, Must, BASE;
    /// Origin-State-Id (278), Unsigned32.
    ORIGIN_STATE_ID = 278, 0, "Origin-State-Id", Unsigned32, Must, BASE;
    /// Failed-AVP (279), Grouped.
    FAILED_AVP = 279, 0, "Failed-AVP", Grouped, Must, BASE;
    /// Proxy-Host (280), DiameterIdentity.
    PROXY_HOST = 280, 0, "Proxy-Host", DiameterIdentity, Must, BASE;
    /// Error-Message (281), UTF8String, M must not.
    ERROR_MESSAGE = 281, 0, "Error-Message", Utf8String, MustNot, BASE;
    /// Route-Record (282), DiameterIdentity.
    ROUTE_RECORD = 282, 0, "Route-Record", DiameterIdentity, Must, BASE;
    /// Destination-Realm (283), DiameterIdentity.
    DESTINATION_REALM = 283, 0, "Destination-Realm", DiameterIdentity, Must, BASE;
    /// Proxy-Info (284), Grouped.
    PROXY_INFO = 284, 0, "Proxy-Info", Grouped, Must, BASE;
    /// Re-Auth-Request-Type (285), Enumerated.
    RE_AUTH_REQUEST_TYPE = 285, 0, "Re-Auth-Request-Type", Enumerated, Must, BASE;
    /// Accounting-Sub-Session-Id (287), Unsigned64.
    ACCOUNTING_SUB_SESSION_ID = 287, 0, "Accounting-Sub-Session-Id", Unsigned64, Must, BASE;
    /// Authorization-Lifetime (291), Unsigned32.
    AUTHORIZATION_LIFETIME = 291, 0, "Authorization-Lifetime", Unsigned32, Must, BASE;
    /// Redirect-Host (292), DiameterURI.
    REDIRECT_HOST = 292, 0, "Redirect-Host", DiameterUri, Must, BASE;
    /// Destination-Host (293), DiameterIdentity.
    DESTINATION_HOST = 293, 0, "Destination-Host", DiameterIdentity, Must, BASE;
    /// Error-Reporting-Host (294), DiameterIdentity, M must not.
    ERROR_REPORTING_HOST = 294, 0, "Error-Reporting-Host", DiameterIdentity, MustNot, BASE;
    /// Termination-Cause (295), Enumerated.
    TERMINATION_CAUSE = 295, 0, "Termination-Cause", Enumerated, Must, BASE;
    /// Origin-Realm (296), DiameterIdentity.
    ORIGIN_REALM = 296, 0, "Origin-Realm", DiameterIdentity, Must, BASE;
    /// Experimental-Result (297), Grouped.
    EXPERIMENTAL_RESULT = 297, 0, "Experimental-Result", Grouped, Must, BASE;
    /// Experimental-Result-Code (298), Unsigned32.
    EXPERIMENTAL_RESULT_CODE = 298, 0, "Experimental-Result-Code", Unsigned32, Must, BASE;
    /// Inband-Security-Id (299), Unsigned32.
    INBAND_SECURITY_ID = 299, 0, "Inband-Security-Id", Unsigned32, Must, BASE;
    /// NAS-Filter-Rule (400, RFC 7155), IPFilterRule: this crate's example of the type.
    NAS_FILTER_RULE = 400, 0, "NAS-Filter-Rule", IpFilterRule, Must, BASE;
    /// Accounting-Record-Type (480), Enumerated.
    ACCOUNTING_RECORD_TYPE = 480, 0, "Accounting-Record-Type", Enumerated, Must, BASE;
    /// Accounting-Realtime-Required (483), Enumerated.
    ACCOUNTING_REALTIME_REQUIRED = 483, 0, "Accounting-Realtime-Required", Enumerated, Must, BASE;
    /// Accounting-Record-Number (485), Unsigned32.
    ACCOUNTING_RECORD_NUMBER = 485, 0, "Accounting-Record-Number", Unsigned32, Must, BASE;

    // ---- RFC 4006 AVPs that TS 32.299 uses in Rf ----
    /// Service-Context-Id (461, RFC 4006), UTF8String.
    SERVICE_CONTEXT_ID = 461, 0, "Service-Context-Id", Utf8String, Must, ACCT;

    // ---- 3GPP TS 29.229 (Cx AVPs reused by Sh) ----
    /// Public-Identity (601), UTF8String.
    PUBLIC_IDENTITY = 601, 10415, "Public-Identity", Utf8String, Must, SH;
    /// Server-Name (602), UTF8String.
    SERVER_NAME = 602, 10415, "Server-Name", Utf8String, Must, SH;
    /// Supported-Features (628), Grouped (M must not in TS 29.229).
    SUPPORTED_FEATURES = 628, 10415, "Supported-Features", Grouped, MustNot, SH;
    /// Feature-List-ID (629), Unsigned32.
    FEATURE_LIST_ID = 629, 10415, "Feature-List-ID", Unsigned32, MustNot, SH;
    /// Feature-List (630), Unsigned32.
    FEATURE_LIST = 630, 10415, "Feature-List", Unsigned32, MustNot, SH;
    /// Wildcarded-Public-Identity (634), UTF8String.
    WILDCARDED_PUBLIC_IDENTITY = 634, 10415, "Wildcarded-Public-Identity", Utf8String, MustNot, SH;

    // ---- 3GPP TS 29.329 section 6.3 (Sh) ----
    /// User-Identity (700), Grouped.
    USER_IDENTITY = 700, 10415, "User-Identity", Grouped, Must, SH;
    /// MSISDN (701), OctetString.
    MSISDN = 701, 10415, "MSISDN", OctetString, Must, SH;
    /// User-Data (702), OctetString (the Sh-Data XML document).
    USER_DATA = 702, 10415, "User-Data", OctetString, Must, SH;
    /// Data-Reference (703), Enumerated.
    DATA_REFERENCE = 703, 10415, "Data-Reference", Enumerated, Must, SH;
    /// Service-Indication (704), OctetString.
    SERVICE_INDICATION = 704, 10415, "Service-Indication", OctetString, Must, SH;
    /// Subs-Req-Type (705), Enumerated.
    SUBS_REQ_TYPE = 705, 10415, "Subs-Req-Type", Enumerated, Must, SH;
    /// Requested-Domain (706), Enumerated.
    REQUESTED_DOMAIN = 706, 10415, "Requested-Domain", Enumerated, Must, SH;
    /// Current-Location (707), Enumerated.
    CURRENT_LOCATION = 707, 10415, "Current-Location", Enumerated, Must, SH;
    /// Identity-Set (708), Enumerated.
    IDENTITY_SET = 708, 10415, "Identity-Set", Enumerated, Must, SH;
    /// Expiry-Time (709), Time.
    EXPIRY_TIME = 709, 10415, "Expiry-Time", Time, Must, SH;
    /// Send-Data-Indication (710), Enumerated.
    SEND_DATA_INDICATION = 710, 10415, "Send-Data-Indication", Enumerated, Must, SH;
    /// DSAI-Tag (711), OctetString.
    DSAI_TAG = 711, 10415, "DSAI-Tag", OctetString, Must, SH;
    /// Repository-Data-ID (715), Grouped.
    REPOSITORY_DATA_ID = 715, 10415, "Repository-Data-ID", Grouped, Must, SH;
    /// Sequence-Number (716), Unsigned32.
    SEQUENCE_NUMBER = 716, 10415, "Sequence-Number", Unsigned32, Must, SH;

    // ---- 3GPP TS 32.299 section 7.2 (Rf, IMS charging) ----
    /// Event-Type (823), Grouped.
    EVENT_TYPE = 823, 10415, "Event-Type", Grouped, May, ACCT;
    /// SIP-Method (824), UTF8String.
    SIP_METHOD = 824, 10415, "SIP-Method", Utf8String, May, ACCT;
    /// Event (825), UTF8String.
    EVENT = 825, 10415, "Event", Utf8String, May, ACCT;
    /// Role-Of-Node (829), Enumerated.
    ROLE_OF_NODE = 829, 10415, "Role-Of-Node", Enumerated, May, ACCT;
    /// User-Session-Id (830), UTF8String.
    USER_SESSION_ID = 830, 10415, "User-Session-Id", Utf8String, May, ACCT;
    /// Calling-Party-Address (831), UTF8String.
    CALLING_PARTY_ADDRESS = 831, 10415, "Calling-Party-Address", Utf8String, May, ACCT;
    /// Called-Party-Address (832), UTF8String.
    CALLED_PARTY_ADDRESS = 832, 10415, "Called-Party-Address", Utf8String, May, ACCT;
    /// Time-Stamps (833), Grouped.
    TIME_STAMPS = 833, 10415, "Time-Stamps", Grouped, May, ACCT;
    /// SIP-Request-Timestamp (834), Time.
    SIP_REQUEST_TIMESTAMP = 834, 10415, "SIP-Request-Timestamp", Time, May, ACCT;
    /// SIP-Response-Timestamp (835), Time.
    SIP_RESPONSE_TIMESTAMP = 835, 10415, "SIP-Response-Timestamp", Time, May, ACCT;
    /// Application-Server (836), UTF8String.
    APPLICATION_SERVER = 836, 10415, "Application-Server", Utf8String, May, ACCT;
    /// Application-Server-Information (850), Grouped.
    APPLICATION_SERVER_INFORMATION = 850, 10415, "Application-Server-Information", Grouped, May, ACCT;
    /// IMS-Charging-Identifier (841), UTF8String.
    IMS_CHARGING_IDENTIFIER = 841, 10415, "IMS-Charging-Identifier", Utf8String, May, ACCT;
    /// Cause-Code (861), Integer32.
    CAUSE_CODE = 861, 10415, "Cause-Code", Integer32, May, ACCT;
    /// Node-Functionality (862), Enumerated.
    NODE_FUNCTIONALITY = 862, 10415, "Node-Functionality", Enumerated, May, ACCT;
    /// Service-Specific-Data (863), UTF8String.
    SERVICE_SPECIFIC_DATA = 863, 10415, "Service-Specific-Data", Utf8String, May, ACCT;
    /// Service-Information (873), Grouped.
    SERVICE_INFORMATION = 873, 10415, "Service-Information", Grouped, May, ACCT;
    /// IMS-Information (876), Grouped.
    IMS_INFORMATION = 876, 10415, "IMS-Information", Grouped, May, ACCT;
    /// Service-Specific-Info (1249), Grouped.
    SERVICE_SPECIFIC_INFO = 1249, 10415, "Service-Specific-Info", Grouped, May, ACCT;
    /// Requested-Party-Address (1251), UTF8String.
    REQUESTED_PARTY_ADDRESS = 1251, 10415, "Requested-Party-Address", Utf8String, May, ACCT;
    /// Service-Specific-Type (1257), Unsigned32.
    SERVICE_SPECIFIC_TYPE = 1257, 10415, "Service-Specific-Type", Unsigned32, May, ACCT;
}
