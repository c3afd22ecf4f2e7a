//! Typed 3GPP Rf offline charging (TS 32.299 section 6.2 over RFC 6733 section 9 base
//! accounting, application 3): ACR/ACA with START / INTERIM / STOP / EVENT records and the
//! IMS part of Service-Information (TS 32.299 section 7.2.77 IMS-Information).
//!
//! # What the AS puts in an ACR
//!
//! One accounting session per viewing session (and an EVENT record per channel creation).
//! `Session-Id` is the accounting session; `Accounting-Record-Number` counts records in it
//! (0 for START). `Service-Context-Id` is `32260@3gpp.org` (IMS charging, TS 32.260). In
//! `Service-Information { IMS-Information }`:
//!
//! - `Node-Functionality` AS (6), `Role-Of-Node` TERMINATING (1: the AS terminates the join),
//! - `User-Session-Id`: the SIP Call-ID; `Calling-Party-Address`: the viewer's public
//!   identity; `Called-Party-Address`: the channel's SIP URI (the Request-URI of the join),
//! - `Time-Stamps { SIP-Request-Timestamp, SIP-Response-Timestamp }`: the INVITE and its
//!   200 (START) or the BYE and its answer (STOP),
//! - `Service-Specific-Info` (TS 32.299 section 7.2.152, operator-defined type/data): type
//!   [`SERVICE_TYPE_CHANNEL`] carries the channel id, type [`SERVICE_TYPE_DURATION`] the
//!   viewing time in seconds on STOP (the CDF can also subtract the START and STOP
//!   Event-Timestamps; the explicit figure survives a lost START).

use super::avp::{Avp, AvpList, Time};
use super::base::{expect, opt_str, opt_u32, req_str};
use super::dict;
use super::error::{DecodeError, DecodeErrorKind};
use super::message::Message;
use super::types::{ApplicationId, CommandCode, CommandFlags, ResultCode};

/// Service-Context-Id for IMS charging (TS 32.299 section 7.1.12, TS 32.260).
pub const IMS_SERVICE_CONTEXT: &str = "32260@3gpp.org";
/// Service-Specific-Type for the channel id.
pub const SERVICE_TYPE_CHANNEL: u32 = 1;
/// Service-Specific-Type for the viewing duration in seconds.
pub const SERVICE_TYPE_DURATION: u32 = 2;

/// Accounting-Record-Type (RFC 6733 section 9.8.1), an open enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType(pub i32);

impl RecordType {
    /// EVENT_RECORD: a one-time event (a channel created).
    pub const EVENT: RecordType = RecordType(1);
    /// START_RECORD.
    pub const START: RecordType = RecordType(2);
    /// INTERIM_RECORD.
    pub const INTERIM: RecordType = RecordType(3);
    /// STOP_RECORD.
    pub const STOP: RecordType = RecordType(4);
}

/// Node-Functionality (TS 32.299 section 7.2.118), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeFunctionality(pub i32);

impl NodeFunctionality {
    /// S-CSCF.
    pub const S_CSCF: NodeFunctionality = NodeFunctionality(0);
    /// P-CSCF.
    pub const P_CSCF: NodeFunctionality = NodeFunctionality(1);
    /// AS.
    pub const AS: NodeFunctionality = NodeFunctionality(6);
}

/// Role-Of-Node (TS 32.299 section 7.2.187), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleOfNode(pub i32);

impl RoleOfNode {
    /// ORIGINATING_ROLE.
    pub const ORIGINATING: RoleOfNode = RoleOfNode(0);
    /// TERMINATING_ROLE.
    pub const TERMINATING: RoleOfNode = RoleOfNode(1);
}

/// Time-Stamps (TS 32.299 section 7.2.209).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeStamps {
    /// SIP-Request-Timestamp.
    pub request: Option<Time>,
    /// SIP-Response-Timestamp.
    pub response: Option<Time>,
}

/// Service-Specific-Info (TS 32.299 section 7.2.152).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpecificInfo {
    /// Service-Specific-Type.
    pub kind: Option<u32>,
    /// Service-Specific-Data.
    pub data: Option<String>,
}

/// IMS-Information (TS 32.299 section 7.2.77), the part the AS fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsInformation {
    /// Role-Of-Node.
    pub role_of_node: Option<RoleOfNode>,
    /// Node-Functionality (required).
    pub node_functionality: NodeFunctionality,
    /// User-Session-Id (the SIP Call-ID).
    pub user_session_id: Option<String>,
    /// Calling-Party-Address (the viewer).
    pub calling_party_addresses: Vec<String>,
    /// Called-Party-Address (the channel URI).
    pub called_party_address: Option<String>,
    /// Time-Stamps.
    pub time_stamps: Option<TimeStamps>,
    /// IMS-Charging-Identifier.
    pub ims_charging_identifier: Option<String>,
    /// Service-Specific-Info (channel id, duration).
    pub service_specific_info: Vec<ServiceSpecificInfo>,
    /// Cause-Code (0 normal end of session).
    pub cause_code: Option<i32>,
}

impl Default for ImsInformation {
    fn default() -> Self {
        Self {
            role_of_node: Some(RoleOfNode::TERMINATING),
            node_functionality: NodeFunctionality::AS,
            user_session_id: None,
            calling_party_addresses: Vec::new(),
            called_party_address: None,
            time_stamps: None,
            ims_charging_identifier: None,
            service_specific_info: Vec::new(),
            cause_code: None,
        }
    }
}

impl ImsInformation {
    /// The channel id (Service-Specific-Info of type [`SERVICE_TYPE_CHANNEL`]).
    #[must_use]
    pub fn channel(&self) -> Option<&str> {
        self.service_specific(SERVICE_TYPE_CHANNEL)
    }

    /// The viewing duration in seconds (type [`SERVICE_TYPE_DURATION`]).
    #[must_use]
    pub fn duration_secs(&self) -> Option<u64> {
        self.service_specific(SERVICE_TYPE_DURATION)
            .and_then(|s| s.parse().ok())
    }

    /// Set the channel id.
    pub fn set_channel(&mut self, channel: impl Into<String>) {
        self.set_service_specific(SERVICE_TYPE_CHANNEL, channel.into());
    }

    /// Set the viewing duration.
    pub fn set_duration_secs(&mut self, secs: u64) {
        self.set_service_specific(SERVICE_TYPE_DURATION, secs.to_string());
    }

    fn service_specific(&self, kind: u32) -> Option<&str> {
        self.service_specific_info
            .iter()
            .find(|s| s.kind == Some(kind))
            .and_then(|s| s.data.as_deref())
    }

    fn set_service_specific(&mut self, kind: u32, data: String) {
        self.service_specific_info.retain(|s| s.kind != Some(kind));
        self.service_specific_info.push(ServiceSpecificInfo {
            kind: Some(kind),
            data: Some(data),
        });
    }

    /// `Service-Information { IMS-Information { ... } }`, members in the ABNF's order.
    #[must_use]
    pub fn to_service_information(&self) -> Avp {
        let mut g = Vec::with_capacity(10);
        if let Some(r) = self.role_of_node {
            g.push(Avp::enumerated(&dict::ROLE_OF_NODE, r.0));
        }
        g.push(Avp::enumerated(
            &dict::NODE_FUNCTIONALITY,
            self.node_functionality.0,
        ));
        if let Some(s) = &self.user_session_id {
            g.push(Avp::utf8(&dict::USER_SESSION_ID, &**s));
        }
        for c in &self.calling_party_addresses {
            g.push(Avp::utf8(&dict::CALLING_PARTY_ADDRESS, &**c));
        }
        if let Some(c) = &self.called_party_address {
            g.push(Avp::utf8(&dict::CALLED_PARTY_ADDRESS, &**c));
        }
        if let Some(ts) = &self.time_stamps {
            let mut t = Vec::with_capacity(2);
            if let Some(r) = ts.request {
                t.push(Avp::time(&dict::SIP_REQUEST_TIMESTAMP, r));
            }
            if let Some(r) = ts.response {
                t.push(Avp::time(&dict::SIP_RESPONSE_TIMESTAMP, r));
            }
            g.push(Avp::grouped(&dict::TIME_STAMPS, t));
        }
        if let Some(i) = &self.ims_charging_identifier {
            g.push(Avp::utf8(&dict::IMS_CHARGING_IDENTIFIER, &**i));
        }
        for s in &self.service_specific_info {
            let mut m = Vec::with_capacity(2);
            if let Some(d) = &s.data {
                m.push(Avp::utf8(&dict::SERVICE_SPECIFIC_DATA, &**d));
            }
            if let Some(k) = s.kind {
                m.push(Avp::u32(&dict::SERVICE_SPECIFIC_TYPE, k));
            }
            g.push(Avp::grouped(&dict::SERVICE_SPECIFIC_INFO, m));
        }
        if let Some(c) = self.cause_code {
            g.push(Avp::i32(&dict::CAUSE_CODE, c));
        }
        Avp::grouped(
            &dict::SERVICE_INFORMATION,
            vec![Avp::grouped(&dict::IMS_INFORMATION, g)],
        )
    }

    /// From a Service-Information AVP (`None` when it has no IMS-Information).
    pub fn parse(service_information: &Avp) -> Result<Option<ImsInformation>, DecodeError> {
        let si = service_information.as_grouped()?;
        let Some(ims) = si.opt(&dict::IMS_INFORMATION)? else {
            return Ok(None);
        };
        let g = ims.as_grouped()?;
        let time_stamps = match g.opt(&dict::TIME_STAMPS)? {
            Some(t) => {
                let t = t.as_grouped()?;
                Some(TimeStamps {
                    request: t
                        .opt(&dict::SIP_REQUEST_TIMESTAMP)?
                        .map(Avp::as_time)
                        .transpose()?,
                    response: t
                        .opt(&dict::SIP_RESPONSE_TIMESTAMP)?
                        .map(Avp::as_time)
                        .transpose()?,
                })
            }
            None => None,
        };
        let service_specific_info = g
            .all(&dict::SERVICE_SPECIFIC_INFO)
            .map(|a| {
                let m = a.as_grouped()?;
                Ok(ServiceSpecificInfo {
                    kind: opt_u32(m, &dict::SERVICE_SPECIFIC_TYPE)?,
                    data: opt_str(m, &dict::SERVICE_SPECIFIC_DATA)?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Some(ImsInformation {
            role_of_node: g
                .opt(&dict::ROLE_OF_NODE)?
                .map(|a| a.as_i32().map(RoleOfNode))
                .transpose()?,
            node_functionality: NodeFunctionality(g.one(&dict::NODE_FUNCTIONALITY)?.as_i32()?),
            user_session_id: opt_str(g, &dict::USER_SESSION_ID)?,
            calling_party_addresses: g
                .all(&dict::CALLING_PARTY_ADDRESS)
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Result<_, _>>()?,
            called_party_address: opt_str(g, &dict::CALLED_PARTY_ADDRESS)?,
            time_stamps,
            ims_charging_identifier: opt_str(g, &dict::IMS_CHARGING_IDENTIFIER)?,
            service_specific_info,
            cause_code: g.opt(&dict::CAUSE_CODE)?.map(Avp::as_i32).transpose()?,
        }))
    }
}

/// Accounting-Request (TS 32.299 section 6.2.2, RFC 6733 section 9.7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acr {
    /// Session-Id (the accounting session).
    pub session_id: String,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm.
    pub destination_realm: String,
    /// Accounting-Record-Type.
    pub record_type: RecordType,
    /// Accounting-Record-Number (0 for START/EVENT, then 1, 2, ...).
    pub record_number: u32,
    /// User-Name.
    pub user_name: Option<String>,
    /// Destination-Host.
    pub destination_host: Option<String>,
    /// Acct-Interim-Interval.
    pub acct_interim_interval: Option<u32>,
    /// Origin-State-Id.
    pub origin_state_id: Option<u32>,
    /// Event-Timestamp.
    pub event_timestamp: Option<Time>,
    /// Service-Context-Id ([`IMS_SERVICE_CONTEXT`]).
    pub service_context_id: Option<String>,
    /// Service-Information / IMS-Information.
    pub ims: Option<ImsInformation>,
}

impl Acr {
    /// A record of `record_type` with the IMS service context and no IMS information yet.
    #[must_use]
    pub fn new(
        session_id: impl Into<String>,
        origin_host: impl Into<String>,
        origin_realm: impl Into<String>,
        destination_realm: impl Into<String>,
        record_type: RecordType,
        record_number: u32,
    ) -> Acr {
        Acr {
            session_id: session_id.into(),
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            destination_realm: destination_realm.into(),
            record_type,
            record_number,
            user_name: None,
            destination_host: None,
            acct_interim_interval: None,
            origin_state_id: None,
            event_timestamp: None,
            service_context_id: Some(IMS_SERVICE_CONTEXT.to_owned()),
            ims: None,
        }
    }

    /// The request (R and P bits, application 3, identifiers 0), AVPs in the ABNF's order.
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = Message::request(
            CommandCode::ACCOUNTING,
            ApplicationId::BASE_ACCOUNTING,
            true,
        );
        let a = &mut m.avps;
        a.push(Avp::utf8(&dict::SESSION_ID, &*self.session_id));
        a.push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        a.push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        a.push(Avp::identity(
            &dict::DESTINATION_REALM,
            &*self.destination_realm,
        ));
        a.push(Avp::enumerated(
            &dict::ACCOUNTING_RECORD_TYPE,
            self.record_type.0,
        ));
        a.push(Avp::u32(
            &dict::ACCOUNTING_RECORD_NUMBER,
            self.record_number,
        ));
        a.push(Avp::u32(
            &dict::ACCT_APPLICATION_ID,
            ApplicationId::BASE_ACCOUNTING.0,
        ));
        if let Some(u) = &self.user_name {
            a.push(Avp::utf8(&dict::USER_NAME, &**u));
        }
        if let Some(h) = &self.destination_host {
            a.push(Avp::identity(&dict::DESTINATION_HOST, &**h));
        }
        if let Some(i) = self.acct_interim_interval {
            a.push(Avp::u32(&dict::ACCT_INTERIM_INTERVAL, i));
        }
        if let Some(s) = self.origin_state_id {
            a.push(Avp::u32(&dict::ORIGIN_STATE_ID, s));
        }
        if let Some(t) = self.event_timestamp {
            a.push(Avp::time(&dict::EVENT_TIMESTAMP, t));
        }
        if let Some(c) = &self.service_context_id {
            a.push(Avp::utf8(&dict::SERVICE_CONTEXT_ID, &**c));
        }
        if let Some(ims) = &self.ims {
            a.push(ims.to_service_information());
        }
        m
    }

    /// Read an ACR.
    pub fn from_message(m: &Message) -> Result<Acr, DecodeError> {
        expect(m, CommandCode::ACCOUNTING, true)?;
        let parse = || {
            check_acct_app(m)?;
            Ok(Acr {
                session_id: req_str(m, &dict::SESSION_ID)?,
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                destination_realm: req_str(m, &dict::DESTINATION_REALM)?,
                record_type: RecordType(m.one(&dict::ACCOUNTING_RECORD_TYPE)?.as_i32()?),
                record_number: m.one(&dict::ACCOUNTING_RECORD_NUMBER)?.as_u32()?,
                user_name: opt_str(m, &dict::USER_NAME)?,
                destination_host: opt_str(m, &dict::DESTINATION_HOST)?,
                acct_interim_interval: opt_u32(m, &dict::ACCT_INTERIM_INTERVAL)?,
                origin_state_id: opt_u32(m, &dict::ORIGIN_STATE_ID)?,
                event_timestamp: m
                    .opt(&dict::EVENT_TIMESTAMP)?
                    .map(Avp::as_time)
                    .transpose()?,
                service_context_id: opt_str(m, &dict::SERVICE_CONTEXT_ID)?,
                ims: match m.opt(&dict::SERVICE_INFORMATION)? {
                    Some(si) => ImsInformation::parse(si)?,
                    None => None,
                },
            })
        };
        parse().map_err(|e| m.error(e))
    }
}

/// Acct-Application-Id, when present, must be 3 (5004 otherwise).
fn check_acct_app(m: &Message) -> Result<(), DecodeError> {
    if let Some(a) = m.opt(&dict::ACCT_APPLICATION_ID)? {
        if a.as_u32()? != ApplicationId::BASE_ACCOUNTING.0 {
            return Err(DecodeError::with_avp(
                DecodeErrorKind::InvalidAvpValue,
                a.clone(),
            ));
        }
    }
    Ok(())
}

/// Accounting-Answer (TS 32.299 section 6.2.3, RFC 6733 section 9.7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aca {
    /// Session-Id.
    pub session_id: String,
    /// Result-Code.
    pub result_code: ResultCode,
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Accounting-Record-Type (echoed).
    pub record_type: RecordType,
    /// Accounting-Record-Number (echoed).
    pub record_number: u32,
    /// Acct-Interim-Interval (the CDF's wish).
    pub acct_interim_interval: Option<u32>,
    /// Error-Message.
    pub error_message: Option<String>,
    /// Event-Timestamp.
    pub event_timestamp: Option<Time>,
}

impl Aca {
    /// The success answer echoing `acr`'s session and record.
    #[must_use]
    pub fn success(
        acr: &Acr,
        origin_host: impl Into<String>,
        origin_realm: impl Into<String>,
    ) -> Aca {
        Aca {
            session_id: acr.session_id.clone(),
            result_code: ResultCode::DIAMETER_SUCCESS,
            origin_host: origin_host.into(),
            origin_realm: origin_realm.into(),
            record_type: acr.record_type,
            record_number: acr.record_number,
            acct_interim_interval: None,
            error_message: None,
            event_timestamp: None,
        }
    }

    /// The answer with identifiers 0 (P bit; E bit for a 3xxx result).
    #[must_use]
    pub fn to_message(&self) -> Message {
        let mut m = Message::request(
            CommandCode::ACCOUNTING,
            ApplicationId::BASE_ACCOUNTING,
            true,
        );
        m.flags =
            CommandFlags::PROXIABLE.with(CommandFlags::ERROR, self.result_code.is_protocol_error());
        let a = &mut m.avps;
        a.push(Avp::utf8(&dict::SESSION_ID, &*self.session_id));
        a.push(Avp::u32(&dict::RESULT_CODE, self.result_code.0));
        a.push(Avp::identity(&dict::ORIGIN_HOST, &*self.origin_host));
        a.push(Avp::identity(&dict::ORIGIN_REALM, &*self.origin_realm));
        a.push(Avp::enumerated(
            &dict::ACCOUNTING_RECORD_TYPE,
            self.record_type.0,
        ));
        a.push(Avp::u32(
            &dict::ACCOUNTING_RECORD_NUMBER,
            self.record_number,
        ));
        a.push(Avp::u32(
            &dict::ACCT_APPLICATION_ID,
            ApplicationId::BASE_ACCOUNTING.0,
        ));
        if let Some(i) = self.acct_interim_interval {
            a.push(Avp::u32(&dict::ACCT_INTERIM_INTERVAL, i));
        }
        if let Some(e) = &self.error_message {
            a.push(Avp::utf8(&dict::ERROR_MESSAGE, &**e));
        }
        if let Some(t) = self.event_timestamp {
            a.push(Avp::time(&dict::EVENT_TIMESTAMP, t));
        }
        m
    }

    /// The answer to `acr` (its identifiers).
    #[must_use]
    pub fn answer(&self, acr: &Message) -> Message {
        let mut m = self.to_message();
        m.hop_by_hop = acr.hop_by_hop;
        m.end_to_end = acr.end_to_end;
        m
    }

    /// Read an ACA.
    pub fn from_message(m: &Message) -> Result<Aca, DecodeError> {
        expect(m, CommandCode::ACCOUNTING, false)?;
        let parse = || {
            check_acct_app(m)?;
            Ok(Aca {
                session_id: req_str(m, &dict::SESSION_ID)?,
                result_code: ResultCode(m.one(&dict::RESULT_CODE)?.as_u32()?),
                origin_host: req_str(m, &dict::ORIGIN_HOST)?,
                origin_realm: req_str(m, &dict::ORIGIN_REALM)?,
                record_type: RecordType(m.one(&dict::ACCOUNTING_RECORD_TYPE)?.as_i32()?),
                record_number: m.one(&dict::ACCOUNTING_RECORD_NUMBER)?.as_u32()?,
                acct_interim_interval: opt_u32(m, &dict::ACCT_INTERIM_INTERVAL)?,
                error_message: opt_str(m, &dict::ERROR_MESSAGE)?,
                event_timestamp: m
                    .opt(&dict::EVENT_TIMESTAMP)?
                    .map(Avp::as_time)
                    .transpose()?,
            })
        };
        parse().map_err(|e| m.error(e))
    }
}
