//! Shared by the Diameter tests (`diameter_tshark`, `diameter_fuzz_replay`): one instance of
//! every message type the crate builds, requests followed by their answers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use as_server::diameter::base::{
    Capabilities, Cea, Cer, DisconnectCause, Dpa, Dpr, Dwa, Dwr, ExperimentalResult, Outcome,
    VendorSpecificApplicationId,
};
use as_server::diameter::dict;
use as_server::diameter::rf::{Aca, Acr, ImsInformation, RecordType, TimeStamps};
use as_server::diameter::sh::{experimental, IptvProfile, Pna, Pnr, Uda, Udr, UserIdentity};
use as_server::diameter::{
    ApplicationId, Avp, AvpCode, AvpFlags, AvpValue, CommandCode, Message, ResultCode, Time,
    VendorId,
};
use bytes::Bytes;

const HOST: &str = "as1.tv.example.org";
const REALM: &str = "tv.example.org";
const AAA: &str = "aaa.example.org";
const AAA_REALM: &str = "example.org";

fn caps(host: &str, realm: &str) -> Capabilities {
    Capabilities {
        origin_host: host.into(),
        origin_realm: realm.into(),
        host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))],
        vendor_id: VendorId(0),
        product_name: "iptv-as".into(),
        origin_state_id: Some(1),
        supported_vendor_ids: vec![VendorId::TGPP],
        auth_application_ids: vec![],
        inband_security_ids: vec![],
        acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
        vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
        firmware_revision: Some(100),
    }
}

fn acr(kind: RecordType, n: u32) -> Acr {
    let mut acr = Acr::new("as1.tv.example.org;1;7", HOST, REALM, AAA_REALM, kind, n);
    acr.event_timestamp = Some(Time::from_unix(1_790_000_000 + u64::from(n) * 60));
    let mut ims = ImsInformation {
        user_session_id: Some("call-1@192.0.2.1".into()),
        calling_party_addresses: vec!["sip:alice@example.org".into()],
        called_party_address: Some("sip:news@tv.example.org".into()),
        time_stamps: Some(TimeStamps {
            request: Some(Time::from_unix(1_790_000_000)),
            response: Some(Time::from_unix(1_790_000_001)),
        }),
        ims_charging_identifier: Some("icid-1".into()),
        ..ImsInformation::default()
    };
    ims.set_channel("news");
    if kind == RecordType::STOP {
        ims.set_duration_secs(120);
        ims.cause_code = Some(0);
    }
    acr.ims = Some(ims);
    acr
}

/// Every message type the crate builds, requests followed by their answers.
pub fn messages() -> Vec<Message> {
    let mut out = Vec::new();
    let mut hbh = 0x1000;
    let mut push_req = |mut m: Message, out: &mut Vec<Message>| -> Message {
        hbh += 1;
        m.hop_by_hop = hbh;
        m.end_to_end = 0x5000_0000 + hbh;
        out.push(m.clone());
        m
    };

    let cer = push_req(
        Cer {
            capabilities: caps(HOST, REALM),
        }
        .to_message(),
        &mut out,
    );
    out.push(
        Cea {
            result_code: ResultCode::DIAMETER_SUCCESS,
            error_message: None,
            capabilities: caps(AAA, AAA_REALM),
        }
        .answer(&cer),
    );
    let cer2 = push_req(
        Cer {
            capabilities: caps(HOST, REALM),
        }
        .to_message(),
        &mut out,
    );
    out.push(
        Cea {
            result_code: ResultCode::DIAMETER_NO_COMMON_APPLICATION,
            error_message: Some("no common application".into()),
            capabilities: caps(AAA, AAA_REALM),
        }
        .answer(&cer2),
    );

    let dwr = push_req(
        Dwr {
            origin_host: HOST.into(),
            origin_realm: REALM.into(),
            origin_state_id: Some(1),
        }
        .to_message(),
        &mut out,
    );
    out.push(
        Dwa {
            result_code: ResultCode::DIAMETER_SUCCESS,
            origin_host: AAA.into(),
            origin_realm: AAA_REALM.into(),
            error_message: None,
            origin_state_id: Some(2),
        }
        .answer(&dwr),
    );

    let profile = IptvProfile {
        sequence_number: 1,
        packages: vec!["basic".into(), "sports".into()],
        max_streams: 2,
        parental_level: 12,
    };
    let udr_t = Udr::iptv_profile(
        "as1.tv.example.org;1;1",
        HOST,
        REALM,
        AAA_REALM,
        "sip:alice@example.org",
    );
    let udr = push_req(udr_t.to_message(), &mut out);
    out.push(
        Uda {
            session_id: udr_t.session_id.clone(),
            outcome: Outcome::SUCCESS,
            origin_host: AAA.into(),
            origin_realm: AAA_REALM.into(),
            user_data: Some(Bytes::from(profile.to_user_data())),
        }
        .answer(&udr),
    );
    let udr_t2 = Udr {
        session_id: "as1.tv.example.org;1;2".into(),
        user_identity: UserIdentity::public("sip:mallory@example.org"),
        ..udr_t
    };
    let udr2 = push_req(udr_t2.to_message(), &mut out);
    out.push(
        Uda {
            session_id: udr_t2.session_id.clone(),
            outcome: Outcome::Experimental(ExperimentalResult {
                vendor_id: VendorId::TGPP,
                code: experimental::DIAMETER_ERROR_USER_UNKNOWN,
            }),
            origin_host: AAA.into(),
            origin_realm: AAA_REALM.into(),
            user_data: None,
        }
        .answer(&udr2),
    );

    let pnr_t = Pnr {
        session_id: "aaa.example.org;1;9".into(),
        origin_host: AAA.into(),
        origin_realm: AAA_REALM.into(),
        destination_host: HOST.into(),
        destination_realm: REALM.into(),
        user_identity: UserIdentity::public("sip:alice@example.org"),
        user_data: Bytes::from(
            IptvProfile {
                sequence_number: 2,
                max_streams: 1,
                ..profile
            }
            .to_user_data(),
        ),
    };
    let pnr = push_req(pnr_t.to_message(), &mut out);
    out.push(
        Pna {
            session_id: pnr_t.session_id.clone(),
            outcome: Outcome::SUCCESS,
            origin_host: HOST.into(),
            origin_realm: REALM.into(),
        }
        .answer(&pnr),
    );

    for (kind, n) in [
        (RecordType::START, 0),
        (RecordType::INTERIM, 1),
        (RecordType::STOP, 2),
        (RecordType::EVENT, 0),
    ] {
        let a = acr(kind, n);
        let req = push_req(a.to_message(), &mut out);
        out.push(Aca::success(&a, AAA, AAA_REALM).answer(&req));
    }

    // Error answers built from refused requests: 5001 for a mandatory AVP we do not know
    // (Failed-AVP holds it), 5014 for a bad AVP length (zero-filled Failed-AVP).
    let mut bad = acr(RecordType::START, 0).to_message();
    // Acct-Session-Time (46, RFC 7155 NASREQ) with M: Wireshark knows it, our Rf does not.
    bad.avps.push(Avp {
        code: AvpCode(46),
        flags: AvpFlags::MANDATORY,
        vendor: VendorId::IETF,
        value: AvpValue::Raw(Bytes::from_static(&[0, 0, 0, 60])),
    });
    let bad = push_req(bad, &mut out);
    let e = bad.check_avps().unwrap_err();
    out.push(e.error_answer(AAA, AAA_REALM).unwrap());

    let dwr2 = push_req(
        Dwr {
            origin_host: HOST.into(),
            origin_realm: REALM.into(),
            origin_state_id: None,
        }
        .to_message(),
        &mut out,
    );
    let mut bytes = dwr2.to_vec().unwrap();
    // Origin-State-Id with 5 data bytes: the peer refuses it with 5014.
    bytes.extend_from_slice(&[0, 0, 1, 0x16, 0x40, 0, 0, 13, 0, 0, 0, 0, 1, 0, 0, 0]);
    let len = bytes.len() as u32;
    bytes[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let e = Message::decode(&bytes).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::DIAMETER_INVALID_AVP_LENGTH);
    out.push(e.error_answer(AAA, AAA_REALM).unwrap());

    let dpr = push_req(
        Dpr {
            origin_host: HOST.into(),
            origin_realm: REALM.into(),
            disconnect_cause: DisconnectCause::REBOOTING,
        }
        .to_message(),
        &mut out,
    );
    out.push(
        Dpa {
            result_code: ResultCode::DIAMETER_SUCCESS,
            origin_host: AAA.into(),
            origin_realm: AAA_REALM.into(),
            error_message: None,
        }
        .answer(&dpr),
    );
    // Sanity: every builder used the dictionary's flags.
    for m in &out {
        for a in &m.avps {
            if a.is(&dict::PRODUCT_NAME) {
                assert!(!a.flags.is_mandatory());
            }
        }
    }
    assert!(out.iter().any(|m| m.code == CommandCode::PUSH_NOTIFICATION));
    out
}
