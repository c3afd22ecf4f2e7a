//! Typed 3GPP Sh (TS 29.328 / TS 29.329, application 16777217, vendor 10415): UDR/UDA to read
//! a subscriber's repository data, PNR/PNA for the HSS to push a changed profile, the Sh
//! experimental result codes, and the IPTV profile the AS keeps in the subscriber's
//! repository data (Data-Reference RepositoryData, Service-Indication `IPTV`).
//!
//! # The IPTV profile in User-Data
//!
//! User-Data carries an Sh-Data XML document (TS 29.328 annex D, `ShData.xsd`); the
//! repository data's `ServiceData` is application-defined. Ours:
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <Sh-Data>
//!   <RepositoryData>
//!     <ServiceIndication>IPTV</ServiceIndication>
//!     <SequenceNumber>3</SequenceNumber>
//!     <ServiceData>
//!       <IptvProfile xmlns="urn:iptv-as:profile:1">
//!         <Package>basic</Package>       <!-- zero or more channel packages -->
//!         <Package>sports</Package>
//!         <MaxStreams>2</MaxStreams>     <!-- concurrent viewing sessions -->
//!         <ParentalLevel>12</ParentalLevel> <!-- 0 (none) .. 18 -->
//!       </IptvProfile>
//!     </ServiceData>
//!   </RepositoryData>
//! </Sh-Data>
//! ```
//!
//! [`IptvProfile::to_user_data`] writes it (compact, no whitespace) and
//! [`IptvProfile::from_user_data`] reads it with a small strict XML reader (well-formedness,
//! the five predefined entities and character references, comments, CDATA; no DTD), bounded
//! in size, depth and element count. Unknown elements inside `IptvProfile` are ignored so the
//! profile can grow.

use bytes::Bytes;

use super::avp::{Avp, AvpList};
use super::base::{expect, opt_str, req_str, Outcome, VendorSpecificApplicationId};
use super::dict;
use super::error::{DecodeError, DecodeErrorKind};
use super::message::Message;
use super::types::{ApplicationId, CommandCode, ResultCode};

/// Experimental-Result-Code values used on Sh (TS 29.329 section 6.2, TS 29.229 section
/// 6.2), sent with Vendor-Id 10415 in Experimental-Result.
pub mod experimental {
    use super::ResultCode;

    /// 4100: the requested data is not available now.
    pub const DIAMETER_USER_DATA_NOT_AVAILABLE: ResultCode = ResultCode(4100);
    /// 4101.
    pub const DIAMETER_PRIOR_UPDATE_IN_PROGRESS: ResultCode = ResultCode(4101);
    /// 5001: the user is not known to the HSS.
    pub const DIAMETER_ERROR_USER_UNKNOWN: ResultCode = ResultCode(5001);
    /// 5002.
    pub const DIAMETER_ERROR_IDENTITIES_DONT_MATCH: ResultCode = ResultCode(5002);
    /// 5008.
    pub const DIAMETER_ERROR_TOO_MUCH_DATA: ResultCode = ResultCode(5008);
    /// 5011.
    pub const DIAMETER_ERROR_FEATURE_UNSUPPORTED: ResultCode = ResultCode(5011);
    /// 5100.
    pub const DIAMETER_ERROR_USER_DATA_NOT_RECOGNIZED: ResultCode = ResultCode(5100);
    /// 5101.
    pub const DIAMETER_ERROR_OPERATION_NOT_ALLOWED: ResultCode = ResultCode(5101);
    /// 5102.
    pub const DIAMETER_ERROR_USER_DATA_CANNOT_BE_READ: ResultCode = ResultCode(5102);
    /// 5103.
    pub const DIAMETER_ERROR_USER_DATA_CANNOT_BE_MODIFIED: ResultCode = ResultCode(5103);
    /// 5104.
    pub const DIAMETER_ERROR_USER_DATA_CANNOT_BE_NOTIFIED: ResultCode = ResultCode(5104);
    /// 5105.
    pub const DIAMETER_ERROR_TRANSPARENT_DATA_OUT_OF_SYNC: ResultCode = ResultCode(5105);
    /// 5106.
    pub const DIAMETER_ERROR_SUBS_DATA_ABSENT: ResultCode = ResultCode(5106);
    /// 5107.
    pub const DIAMETER_ERROR_NO_SUBSCRIPTION_TO_DATA: ResultCode = ResultCode(5107);
    /// 5108.
    pub const DIAMETER_ERROR_DSAI_NOT_AVAILABLE: ResultCode = ResultCode(5108);
}

/// The Service-Indication under which the IPTV profile is stored.
pub const IPTV_SERVICE_INDICATION: &[u8] = b"IPTV";

/// Auth-Session-State NO_STATE_MAINTAINED (RFC 6733 section 8.11), what Sh uses.
pub const NO_STATE_MAINTAINED: i32 = 1;

/// Data-Reference (TS 29.329 section 6.3.4), an open enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataReference(pub i32);

impl DataReference {
    /// RepositoryData (transparent data, needs Service-Indication).
    pub const REPOSITORY_DATA: DataReference = DataReference(0);
    /// IMSPublicIdentity.
    pub const IMS_PUBLIC_IDENTITY: DataReference = DataReference(10);
    /// IMSUserState.
    pub const IMS_USER_STATE: DataReference = DataReference(11);
    /// S-CSCFName.
    pub const S_CSCF_NAME: DataReference = DataReference(12);
    /// InitialFilterCriteria.
    pub const INITIAL_FILTER_CRITERIA: DataReference = DataReference(13);
    /// LocationInformation.
    pub const LOCATION_INFORMATION: DataReference = DataReference(14);
    /// UserState.
    pub const USER_STATE: DataReference = DataReference(15);
    /// ChargingInformation.
    pub const CHARGING_INFORMATION: DataReference = DataReference(16);
    /// MSISDN.
    pub const MSISDN: DataReference = DataReference(17);
}

/// User-Identity (TS 29.329 section 6.3.1): a public identity or an MSISDN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserIdentity {
    /// Public-Identity (a SIP or tel URI).
    pub public_identity: Option<String>,
    /// MSISDN (TBCD octets).
    pub msisdn: Option<Bytes>,
}

impl UserIdentity {
    /// A public identity.
    #[must_use]
    pub fn public(uri: impl Into<String>) -> Self {
        Self {
            public_identity: Some(uri.into()),
            msisdn: None,
        }
    }

    fn to_avp(&self) -> Avp {
        let mut g = Vec::with_capacity(1);
        if let Some(p) = &self.public_identity {
            g.push(Avp::utf8(&dict::PUBLIC_IDENTITY, &**p));
        }
        if let Some(m) = &self.msisdn {
            g.push(Avp::octets(&dict::MSISDN, m.clone()));
        }
        Avp::grouped(&dict::USER_IDENTITY, g)
    }

    fn parse(l: &(impl AvpList + ?Sized)) -> Result<Self, DecodeError> {
        let a = l.one(&dict::USER_IDENTITY)?;
        let g = a.as_grouped()?;
        let u = UserIdentity {
            public_identity: opt_str(g, &dict::PUBLIC_IDENTITY)?,
            msisdn: g
                .opt(&dict::MSISDN)?
                .map(|m| m.as_bytes().cloned())
                .transpose()?,
        };
        if u.public_identity.is_none() && u.msisdn.is_none() {
            return Err(DecodeError::missing(&dict::PUBLIC_IDENTITY));
        }
        Ok(u)
    }
}

fn sh_request(code: CommandCode) -> Message {
    Message::request(code, ApplicationId::TGPP_SH, true)
}

fn sh_answer(code: CommandCode) -> Message {
    let mut m = Message::request(code, ApplicationId::TGPP_SH, true);
    m.flags = super::types::CommandFlags::PROXIABLE;
    m
}

fn push_head(m: &mut Message, session_id: &str) {
    m.avps.push(Avp::utf8(&dict::SESSION_ID, session_id));
    m.avps.push(VendorSpecificApplicationId::SH.to_avp());
}

fn check_head(m: &Message) -> Result<String, DecodeError> {
    let sid = req_str(m, &dict::SESSION_ID)?;
    let vsai = VendorSpecificApplicationId::parse(m.one(&dict::VENDOR_SPECIFIC_APPLICATION_ID)?)?;
    if vsai.auth_application_id != Some(ApplicationId::TGPP_SH) {
        return Err(DecodeError::with_avp(
            DecodeErrorKind::InvalidAvpValue,
            vsai.to_avp(),
        ));
    }
    m.one(&dict::AUTH_SESSION_STATE)?.as_i32()?;
    Ok(sid)
}

fn answer_ids(mut m: Message, req: &Message) -> Message {
    m.hop_by_hop = req.hop_by_hop;
    m.end_to_end = req.end_to_end;
    m
}

/// User-Data-Request (TS 29.329 section 6.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Udr {
    /// Session-Id.
    pub session_id: String,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Host.
    pub destination_host: Option<String>,
    /// Destination-Realm.
    pub destination_realm: String,
    /// User-Identity.
    pub user_identity: UserIdentity,
    /// Service-Indication (for RepositoryData).
    pub service_indications: Vec<Bytes>,
    /// Data-Reference, one or more.
    pub data_references: Vec<DataReference>,
}

impl Udr {
    /// A request for the subscriber's IPTV repository data.
    #[must_use]
    pub fn iptv_profile(
        session_id: impl Into<String>,
        origin_host: impl Into<String>,
        origin_realm: impl Into<String>,
        destination_realm: impl Into<String>,
        public_identity: impl Into<String>,
    ) -> Udr {
        Udr {
            session_id: session_id.into(),
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            destination_host: None,
            destination_realm: destination_realm.into(),
            user_identity: UserIdentity::public(public_identity),
            service_indications: vec![Bytes::from_static(IPTV_SERVICE_INDICATION)],
            data_references: vec![DataReference::REPOSITORY_DATA],
        }
    }

    /// The request (R and P bits, identifiers 0), AVPs in the ABNF's order.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = sh_request(CommandCode::USER_DATA);
        push_head(&mut m, &self.session_id);
        m.avps.push(Avp::enumerated(
            &dict::AUTH_SESSION_STATE,
            NO_STATE_MAINTAINED,
        ));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        if let Some(h) = &self.destination_host {
            m.avps.push(Avp::identity(&dict::DESTINATION_HOST, &**h));
        }
        m.avps.push(Avp::identity(
            &dict::DESTINATION_REALM,
            &*self.destination_realm,
        ));
        m.avps.push(self.user_identity.to_avp());
        for s in &self.service_indications {
            m.avps
                .push(Avp::octets(&dict::SERVICE_INDICATION, s.clone()));
        }
        for d in &self.data_references {
            m.avps.push(Avp::enumerated(&dict::DATA_REFERENCE, d.0));
        }
        m
    }

    /// Read a UDR.
    pub fn from_message(m: &Message) -> Result<Udr, DecodeError> {
        expect(m, CommandCode::USER_DATA, true)?;
        let parse = || {
            let session_id = check_head(m)?;
            let data_references = m
                .all(&dict::DATA_REFERENCE)
                .map(|a| a.as_i32().map(DataReference))
                .collect::<Result<Vec<_>, _>>()?;
            if data_references.is_empty() {
                return Err(DecodeError::missing(&dict::DATA_REFERENCE));
            }
            Ok(Udr {
                session_id,
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                destination_host: opt_str(m, &dict::DESTINATION_HOST)?,
                destination_realm: req_str(m, &dict::DESTINATION_REALM)?,
                user_identity: UserIdentity::parse(m)?,
                service_indications: m
                    .all(&dict::SERVICE_INDICATION)
                    .map(|a| a.as_bytes().cloned())
                    .collect::<Result<_, _>>()?,
                data_references,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// User-Data-Answer (TS 29.329 section 6.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uda {
    /// Session-Id.
    pub session_id: String,
    /// Result-Code or Experimental-Result.
    pub outcome: Outcome,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// User-Data (Sh-Data XML).
    pub user_data: Option<Bytes>,
}

impl Uda {
    /// The answer with identifiers 0.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = sh_answer(CommandCode::USER_DATA);
        push_head(&mut m, &self.session_id);
        m.avps.push(self.outcome.to_avp());
        m.avps.push(Avp::enumerated(
            &dict::AUTH_SESSION_STATE,
            NO_STATE_MAINTAINED,
        ));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        if let Some(d) = &self.user_data {
            m.avps.push(Avp::octets(&dict::USER_DATA, d.clone()));
        }
        m
    }

    /// The answer to `udr` (its identifiers).
    #[must_use]
    pub fn answer(&self, udr: &Message) -> Message {
        answer_ids(self.to_message(), udr)
    }

    /// Read a UDA.
    pub fn from_message(m: &Message) -> Result<Uda, DecodeError> {
        expect(m, CommandCode::USER_DATA, false)?;
        let parse = || {
            Ok(Uda {
                session_id: check_head(m)?,
                outcome: Outcome::parse(m)?,
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                user_data: m
                    .opt(&dict::USER_DATA)?
                    .map(|a| a.as_bytes().cloned())
                    .transpose()?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Push-Notification-Request (TS 29.329 section 6.1.7): the HSS tells the AS that
/// subscribed data changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pnr {
    /// Session-Id.
    pub session_id: String,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Host.
    pub destination_host: String,
    /// Destination-Realm.
    pub destination_realm: String,
    /// User-Identity.
    pub user_identity: UserIdentity,
    /// User-Data (the changed Sh-Data).
    pub user_data: Bytes,
}

impl Pnr {
    /// The request (R and P bits, identifiers 0).
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = sh_request(CommandCode::PUSH_NOTIFICATION);
        push_head(&mut m, &self.session_id);
        m.avps.push(Avp::enumerated(
            &dict::AUTH_SESSION_STATE,
            NO_STATE_MAINTAINED,
        ));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        m.avps.push(Avp::identity(
            &dict::DESTINATION_HOST,
            &*self.destination_host,
        ));
        m.avps.push(Avp::identity(
            &dict::DESTINATION_REALM,
            &*self.destination_realm,
        ));
        m.avps.push(self.user_identity.to_avp());
        m.avps
            .push(Avp::octets(&dict::USER_DATA, self.user_data.clone()));
        m
    }

    /// Read a PNR.
    pub fn from_message(m: &Message) -> Result<Pnr, DecodeError> {
        expect(m, CommandCode::PUSH_NOTIFICATION, true)?;
        let parse = || {
            Ok(Pnr {
                session_id: check_head(m)?,
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                destination_host: req_str(m, &dict::DESTINATION_HOST)?,
                destination_realm: req_str(m, &dict::DESTINATION_REALM)?,
                user_identity: UserIdentity::parse(m)?,
                user_data: m.one(&dict::USER_DATA)?.as_bytes()?.clone(),
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Push-Notification-Answer (TS 29.329 section 6.1.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pna {
    /// Session-Id.
    pub session_id: String,
    /// Result-Code or Experimental-Result.
    pub outcome: Outcome,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
}

impl Pna {
    /// The answer with identifiers 0.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = sh_answer(CommandCode::PUSH_NOTIFICATION);
        push_head(&mut m, &self.session_id);
        m.avps.push(self.outcome.to_avp());
        m.avps.push(Avp::enumerated(
            &dict::AUTH_SESSION_STATE,
            NO_STATE_MAINTAINED,
        ));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        m
    }

    /// The answer to `pnr` (its identifiers).
    #[must_use]
    pub fn answer(&self, pnr: &Message) -> Message {
        answer_ids(self.to_message(), pnr)
    }

    /// Read a PNA.
    pub fn from_message(m: &Message) -> Result<Pna, DecodeError> {
        expect(m, CommandCode::PUSH_NOTIFICATION, false)?;
        let parse = || {
            Ok(Pna {
                session_id: check_head(m)?,
                outcome: Outcome::parse(m)?,
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

// ---------------------------------------------------------------------------------------
// The IPTV profile (User-Data XML)
// ---------------------------------------------------------------------------------------

/// Largest User-Data document [`IptvProfile::from_user_data`] reads.
pub const MAX_USER_DATA: usize = 64 * 1024;
const MAX_XML_DEPTH: usize = 16;
const MAX_XML_ELEMENTS: usize = 1024;
/// The namespace of our `IptvProfile` element.
pub const IPTV_PROFILE_NS: &str = "urn:iptv-as:profile:1";

/// Why User-Data could not be read as an IPTV profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Larger than [`MAX_USER_DATA`].
    #[error("user data too large")]
    TooLarge,
    /// Not UTF-8.
    #[error("user data is not UTF-8")]
    NotUtf8,
    /// Not well-formed XML (what was wrong, byte offset).
    #[error("malformed XML at byte {1}: {0}")]
    Malformed(&'static str, usize),
    /// Deeper or larger than the reader allows.
    #[error("XML nested too deep or too many elements")]
    TooComplex,
    /// No `RepositoryData` with Service-Indication `IPTV`, or no `IptvProfile` in it.
    #[error("no IPTV repository data")]
    NoIptvData,
    /// A required element is missing or repeated.
    #[error("element {0} missing or repeated")]
    Element(&'static str),
    /// An element's text is not a valid value.
    #[error("invalid value in {0}")]
    Value(&'static str),
}

/// The subscriber's IPTV entitlements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IptvProfile {
    /// Repository data Sequence-Number (TS 29.328: 0..65535, bumped on every change).
    pub sequence_number: u16,
    /// Channel packages the subscriber may watch.
    pub packages: Vec<String>,
    /// Maximum concurrent viewing sessions.
    pub max_streams: u32,
    /// Parental level: 0 (no restriction) .. 18 (adult content allowed).
    pub parental_level: u8,
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

impl IptvProfile {
    /// The Sh-Data document for User-Data.
    #[must_use]
    pub fn to_user_data(&self) -> String {
        let mut s = String::with_capacity(320 + 32 * self.packages.len());
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        s.push_str("<Sh-Data><RepositoryData><ServiceIndication>IPTV</ServiceIndication>");
        s.push_str(&format!(
            "<SequenceNumber>{}</SequenceNumber><ServiceData>",
            self.sequence_number
        ));
        s.push_str("<IptvProfile xmlns=\"");
        s.push_str(IPTV_PROFILE_NS);
        s.push_str("\">");
        for p in &self.packages {
            s.push_str("<Package>");
            escape(p, &mut s);
            s.push_str("</Package>");
        }
        s.push_str(&format!(
            "<MaxStreams>{}</MaxStreams><ParentalLevel>{}</ParentalLevel>",
            self.max_streams, self.parental_level
        ));
        s.push_str("</IptvProfile></ServiceData></RepositoryData></Sh-Data>");
        s
    }

    /// Read the profile from a User-Data document.
    pub fn from_user_data(data: &[u8]) -> Result<IptvProfile, ProfileError> {
        if data.len() > MAX_USER_DATA {
            return Err(ProfileError::TooLarge);
        }
        let text = std::str::from_utf8(data).map_err(|_| ProfileError::NotUtf8)?;
        let root = xml::parse(text)?;
        if root.name != "Sh-Data" {
            return Err(ProfileError::NoIptvData);
        }
        let repo = root
            .children
            .iter()
            .filter(|e| e.name == "RepositoryData")
            .find(|r| r.child_text("ServiceIndication").map(str::trim) == Some("IPTV"))
            .ok_or(ProfileError::NoIptvData)?;
        let sequence_number = match repo.only("SequenceNumber")? {
            Some(e) => e
                .text
                .trim()
                .parse()
                .map_err(|_| ProfileError::Value("SequenceNumber"))?,
            None => return Err(ProfileError::Element("SequenceNumber")),
        };
        let sd = repo.only("ServiceData")?.ok_or(ProfileError::NoIptvData)?;
        let p = sd.only("IptvProfile")?.ok_or(ProfileError::NoIptvData)?;
        let num = |name: &'static str| -> Result<u32, ProfileError> {
            p.only(name)?
                .ok_or(ProfileError::Element(name))?
                .text
                .trim()
                .parse()
                .map_err(|_| ProfileError::Value(name))
        };
        let max_streams = num("MaxStreams")?;
        let parental_level = num("ParentalLevel")?;
        if parental_level > 18 {
            return Err(ProfileError::Value("ParentalLevel"));
        }
        let mut packages = Vec::new();
        for e in p.children.iter().filter(|e| e.name == "Package") {
            let name = e.text.trim();
            if name.is_empty() {
                return Err(ProfileError::Value("Package"));
            }
            packages.push(name.to_owned());
        }
        Ok(IptvProfile {
            sequence_number,
            packages,
            max_streams,
            parental_level: parental_level as u8,
        })
    }
}

/// A small strict XML reader: elements, attributes (read and ignored), text with entity and
/// character references, comments, CDATA, an optional XML declaration. No DTD, no processing
/// instructions past the declaration.
mod xml {
    use super::{ProfileError, MAX_XML_DEPTH, MAX_XML_ELEMENTS};

    #[derive(Debug, Default)]
    pub(super) struct Element {
        pub name: String,
        pub text: String,
        pub children: Vec<Element>,
    }

    impl Element {
        pub fn child_text(&self, name: &str) -> Option<&str> {
            self.children
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.text.as_str())
        }

        /// The child `name` if it occurs at most once.
        pub fn only(&self, name: &'static str) -> Result<Option<&Element>, ProfileError> {
            let mut it = self.children.iter().filter(|e| e.name == name);
            let first = it.next();
            if it.next().is_some() {
                return Err(ProfileError::Element(name));
            }
            Ok(first)
        }
    }

    struct Reader<'a> {
        s: &'a str,
        pos: usize,
        elements: usize,
    }

    pub(super) fn parse(s: &str) -> Result<Element, ProfileError> {
        let mut r = Reader {
            s: s.strip_prefix('\u{feff}').unwrap_or(s),
            pos: 0,
            elements: 0,
        };
        r.ws();
        if r.rest().starts_with("<?xml") {
            let end = r
                .rest()
                .find("?>")
                .ok_or(r.err("unterminated declaration"))?;
            r.pos += end + 2;
        }
        r.misc()?;
        if !r.rest().starts_with('<') {
            return Err(r.err("expected root element"));
        }
        let root = r.element(1)?;
        r.misc()?;
        if !r.rest().is_empty() {
            return Err(r.err("content after root element"));
        }
        Ok(root)
    }

    fn is_name_start(c: char) -> bool {
        c.is_alphabetic() || c == '_' || c == ':'
    }

    fn is_name_char(c: char) -> bool {
        is_name_start(c) || c.is_ascii_digit() || c == '-' || c == '.'
    }

    impl<'a> Reader<'a> {
        fn rest(&self) -> &'a str {
            &self.s[self.pos..]
        }

        fn err(&self, what: &'static str) -> ProfileError {
            ProfileError::Malformed(what, self.pos)
        }

        fn ws(&mut self) {
            let r = self.rest();
            self.pos += r.len() - r.trim_start_matches([' ', '\t', '\r', '\n']).len();
        }

        /// Whitespace and comments between top-level constructs.
        fn misc(&mut self) -> Result<(), ProfileError> {
            loop {
                self.ws();
                if self.rest().starts_with("<!--") {
                    self.comment()?;
                } else {
                    return Ok(());
                }
            }
        }

        fn comment(&mut self) -> Result<(), ProfileError> {
            let end = self.rest()[4..]
                .find("-->")
                .ok_or(self.err("unterminated comment"))?;
            self.pos += 4 + end + 3;
            Ok(())
        }

        fn name(&mut self) -> Result<&'a str, ProfileError> {
            let r = self.rest();
            let mut chars = r.char_indices();
            match chars.next() {
                Some((_, c)) if is_name_start(c) => {}
                _ => return Err(self.err("expected a name")),
            }
            let end = chars
                .find(|&(_, c)| !is_name_char(c))
                .map_or(r.len(), |(i, _)| i);
            self.pos += end;
            Ok(&r[..end])
        }

        fn expect(&mut self, lit: &str, what: &'static str) -> Result<(), ProfileError> {
            if self.rest().starts_with(lit) {
                self.pos += lit.len();
                Ok(())
            } else {
                Err(self.err(what))
            }
        }

        /// Text up to `<` (or an attribute value up to `quote`), references decoded.
        fn text(&mut self, stop: char, out: &mut String) -> Result<(), ProfileError> {
            loop {
                let r = self.rest();
                let end = r.find([stop, '&', '<']).unwrap_or(r.len());
                out.push_str(&r[..end]);
                self.pos += end;
                if !self.rest().starts_with('&') {
                    return Ok(());
                }
                let semi = self
                    .rest()
                    .find(';')
                    .ok_or(self.err("unterminated reference"))?;
                let ent = &self.rest()[1..semi];
                let c = match ent {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => {
                        let n = if let Some(h) = ent.strip_prefix("#x") {
                            u32::from_str_radix(h, 16).ok()
                        } else if let Some(d) = ent.strip_prefix('#') {
                            d.parse().ok()
                        } else {
                            None
                        };
                        n.and_then(char::from_u32)
                            .filter(|&c| c != '\0')
                            .ok_or(self.err("bad reference"))?
                    }
                };
                out.push(c);
                self.pos += semi + 1;
            }
        }

        fn element(&mut self, depth: usize) -> Result<Element, ProfileError> {
            if depth > MAX_XML_DEPTH {
                return Err(ProfileError::TooComplex);
            }
            self.elements += 1;
            if self.elements > MAX_XML_ELEMENTS {
                return Err(ProfileError::TooComplex);
            }
            self.expect("<", "expected '<'")?;
            let name = self.name()?;
            let mut el = Element {
                name: name.to_owned(),
                ..Element::default()
            };
            // attributes
            loop {
                let before = self.pos;
                self.ws();
                if self.rest().starts_with("/>") {
                    self.pos += 2;
                    return Ok(el);
                }
                if self.rest().starts_with('>') {
                    self.pos += 1;
                    break;
                }
                if self.pos == before {
                    return Err(self.err("expected whitespace before attribute"));
                }
                self.name()?;
                self.ws();
                self.expect("=", "expected '='")?;
                self.ws();
                let q = match self.rest().chars().next() {
                    Some(q @ ('"' | '\'')) => q,
                    _ => return Err(self.err("expected quoted attribute value")),
                };
                self.pos += 1;
                let mut ignored = String::new();
                self.text(q, &mut ignored)?;
                if self.rest().starts_with('<') {
                    return Err(self.err("'<' in attribute value"));
                }
                self.expect(if q == '"' { "\"" } else { "'" }, "unterminated attribute")?;
            }
            // content
            loop {
                let r = self.rest();
                if r.is_empty() {
                    return Err(self.err("unterminated element"));
                } else if r.starts_with("</") {
                    self.pos += 2;
                    let close = self.name()?;
                    if close != el.name {
                        return Err(self.err("mismatched end tag"));
                    }
                    self.ws();
                    self.expect(">", "expected '>'")?;
                    return Ok(el);
                } else if r.starts_with("<!--") {
                    self.comment()?;
                } else if let Some(body) = r.strip_prefix("<![CDATA[") {
                    let end = body.find("]]>").ok_or(self.err("unterminated CDATA"))?;
                    el.text.push_str(&body[..end]);
                    self.pos += 9 + end + 3;
                } else if r.starts_with("<!") || r.starts_with("<?") {
                    return Err(self.err("unsupported markup"));
                } else if r.starts_with('<') {
                    let child = self.element(depth + 1)?;
                    el.children.push(child);
                } else {
                    let mut t = std::mem::take(&mut el.text);
                    self.text('<', &mut t)?;
                    el.text = t;
                }
            }
        }
    }
}
