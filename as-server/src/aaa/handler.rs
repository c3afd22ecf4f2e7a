//! What the AAA answers, without I/O: each request from a peer is classified
//! ([`classify`]) into an immediate answer (protocol errors, malformed requests) or a piece
//! of work that needs the store (a UDR to look up, an ACR to record); the answer builders
//! then turn the store's result into the Diameter answer.
//!
//! | request | answer |
//! | --- | --- |
//! | Sh UDR (TS 29.329 6.1.1), Data-Reference RepositoryData, Service-Indication `IPTV` | UDA 2001 with User-Data = the IPTV profile ([`crate::diameter::sh::IptvProfile`]) |
//! | UDR for an unknown public identity (or an MSISDN only) | UDA, Experimental-Result 5001 DIAMETER_ERROR_USER_UNKNOWN (vendor 10415) |
//! | UDR for another Data-Reference | Experimental-Result 5102 DIAMETER_ERROR_USER_DATA_CANNOT_BE_READ |
//! | UDR for repository data of another Service-Indication | Experimental-Result 4100 DIAMETER_USER_DATA_NOT_AVAILABLE |
//! | UDR for repository data without Service-Indication | 5005 DIAMETER_MISSING_AVP, Failed-AVP Service-Indication |
//! | Rf ACR (RFC 6733 9.7.1, TS 32.299 6.2.2) | ACA 2001 echoing Accounting-Record-Type/Number once stored (also for a duplicate); 4002 DIAMETER_OUT_OF_SPACE when the store fails (the AS keeps it and retries) |
//! | a request missing a required AVP, or with a repeated one | 5005 / 5009 with Failed-AVP (the typed parsers' checks) |
//! | another command of Sh, Rf or the base application | 3001 DIAMETER_COMMAND_UNSUPPORTED (E bit) |
//! | a request of another application | 3007 DIAMETER_APPLICATION_UNSUPPORTED (E bit) |

use bytes::Bytes;

use crate::diameter::base::{ExperimentalResult, Outcome};
use crate::diameter::rf::{Aca, Acr, RecordType};
use crate::diameter::sh::{
    experimental, DataReference, IptvProfile, Pnr, Uda, Udr, UserIdentity, IPTV_SERVICE_INDICATION,
};
use crate::diameter::{
    dict, ApplicationId, Avp, AvpList as _, CommandCode, CommandFlags, DecodeError, Message,
    ResultCode, VendorId,
};
use crate::store::{Cdr, Profile};

/// The AAA's own identity, put in every answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    /// Origin-Host.
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Send this answer now.
    Answer(Message),
    /// Look the user's profile up, then answer with [`uda_profile`] or [`uda_outcome`].
    Udr(Udr),
    /// Store the record ([`cdr_from_acr`]), then answer with [`aca`].
    Acr {
        /// The request, typed.
        acr: Acr,
        /// Whether it carried the T flag (a retransmission after failover).
        retransmit: bool,
    },
}

/// An answer with only a Result-Code (RFC 6733 section 7.2 answer-message): E bit for a
/// protocol error (3xxx), Session-Id when the request has one.
#[must_use]
pub fn result_answer(local: &LocalIdentity, req: &Message, rc: ResultCode) -> Message {
    let mut a = Message::answer_to(req);
    if rc.is_protocol_error() {
        a.flags = a.flags | CommandFlags::ERROR;
    }
    if let Some(sid) = req.session_id() {
        a.avps.push(Avp::utf8(&dict::SESSION_ID, sid.to_owned()));
    }
    a.avps.push(Avp::u32(&dict::RESULT_CODE, rc.0));
    a.avps
        .push(Avp::identity(&dict::ORIGIN_HOST, &*local.origin_host));
    a.avps
        .push(Avp::identity(&dict::ORIGIN_REALM, &*local.origin_realm));
    a
}

fn decode_error_answer(local: &LocalIdentity, req: &Message, e: &DecodeError) -> Message {
    e.error_answer(&local.origin_host, &local.origin_realm)
        .unwrap_or_else(|| result_answer(local, req, e.result_code()))
}

/// Classify a request from a peer.
pub fn classify(local: &LocalIdentity, req: &Message) -> Action {
    match req.application {
        ApplicationId::TGPP_SH => match req.code {
            CommandCode::USER_DATA => match Udr::from_message(req) {
                Ok(udr) => check_udr(local, req, udr),
                Err(e) => Action::Answer(decode_error_answer(local, req, &e)),
            },
            _ => Action::Answer(result_answer(
                local,
                req,
                ResultCode::DIAMETER_COMMAND_UNSUPPORTED,
            )),
        },
        ApplicationId::BASE_ACCOUNTING => match req.code {
            CommandCode::ACCOUNTING => match Acr::from_message(req) {
                Ok(acr) => Action::Acr {
                    acr,
                    retransmit: req.flags.contains(CommandFlags::RETRANSMIT),
                },
                Err(e) => Action::Answer(decode_error_answer(local, req, &e)),
            },
            _ => Action::Answer(result_answer(
                local,
                req,
                ResultCode::DIAMETER_COMMAND_UNSUPPORTED,
            )),
        },
        ApplicationId::COMMON => Action::Answer(result_answer(
            local,
            req,
            ResultCode::DIAMETER_COMMAND_UNSUPPORTED,
        )),
        _ => Action::Answer(result_answer(
            local,
            req,
            ResultCode::DIAMETER_APPLICATION_UNSUPPORTED,
        )),
    }
}

fn check_udr(local: &LocalIdentity, req: &Message, udr: Udr) -> Action {
    if !udr
        .data_references
        .contains(&DataReference::REPOSITORY_DATA)
    {
        return Action::Answer(uda_outcome(
            local,
            &udr,
            req,
            experimental_outcome(experimental::DIAMETER_ERROR_USER_DATA_CANNOT_BE_READ),
        ));
    }
    if udr.service_indications.is_empty() {
        // TS 29.328 section 6.1.1: repository data needs a Service-Indication.
        let e = req.error(DecodeError::missing(&dict::SERVICE_INDICATION));
        return Action::Answer(decode_error_answer(local, req, &e));
    }
    if !udr
        .service_indications
        .iter()
        .any(|s| s.as_ref() == IPTV_SERVICE_INDICATION)
    {
        return Action::Answer(uda_outcome(
            local,
            &udr,
            req,
            experimental_outcome(experimental::DIAMETER_USER_DATA_NOT_AVAILABLE),
        ));
    }
    if udr.user_identity.public_identity.is_none() {
        // Subscribers are kept by public identity; an MSISDN alone names nobody here.
        return Action::Answer(uda_outcome(
            local,
            &udr,
            req,
            experimental_outcome(experimental::DIAMETER_ERROR_USER_UNKNOWN),
        ));
    }
    Action::Udr(udr)
}

/// A 3GPP (vendor 10415) Experimental-Result.
#[must_use]
pub fn experimental_outcome(code: ResultCode) -> Outcome {
    Outcome::Experimental(ExperimentalResult {
        vendor_id: VendorId::TGPP,
        code,
    })
}

/// The Sh view of a stored profile.
#[must_use]
pub fn iptv_profile(p: &Profile) -> IptvProfile {
    IptvProfile {
        sequence_number: p.sequence_number(),
        packages: p.packages.clone(),
        max_streams: p.max_streams,
        parental_level: p.parental_level,
    }
}

/// UDA 2001 carrying the profile.
#[must_use]
pub fn uda_profile(local: &LocalIdentity, udr: &Udr, req: &Message, p: &Profile) -> Message {
    Uda {
        session_id: udr.session_id.clone(),
        outcome: Outcome::SUCCESS,
        origin_host: local.origin_host.clone(),
        origin_realm: local.origin_realm.clone(),
        user_data: Some(Bytes::from(iptv_profile(p).to_user_data())),
    }
    .answer(req)
}

/// UDA with `outcome` and no User-Data (E bit for a protocol error).
#[must_use]
pub fn uda_outcome(local: &LocalIdentity, udr: &Udr, req: &Message, outcome: Outcome) -> Message {
    let mut m = Uda {
        session_id: udr.session_id.clone(),
        outcome,
        origin_host: local.origin_host.clone(),
        origin_realm: local.origin_realm.clone(),
        user_data: None,
    }
    .answer(req);
    if let Outcome::Result(rc) = outcome {
        if rc.is_protocol_error() {
            m.flags = m.flags | CommandFlags::ERROR;
        }
    }
    m
}

/// ACA echoing the record, with `rc` (2001 once stored).
#[must_use]
pub fn aca(local: &LocalIdentity, acr: &Acr, req: &Message, rc: ResultCode) -> Message {
    let mut a = Aca::success(acr, &*local.origin_host, &*local.origin_realm);
    a.result_code = rc;
    a.answer(req)
}

/// The stored name of an Accounting-Record-Type.
#[must_use]
pub fn record_type_name(t: RecordType) -> String {
    match t {
        RecordType::EVENT => "EVENT".into(),
        RecordType::START => "START".into(),
        RecordType::INTERIM => "INTERIM".into(),
        RecordType::STOP => "STOP".into(),
        RecordType(n) => format!("TYPE-{n}"),
    }
}

/// The CDR row for an ACR received at `received_ms`.
#[must_use]
pub fn cdr_from_acr(acr: &Acr, retransmit: bool, received_ms: i64) -> Cdr {
    let ims = acr.ims.as_ref();
    Cdr {
        session_id: acr.session_id.clone(),
        record_number: acr.record_number,
        record_type: record_type_name(acr.record_type),
        origin_host: acr.origin_host.clone(),
        origin_realm: acr.origin_realm.clone(),
        subscriber: ims
            .and_then(|i| i.calling_party_addresses.first().cloned())
            .or_else(|| acr.user_name.clone()),
        channel: ims.and_then(|i| i.channel().map(str::to_owned)),
        called_party: ims.and_then(|i| i.called_party_address.clone()),
        user_session_id: ims.and_then(|i| i.user_session_id.clone()),
        charging_id: ims.and_then(|i| i.ims_charging_identifier.clone()),
        event_ms: acr.event_timestamp.map(|t| {
            i64::try_from(t.to_unix())
                .unwrap_or(i64::MAX)
                .saturating_mul(1000)
        }),
        received_ms,
        duration_secs: ims
            .and_then(|i| i.duration_secs())
            .map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
        cause_code: ims.and_then(|i| i.cause_code).map(i64::from),
        retransmitted: retransmit,
    }
}

/// A PNR carrying the changed profile to the AS `dest_host` (TS 29.329 section 6.1.7).
#[must_use]
pub fn pnr(
    local: &LocalIdentity,
    session_id: String,
    dest_host: &str,
    dest_realm: &str,
    p: &Profile,
) -> Message {
    Pnr {
        session_id,
        origin_host: local.origin_host.clone(),
        origin_realm: local.origin_realm.clone(),
        destination_host: dest_host.to_owned(),
        destination_realm: dest_realm.to_owned(),
        user_identity: UserIdentity::public(p.identity.clone()),
        user_data: Bytes::from(iptv_profile(p).to_user_data()),
    }
    .to_message()
}

/// The Origin-Host and Origin-Realm of a request (to learn where the AS peers live).
#[must_use]
pub fn origin(req: &Message) -> Option<(String, String)> {
    let h = req.find(&dict::ORIGIN_HOST)?.as_str().ok()?;
    let r = req.find(&dict::ORIGIN_REALM)?.as_str().ok()?;
    Some((h.to_owned(), r.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::base::VendorSpecificApplicationId;
    use crate::diameter::rf::ImsInformation;
    use crate::diameter::sh::NO_STATE_MAINTAINED;
    use crate::diameter::Time;

    fn local() -> LocalIdentity {
        LocalIdentity {
            origin_host: "aaa.iptv.example".into(),
            origin_realm: "iptv.example".into(),
        }
    }

    fn udr(identity: &str) -> Message {
        let mut m = Udr::iptv_profile(
            "as1;1;1",
            "as1.iptv.example",
            "iptv.example",
            "iptv.example",
            identity,
        )
        .to_message();
        m.hop_by_hop = 7;
        m.end_to_end = 9;
        m
    }

    fn profile() -> Profile {
        Profile {
            identity: "sip:alice@iptv.example".into(),
            packages: vec!["basic".into(), "sports".into()],
            max_streams: 2,
            parental_level: 12,
            version: 3,
            updated_ms: 0,
        }
    }

    #[test]
    fn udr_then_uda_with_the_profile() {
        let req = udr("sip:alice@iptv.example");
        let Action::Udr(u) = classify(&local(), &req) else {
            panic!("not a UDR action");
        };
        assert_eq!(
            u.user_identity.public_identity.as_deref(),
            Some("sip:alice@iptv.example")
        );
        let ans = uda_profile(&local(), &u, &req, &profile());
        assert_eq!((ans.hop_by_hop, ans.end_to_end), (7, 9));
        let uda = Uda::from_message(&Message::decode(&ans.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(uda.outcome, Outcome::SUCCESS);
        let p = IptvProfile::from_user_data(&uda.user_data.unwrap()).unwrap();
        assert_eq!(p.packages, ["basic", "sports"]);
        assert_eq!(
            (p.max_streams, p.parental_level, p.sequence_number),
            (2, 12, 3)
        );
    }

    #[test]
    fn udr_without_user_identity_is_5005() {
        let mut req = udr("sip:alice@iptv.example");
        req.avps.retain(|a| a.code != dict::USER_IDENTITY.code);
        let Action::Answer(a) = classify(&local(), &req) else {
            panic!("expected an immediate answer");
        };
        assert_eq!(a.result_code(), Some(ResultCode::DIAMETER_MISSING_AVP));
        let failed = a.find(&dict::FAILED_AVP).expect("Failed-AVP");
        assert!(failed
            .as_grouped()
            .unwrap()
            .iter()
            .any(|x| x.code == dict::USER_IDENTITY.code));
        assert!(!a.is_request());
    }

    #[test]
    fn udr_other_references_and_indications() {
        let mut u = Udr::iptv_profile("s;1", "h", "r", "r", "sip:a@x");
        u.data_references = vec![DataReference::MSISDN];
        let Action::Answer(a) = classify(&local(), &u.to_message()) else {
            panic!()
        };
        let uda = Uda::from_message(&a).unwrap();
        assert_eq!(
            uda.outcome,
            experimental_outcome(experimental::DIAMETER_ERROR_USER_DATA_CANNOT_BE_READ)
        );
        u.data_references = vec![DataReference::REPOSITORY_DATA];
        u.service_indications = vec![Bytes::from_static(b"OTHER")];
        let Action::Answer(a) = classify(&local(), &u.to_message()) else {
            panic!()
        };
        assert_eq!(
            Uda::from_message(&a).unwrap().outcome,
            experimental_outcome(experimental::DIAMETER_USER_DATA_NOT_AVAILABLE)
        );
        u.service_indications.clear();
        let Action::Answer(a) = classify(&local(), &u.to_message()) else {
            panic!()
        };
        assert_eq!(a.result_code(), Some(ResultCode::DIAMETER_MISSING_AVP));
    }

    #[test]
    fn unsupported_command_and_application() {
        let mut snr = Message::request(
            CommandCode::SUBSCRIBE_NOTIFICATIONS,
            ApplicationId::TGPP_SH,
            true,
        );
        snr.avps.push(Avp::utf8(&dict::SESSION_ID, "s;2"));
        snr.avps.push(VendorSpecificApplicationId::SH.to_avp());
        snr.avps.push(Avp::enumerated(
            &dict::AUTH_SESSION_STATE,
            NO_STATE_MAINTAINED,
        ));
        let Action::Answer(a) = classify(&local(), &snr) else {
            panic!()
        };
        assert_eq!(
            a.result_code(),
            Some(ResultCode::DIAMETER_COMMAND_UNSUPPORTED)
        );
        assert!(a.flags.contains(CommandFlags::ERROR));
        assert_eq!(a.session_id(), Some("s;2"));
        let ccr = Message::request(CommandCode(272), ApplicationId::CREDIT_CONTROL, true);
        let Action::Answer(a) = classify(&local(), &ccr) else {
            panic!()
        };
        assert_eq!(
            a.result_code(),
            Some(ResultCode::DIAMETER_APPLICATION_UNSUPPORTED)
        );
        assert!(a.flags.contains(CommandFlags::ERROR));
    }

    #[test]
    fn acr_to_cdr_and_aca() {
        let mut acr = Acr::new(
            "as1;9",
            "as1",
            "iptv.example",
            "iptv.example",
            RecordType::STOP,
            2,
        );
        acr.event_timestamp = Some(Time::from_unix(1_800_000_000));
        let mut ims = ImsInformation {
            calling_party_addresses: vec!["sip:alice@iptv.example".into()],
            called_party_address: Some("sip:news@iptv.example".into()),
            user_session_id: Some("call-1".into()),
            cause_code: Some(0),
            ..ImsInformation::default()
        };
        ims.set_channel("news");
        ims.set_duration_secs(95);
        acr.ims = Some(ims);
        let mut req = acr.to_message();
        req.flags = req.flags | CommandFlags::RETRANSMIT;
        let Action::Acr {
            acr: got,
            retransmit,
        } = classify(&local(), &req)
        else {
            panic!()
        };
        assert!(retransmit);
        let cdr = cdr_from_acr(&got, retransmit, 5);
        assert_eq!(cdr.record_type, "STOP");
        assert_eq!(cdr.record_number, 2);
        assert_eq!(cdr.subscriber.as_deref(), Some("sip:alice@iptv.example"));
        assert_eq!(cdr.channel.as_deref(), Some("news"));
        assert_eq!(cdr.duration_secs, Some(95));
        assert_eq!(cdr.event_ms, Some(1_800_000_000_000));
        assert!(cdr.retransmitted);
        let a =
            Aca::from_message(&aca(&local(), &got, &req, ResultCode::DIAMETER_SUCCESS)).unwrap();
        assert_eq!((a.record_type, a.record_number), (RecordType::STOP, 2));
        // An ACR without its record number: 5005.
        req.avps
            .retain(|a| a.code != dict::ACCOUNTING_RECORD_NUMBER.code);
        let Action::Answer(a) = classify(&local(), &req) else {
            panic!()
        };
        assert_eq!(a.result_code(), Some(ResultCode::DIAMETER_MISSING_AVP));
    }

    #[test]
    fn pnr_carries_the_profile() {
        let m = pnr(
            &local(),
            "aaa;1;1".into(),
            "as1",
            "iptv.example",
            &profile(),
        );
        let p = Pnr::from_message(&m).unwrap();
        assert_eq!(p.destination_host, "as1");
        assert_eq!(
            p.user_identity.public_identity.as_deref(),
            Some("sip:alice@iptv.example")
        );
        assert_eq!(
            IptvProfile::from_user_data(&p.user_data).unwrap(),
            iptv_profile(&profile())
        );
    }
}
