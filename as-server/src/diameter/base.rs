//! Typed base-protocol commands (RFC 6733 section 5): CER/CEA (5.3), DWR/DWA (5.5), DPR/DPA
//! (5.4), and the answer pieces every application shares ([`Outcome`]: Result-Code or
//! Experimental-Result, section 7).
//!
//! Each type builds its [`Message`] (`to_message`, Hop-by-Hop and End-to-End left 0 for the
//! peer layer to set) and reads one back (`from_message`) with the occurrence checks of the
//! command's ABNF: a missing `{ AVP }` is 5005 and a repeated one 5009, with the Failed-AVP
//! and the request's header in the error so the caller can answer with
//! [`crate::diameter::DecodeError::error_answer`]. AVPs a type does not model (`* [ AVP ]`)
//! are ignored by the parser; use the [`Message`] directly to see them.

use std::net::IpAddr;

use super::avp::{Avp, AvpList};
use super::dict::{self, AvpDef};
use super::error::{DecodeError, DecodeErrorKind};
use super::message::Message;
use super::types::{ApplicationId, CommandCode, ResultCode, VendorId};

/// Check that `m` is the command `code` in the expected direction (3001 otherwise).
pub(crate) fn expect(m: &Message, code: CommandCode, request: bool) -> Result<(), DecodeError> {
    if m.code != code || m.is_request() != request {
        return Err(m.error(DecodeErrorKind::UnexpectedCommand.into()));
    }
    Ok(())
}

pub(crate) fn req_str(l: &(impl AvpList + ?Sized), def: &AvpDef) -> Result<String, DecodeError> {
    Ok(l.one(def)?.as_str()?.to_owned())
}

pub(crate) fn opt_str(
    l: &(impl AvpList + ?Sized),
    def: &AvpDef,
) -> Result<Option<String>, DecodeError> {
    l.opt(def)?
        .map(|a| a.as_str().map(str::to_owned))
        .transpose()
}

pub(crate) fn opt_u32(
    l: &(impl AvpList + ?Sized),
    def: &AvpDef,
) -> Result<Option<u32>, DecodeError> {
    l.opt(def)?.map(Avp::as_u32).transpose()
}

pub(crate) fn all_u32(l: &(impl AvpList + ?Sized), def: &AvpDef) -> Result<Vec<u32>, DecodeError> {
    l.all(def).map(Avp::as_u32).collect()
}

/// Experimental-Result (RFC 6733 section 7.6): a vendor's result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExperimentalResult {
    /// Vendor-Id.
    pub vendor_id: VendorId,
    /// Experimental-Result-Code.
    pub code: ResultCode,
}

/// The outcome an answer carries: a Result-Code or an Experimental-Result (exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Result-Code.
    Result(ResultCode),
    /// Experimental-Result.
    Experimental(ExperimentalResult),
}

impl Outcome {
    /// DIAMETER_SUCCESS.
    pub const SUCCESS: Outcome = Outcome::Result(ResultCode::DIAMETER_SUCCESS);

    /// Whether the code is 2xxx.
    #[must_use]
    pub fn is_success(self) -> bool {
        match self {
            Outcome::Result(c) => c.is_success(),
            Outcome::Experimental(e) => e.code.is_success(),
        }
    }

    /// The AVP to put in the answer.
    #[must_use]
    pub fn to_avp(self) -> Avp {
        match self {
            Outcome::Result(c) => Avp::u32(&dict::RESULT_CODE, c.0),
            Outcome::Experimental(e) => Avp::grouped(
                &dict::EXPERIMENTAL_RESULT,
                vec![
                    Avp::u32(&dict::VENDOR_ID, e.vendor_id.0),
                    Avp::u32(&dict::EXPERIMENTAL_RESULT_CODE, e.code.0),
                ],
            ),
        }
    }

    /// Read it from an answer's AVPs (5005 naming Result-Code when neither is present).
    pub fn parse(l: &(impl AvpList + ?Sized)) -> Result<Outcome, DecodeError> {
        if let Some(rc) = l.opt(&dict::RESULT_CODE)? {
            return Ok(Outcome::Result(ResultCode(rc.as_u32()?)));
        }
        if let Some(er) = l.opt(&dict::EXPERIMENTAL_RESULT)? {
            let g = er.as_grouped()?;
            return Ok(Outcome::Experimental(ExperimentalResult {
                vendor_id: VendorId(g.one(&dict::VENDOR_ID)?.as_u32()?),
                code: ResultCode(g.one(&dict::EXPERIMENTAL_RESULT_CODE)?.as_u32()?),
            }));
        }
        Err(DecodeError::missing(&dict::RESULT_CODE))
    }
}

/// Vendor-Specific-Application-Id (RFC 6733 section 6.11): a vendor's application, auth or
/// accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VendorSpecificApplicationId {
    /// Vendor-Id.
    pub vendor_id: VendorId,
    /// Auth-Application-Id (exactly one of the two).
    pub auth_application_id: Option<ApplicationId>,
    /// Acct-Application-Id.
    pub acct_application_id: Option<ApplicationId>,
}

impl VendorSpecificApplicationId {
    /// 3GPP Sh (vendor 10415, Auth-Application-Id 16777217).
    pub const SH: VendorSpecificApplicationId = VendorSpecificApplicationId {
        vendor_id: VendorId::TGPP,
        auth_application_id: Some(ApplicationId::TGPP_SH),
        acct_application_id: None,
    };

    /// As an AVP.
    #[must_use]
    pub fn to_avp(&self) -> Avp {
        let mut g = vec![Avp::u32(&dict::VENDOR_ID, self.vendor_id.0)];
        if let Some(a) = self.auth_application_id {
            g.push(Avp::u32(&dict::AUTH_APPLICATION_ID, a.0));
        }
        if let Some(a) = self.acct_application_id {
            g.push(Avp::u32(&dict::ACCT_APPLICATION_ID, a.0));
        }
        Avp::grouped(&dict::VENDOR_SPECIFIC_APPLICATION_ID, g)
    }

    /// From the grouped AVP.
    pub fn parse(a: &Avp) -> Result<Self, DecodeError> {
        let g = a.as_grouped()?;
        let v = Self {
            vendor_id: VendorId(g.one(&dict::VENDOR_ID)?.as_u32()?),
            auth_application_id: opt_u32(g, &dict::AUTH_APPLICATION_ID)?.map(ApplicationId),
            acct_application_id: opt_u32(g, &dict::ACCT_APPLICATION_ID)?.map(ApplicationId),
        };
        if v.auth_application_id.is_some() == v.acct_application_id.is_some() {
            // "exactly one of": both or neither is an invalid value of the group.
            return Err(DecodeError::with_avp(
                DecodeErrorKind::InvalidAvpValue,
                a.clone(),
            ));
        }
        Ok(v)
    }
}

/// What a peer announces in CER and CEA (RFC 6733 section 5.3.1-5.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Host-IP-Address, one or more.
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id.
    pub vendor_id: VendorId,
    /// Product-Name.
    pub product_name: String,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
    /// Supported-Vendor-Id.
    pub supported_vendor_ids: Vec<VendorId>,
    /// Auth-Application-Id.
    pub auth_application_ids: Vec<ApplicationId>,
    /// Inband-Security-Id (0 NO_INBAND_SECURITY, 1 TLS).
    pub inband_security_ids: Vec<u32>,
    /// Acct-Application-Id.
    pub acct_application_ids: Vec<ApplicationId>,
    /// Vendor-Specific-Application-Id.
    pub vendor_specific_application_ids: Vec<VendorSpecificApplicationId>,
    /// Firmware-Revision.
    pub firmware_revision: Option<u32>,
}

impl Capabilities {
    /// Whether these capabilities name `app` (plainly or vendor-specific), or the relay
    /// application (section 5.3: the relay application id covers all).
    #[must_use]
    pub fn supports(&self, app: ApplicationId) -> bool {
        let any = |v: &[ApplicationId]| v.contains(&app) || v.contains(&ApplicationId::RELAY);
        any(&self.auth_application_ids)
            || any(&self.acct_application_ids)
            || self
                .vendor_specific_application_ids
                .iter()
                .any(|v| v.auth_application_id == Some(app) || v.acct_application_id == Some(app))
    }

    fn push_identity(&self, avps: &mut Vec<Avp>) {
        avps.push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        avps.push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
    }

    fn push_rest(&self, avps: &mut Vec<Avp>, error_message: Option<&str>) {
        for ip in &self.host_ip_addresses {
            avps.push(Avp::address(&dict::HOST_IP_ADDRESS, *ip));
        }
        avps.push(Avp::u32(&dict::VENDOR_ID, self.vendor_id.0));
        avps.push(Avp::utf8(&dict::PRODUCT_NAME, &*self.product_name));
        if let Some(s) = self.origin_state_id {
            avps.push(Avp::u32(&dict::ORIGIN_STATE_ID, s));
        }
        if let Some(e) = error_message {
            avps.push(Avp::utf8(&dict::ERROR_MESSAGE, e));
        }
        for v in &self.supported_vendor_ids {
            avps.push(Avp::u32(&dict::SUPPORTED_VENDOR_ID, v.0));
        }
        for a in &self.auth_application_ids {
            avps.push(Avp::u32(&dict::AUTH_APPLICATION_ID, a.0));
        }
        for i in &self.inband_security_ids {
            avps.push(Avp::u32(&dict::INBAND_SECURITY_ID, *i));
        }
        for a in &self.acct_application_ids {
            avps.push(Avp::u32(&dict::ACCT_APPLICATION_ID, a.0));
        }
        for v in &self.vendor_specific_application_ids {
            avps.push(v.to_avp());
        }
        if let Some(f) = self.firmware_revision {
            avps.push(Avp::u32(&dict::FIRMWARE_REVISION, f));
        }
    }

    /// Read from a CER/CEA. With `strict` false (an unsuccessful CEA, which may be a bare
    /// answer-message, section 7.2), everything past Origin-Host/Realm is optional.
    fn parse(m: &Message, strict: bool) -> Result<Capabilities, DecodeError> {
        let mut host_ip_addresses = Vec::new();
        for a in m.all(&dict::HOST_IP_ADDRESS) {
            match a.as_address()?.ip() {
                Some(ip) => host_ip_addresses.push(ip),
                None => {
                    return Err(DecodeError::with_avp(
                        DecodeErrorKind::InvalidAvpValue,
                        a.clone(),
                    ))
                }
            }
        }
        if strict && host_ip_addresses.is_empty() {
            return Err(DecodeError::missing(&dict::HOST_IP_ADDRESS));
        }
        let (vendor_id, product_name) = if strict {
            (
                m.one(&dict::VENDOR_ID)?.as_u32()?,
                req_str(m, &dict::PRODUCT_NAME)?,
            )
        } else {
            (
                opt_u32(m, &dict::VENDOR_ID)?.unwrap_or(0),
                opt_str(m, &dict::PRODUCT_NAME)?.unwrap_or_default(),
            )
        };
        Ok(Capabilities {
            origin_host: req_str(m, &dict::ORIGIN_HOST)?,
            origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
            host_ip_addresses,
            vendor_id: VendorId(vendor_id),
            product_name,
            origin_state_id: opt_u32(m, &dict::ORIGIN_STATE_ID)?,
            supported_vendor_ids: all_u32(m, &dict::SUPPORTED_VENDOR_ID)?
                .into_iter()
                .map(VendorId)
                .collect(),
            auth_application_ids: all_u32(m, &dict::AUTH_APPLICATION_ID)?
                .into_iter()
                .map(ApplicationId)
                .collect(),
            inband_security_ids: all_u32(m, &dict::INBAND_SECURITY_ID)?,
            acct_application_ids: all_u32(m, &dict::ACCT_APPLICATION_ID)?
                .into_iter()
                .map(ApplicationId)
                .collect(),
            vendor_specific_application_ids: m
                .all(&dict::VENDOR_SPECIFIC_APPLICATION_ID)
                .map(VendorSpecificApplicationId::parse)
                .collect::<Result<_, _>>()?,
            firmware_revision: opt_u32(m, &dict::FIRMWARE_REVISION)?,
        })
    }
}

/// Capabilities-Exchange-Request (RFC 6733 section 5.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cer {
    /// What we announce.
    pub capabilities: Capabilities,
}

impl Cer {
    /// The request (application 0, not proxiable).
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = Message::request(
            CommandCode::CAPABILITIES_EXCHANGE,
            ApplicationId::COMMON,
            false,
        );
        self.capabilities.push_identity(&mut m.avps);
        self.capabilities.push_rest(&mut m.avps, None);
        m
    }

    /// Read a CER.
    pub fn from_message(m: &Message) -> Result<Cer, DecodeError> {
        expect(m, CommandCode::CAPABILITIES_EXCHANGE, true)?;
        Ok(Cer {
            capabilities: Capabilities::parse(m, true).map_err(|e| m.error(e))?,
        })
    }
}

/// Capabilities-Exchange-Answer (RFC 6733 section 5.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cea {
    /// Result-Code.
    pub result_code: ResultCode,
    /// Error-Message.
    pub error_message: Option<String>,
    /// What the answering peer announces.
    pub capabilities: Capabilities,
}

impl Cea {
    /// The answer to `cer` (identifiers copied; E bit for a 3xxx result).
    #[must_use]
    pub fn answer(&self, cer: &Message) -> Message {
        let mut m = Message::answer_to(cer);
        self.fill(&mut m);
        m
    }

    /// The answer with identifiers 0.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = Message::request(
            CommandCode::CAPABILITIES_EXCHANGE,
            ApplicationId::COMMON,
            false,
        );
        m.flags = super::types::CommandFlags::EMPTY;
        self.fill(&mut m);
        m
    }

    fn fill(&self, m: &mut Message) {
        m.flags = m.flags.with(
            super::types::CommandFlags::ERROR,
            self.result_code.is_protocol_error(),
        );
        m.avps
            .push(Avp::u32(&dict::RESULT_CODE, self.result_code.0));
        self.capabilities.push_identity(&mut m.avps);
        self.capabilities
            .push_rest(&mut m.avps, self.error_message.as_deref());
    }

    /// Read a CEA (a failed one may lack the capability AVPs).
    pub fn from_message(m: &Message) -> Result<Cea, DecodeError> {
        expect(m, CommandCode::CAPABILITIES_EXCHANGE, false)?;
        let parse = || {
            let result_code = ResultCode(m.one(&dict::RESULT_CODE)?.as_u32()?);
            Ok(Cea {
                result_code,
                error_message: opt_str(m, &dict::ERROR_MESSAGE)?,
                capabilities: Capabilities::parse(m, result_code.is_success())?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Device-Watchdog-Request (RFC 6733 section 5.5.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dwr {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
}

impl Dwr {
    /// The request.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = Message::request(CommandCode::DEVICE_WATCHDOG, ApplicationId::COMMON, false);
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        if let Some(s) = self.origin_state_id {
            m.avps.push(Avp::u32(&dict::ORIGIN_STATE_ID, s));
        }
        m
    }

    /// Read a DWR.
    pub fn from_message(m: &Message) -> Result<Dwr, DecodeError> {
        expect(m, CommandCode::DEVICE_WATCHDOG, true)?;
        let parse = || {
            Ok(Dwr {
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                origin_state_id: opt_u32(m, &dict::ORIGIN_STATE_ID)?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Device-Watchdog-Answer (RFC 6733 section 5.5.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dwa {
    /// Result-Code.
    pub result_code: ResultCode,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Error-Message.
    pub error_message: Option<String>,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
}

impl Dwa {
    /// The answer to `dwr` (identifiers copied).
    #[must_use]
    pub fn answer(&self, dwr: &Message) -> Message {
        let mut m = Message::answer_to(dwr);
        self.fill(&mut m);
        m
    }

    fn fill(&self, m: &mut Message) {
        m.flags = m.flags.with(
            super::types::CommandFlags::ERROR,
            self.result_code.is_protocol_error(),
        );
        m.avps
            .push(Avp::u32(&dict::RESULT_CODE, self.result_code.0));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        if let Some(e) = &self.error_message {
            m.avps.push(Avp::utf8(&dict::ERROR_MESSAGE, &**e));
        }
        if let Some(s) = self.origin_state_id {
            m.avps.push(Avp::u32(&dict::ORIGIN_STATE_ID, s));
        }
    }

    /// Read a DWA.
    pub fn from_message(m: &Message) -> Result<Dwa, DecodeError> {
        expect(m, CommandCode::DEVICE_WATCHDOG, false)?;
        let parse = || {
            Ok(Dwa {
                result_code: ResultCode(m.one(&dict::RESULT_CODE)?.as_u32()?),
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                error_message: opt_str(m, &dict::ERROR_MESSAGE)?,
                origin_state_id: opt_u32(m, &dict::ORIGIN_STATE_ID)?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Disconnect-Cause (RFC 6733 section 5.4.3), an open enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DisconnectCause(pub i32);

impl DisconnectCause {
    /// REBOOTING: do not reconnect until the peer is back.
    pub const REBOOTING: DisconnectCause = DisconnectCause(0);
    /// BUSY: too busy; reconnect later.
    pub const BUSY: DisconnectCause = DisconnectCause(1);
    /// DO_NOT_WANT_TO_TALK_TO_YOU.
    pub const DO_NOT_WANT_TO_TALK_TO_YOU: DisconnectCause = DisconnectCause(2);
}

/// Disconnect-Peer-Request (RFC 6733 section 5.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dpr {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Disconnect-Cause.
    pub disconnect_cause: DisconnectCause,
}

impl Dpr {
    /// The request.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = Message::request(CommandCode::DISCONNECT_PEER, ApplicationId::COMMON, false);
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        m.avps.push(Avp::enumerated(
            &dict::DISCONNECT_CAUSE,
            self.disconnect_cause.0,
        ));
        m
    }

    /// Read a DPR.
    pub fn from_message(m: &Message) -> Result<Dpr, DecodeError> {
        expect(m, CommandCode::DISCONNECT_PEER, true)?;
        let parse = || {
            Ok(Dpr {
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                disconnect_cause: DisconnectCause(m.one(&dict::DISCONNECT_CAUSE)?.as_i32()?),
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Disconnect-Peer-Answer (RFC 6733 section 5.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dpa {
    /// Result-Code.
    pub result_code: ResultCode,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Error-Message.
    pub error_message: Option<String>,
}

impl Dpa {
    /// The answer to `dpr` (identifiers copied).
    #[must_use]
    pub fn answer(&self, dpr: &Message) -> Message {
        let mut m = Message::answer_to(dpr);
        m.flags = m.flags.with(
            super::types::CommandFlags::ERROR,
            self.result_code.is_protocol_error(),
        );
        m.avps
            .push(Avp::u32(&dict::RESULT_CODE, self.result_code.0));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        if let Some(e) = &self.error_message {
            m.avps.push(Avp::utf8(&dict::ERROR_MESSAGE, &**e));
        }
        m
    }

    /// Read a DPA.
    pub fn from_message(m: &Message) -> Result<Dpa, DecodeError> {
        expect(m, CommandCode::DISCONNECT_PEER, false)?;
        let parse = || {
            Ok(Dpa {
                result_code: ResultCode(m.one(&dict::RESULT_CODE)?.as_u32()?),
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                error_message: opt_str(m, &dict::ERROR_MESSAGE)?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}
