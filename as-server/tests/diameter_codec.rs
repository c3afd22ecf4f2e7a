//! Diameter codec tests (RFC 6733): hand-written wire vectors, round trips of every typed
//! message (base, Sh, Rf), every data type, unknown AVPs kept byte for byte, M-bit handling,
//! and hostile input (bad lengths, deep nesting, huge lengths) getting an error with the right
//! Result-Code and Failed-AVP, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use as_server::diameter::base::{
    Capabilities, Cea, Cer, DisconnectCause, Dpa, Dpr, Dwa, Dwr, ExperimentalResult, Outcome,
    VendorSpecificApplicationId,
};
use as_server::diameter::dict::{self, AvpType};
use as_server::diameter::rf::{Aca, Acr, ImsInformation, RecordType, TimeStamps};
use as_server::diameter::sh::{
    experimental, DataReference, IptvProfile, Pna, Pnr, ProfileError, Uda, Udr, UserIdentity,
};
use as_server::diameter::{
    frame_len, Address, ApplicationId, Avp, AvpCode, AvpFlags, AvpList, AvpValue, CommandCode,
    CommandFlags, DecodeError, DecodeErrorKind, FrameError, Message, MessageRef, ResultCode, Time,
    VendorId, DEFAULT_MAX_MESSAGE_SIZE, MAX_GROUP_DEPTH,
};
use bytes::Bytes;

/// Hex with whitespace and `"text"` runs (ASCII copied verbatim) to bytes.
fn hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in s.split('"').enumerate() {
        if i % 2 == 1 {
            out.extend_from_slice(part.as_bytes());
        } else {
            let digits: Vec<u8> = part.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            assert!(digits.len() % 2 == 0, "odd hex run {part:?}");
            for pair in digits.chunks(2) {
                let s = std::str::from_utf8(pair).unwrap();
                out.push(u8::from_str_radix(s, 16).unwrap());
            }
        }
    }
    out
}

/// Fix the Message Length field after editing bytes.
fn set_len(b: &mut [u8]) {
    let len = b.len() as u32;
    b[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Encode, decode, compare; framing and the borrowed view agree; M bits pass.
fn rt(m: &Message) -> (Message, Vec<u8>) {
    let bytes = m.to_vec().expect("encodes");
    assert_eq!(bytes.len(), m.wire_len());
    assert_eq!(bytes.len() % 4, 0);
    let back = Message::decode(&bytes).expect("decodes");
    assert_eq!(&back, m);
    assert_eq!(back.to_vec().unwrap(), bytes, "stable encoding");
    back.check_avps()
        .expect("our messages pass the M-bit check");
    assert_eq!(
        frame_len(&bytes, DEFAULT_MAX_MESSAGE_SIZE),
        Ok(Some(bytes.len()))
    );
    let r = MessageRef::parse(&bytes).unwrap();
    assert_eq!(r.avps().filter(|a| a.is_ok()).count(), m.avps.len());
    (back, bytes)
}

const DWR_HEX: &str = r#"
    01 00 00 4c  80 00 01 18  00 00 00 00  11 22 33 44  55 66 77 88
    00 00 01 08  40 00 00 16  "as.example.org" 00 00
    00 00 01 28  40 00 00 13  "example.org" 00
    00 00 01 16  40 00 00 0c  00 00 00 07
"#;

#[test]
fn dwr_matches_hand_written_bytes() {
    let mut m = Dwr {
        origin_host: "as.example.org".into(),
        origin_realm: "example.org".into(),
        origin_state_id: Some(7),
    }
    .to_message();
    m.hop_by_hop = 0x1122_3344;
    m.end_to_end = 0x5566_7788;
    let (back, bytes) = rt(&m);
    assert_eq!(bytes, hex(DWR_HEX));
    let dwr = Dwr::from_message(&back).unwrap();
    assert_eq!(dwr.origin_state_id, Some(7));
    assert_eq!(frame_len(&bytes[..40], 4096), Ok(None));
    assert_eq!(frame_len(&bytes[..3], 4096), Ok(None));
    let r = MessageRef::parse(&bytes).unwrap();
    let v: Vec<(u32, Option<u32>)> = r
        .avps()
        .map(|a| {
            let a = a.unwrap();
            (a.code.0, a.u32())
        })
        .collect();
    assert_eq!(v, vec![(264, None), (296, None), (278, Some(7))]);
}

#[test]
fn two_messages_back_to_back_frame() {
    let mut stream = hex(DWR_HEX);
    stream.extend_from_slice(&hex(DWR_HEX));
    let n = frame_len(&stream, 4096).unwrap().unwrap();
    assert_eq!(n, 76);
    assert_eq!(frame_len(&stream[n..], 4096), Ok(Some(76)));
    assert_eq!(frame_len(&stream[n..n + 10], 4096), Ok(None));
}

#[test]
fn unknown_avps_kept_verbatim() {
    // A vendor AVP nobody knows (vendor 99, code 4242, 5 data bytes, no M bit, reserved flag
    // bit 0x01 set) and an IETF one (code 9999) with odd padding bytes.
    let mut bytes = hex(DWR_HEX);
    bytes.extend_from_slice(&hex(
        r#"00 00 10 92  81 00 00 11  00 00 00 63  "hello" 00 00 00"#,
    ));
    bytes.extend_from_slice(&hex(r#"00 00 27 0f  00 00 00 0a  ab cd 00 00"#));
    set_len(&mut bytes);
    let m = Message::decode(&bytes).unwrap();
    let a = &m.avps[3];
    assert_eq!((a.code, a.vendor), (AvpCode(4242), VendorId(99)));
    assert_eq!(a.flags, AvpFlags(0x81));
    assert_eq!(a.value, AvpValue::Raw(Bytes::from_static(b"hello")));
    assert_eq!(
        m.avps[4].value,
        AvpValue::Raw(Bytes::from_static(&[0xab, 0xcd]))
    );
    assert_eq!(m.to_vec().unwrap(), bytes, "byte-exact re-encoding");
    m.check_avps().expect("unknown AVPs without M pass");
    assert!(
        Dwr::from_message(&m).is_ok(),
        "typed parser ignores * [ AVP ]"
    );

    // An unknown AVP inside a known group survives too.
    let vsai = Avp::grouped(
        &dict::VENDOR_SPECIFIC_APPLICATION_ID,
        vec![
            Avp::u32(&dict::VENDOR_ID, 10415),
            Avp {
                code: AvpCode(77),
                flags: AvpFlags::EMPTY,
                vendor: VendorId::IETF,
                value: AvpValue::Raw(Bytes::from_static(b"xyz")),
            },
            Avp::u32(&dict::AUTH_APPLICATION_ID, 16_777_217),
        ],
    );
    let mut m = Message::request(CommandCode(99), ApplicationId::TGPP_SH, true);
    m.avps.push(vsai);
    let (back, _) = rt(&m);
    assert_eq!(
        VendorSpecificApplicationId::parse(&back.avps[0]).unwrap(),
        VendorSpecificApplicationId::SH
    );
}

fn caps() -> Capabilities {
    Capabilities {
        origin_host: "as1.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
        host_ip_addresses: vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
        ],
        vendor_id: VendorId(0),
        product_name: "iptv-as".into(),
        origin_state_id: Some(1_700_000_000),
        supported_vendor_ids: vec![VendorId::TGPP],
        auth_application_ids: vec![],
        inband_security_ids: vec![0],
        acct_application_ids: vec![ApplicationId::BASE_ACCOUNTING],
        vendor_specific_application_ids: vec![VendorSpecificApplicationId::SH],
        firmware_revision: Some(1),
    }
}

#[test]
fn cer_cea_round_trip() {
    let cer = Cer {
        capabilities: caps(),
    };
    let m = cer.to_message();
    assert!(m.is_request() && !m.flags.is_proxiable());
    let (back, bytes) = rt(&m);
    assert_eq!(Cer::from_message(&back).unwrap(), cer);
    // Host-IP-Address IPv4: family 1 + 4 octets, length 14, padded to 16.
    assert!(contains(
        &bytes,
        &hex("00 00 01 01 40 00 00 0e 00 01 c0 00 02 0a 00 00")
    ));
    // Product-Name and Firmware-Revision have the M bit clear (RFC 6733 section 5.3.1).
    assert!(contains(
        &bytes,
        &hex(r#"00 00 01 0d 00 00 00 0f "iptv-as""#)
    ));
    assert!(contains(
        &bytes,
        &hex("00 00 01 0b 00 00 00 0c 00 00 00 01")
    ));
    assert!(cer.capabilities.supports(ApplicationId::TGPP_SH));
    assert!(cer.capabilities.supports(ApplicationId::BASE_ACCOUNTING));
    assert!(!cer.capabilities.supports(ApplicationId::CREDIT_CONTROL));

    let cea = Cea {
        result_code: ResultCode::DIAMETER_SUCCESS,
        error_message: None,
        capabilities: Capabilities {
            origin_host: "aaa.tv.example.org".into(),
            ..caps()
        },
    };
    let mut req = back.clone();
    req.hop_by_hop = 9;
    req.end_to_end = 10;
    let a = cea.answer(&req);
    assert_eq!((a.hop_by_hop, a.end_to_end), (9, 10));
    assert!(!a.is_request() && !a.flags.is_error());
    let (back, _) = rt(&a);
    assert_eq!(Cea::from_message(&back).unwrap(), cea);
    assert_eq!(Cea::from_message(&cea.to_message()).unwrap(), cea);

    // A refusal is a protocol error (E bit) and may be a bare answer-message.
    let mut bare = Message::answer_to(&req);
    bare.flags = bare.flags | CommandFlags::ERROR;
    bare.avps = vec![
        Avp::u32(&dict::RESULT_CODE, ResultCode::DIAMETER_UNKNOWN_PEER.0),
        Avp::identity(&dict::ORIGIN_HOST, "aaa.tv.example.org"),
        Avp::identity(&dict::ORIGIN_REALM, "tv.example.org"),
        Avp::utf8(&dict::ERROR_MESSAGE, "who are you"),
    ];
    let (back, _) = rt(&bare);
    let refused = Cea::from_message(&back).unwrap();
    assert_eq!(refused.result_code, ResultCode::DIAMETER_UNKNOWN_PEER);
    assert_eq!(refused.error_message.as_deref(), Some("who are you"));
    let e = Cea {
        result_code: ResultCode::DIAMETER_NO_COMMON_APPLICATION,
        error_message: None,
        capabilities: caps(),
    };
    assert!(
        !e.to_message().flags.is_error(),
        "5010 is not a protocol error"
    );
    // A CER without Host-IP-Address is 5005.
    let mut m = cer.to_message();
    m.avps.retain(|a| !a.is(&dict::HOST_IP_ADDRESS));
    let err = Cer::from_message(&m).unwrap_err();
    assert_eq!(err.result_code(), ResultCode::DIAMETER_MISSING_AVP);
    assert!(err.failed_avp().unwrap().is(&dict::HOST_IP_ADDRESS));
    // A CEA is not a CER.
    assert_eq!(
        Cer::from_message(&a).unwrap_err().kind(),
        DecodeErrorKind::UnexpectedCommand
    );
}

#[test]
fn dwa_dpr_dpa_round_trip() {
    let dwr = Dwr {
        origin_host: "as1.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
        origin_state_id: None,
    };
    let req = rt(&dwr.to_message()).0;
    assert_eq!(Dwr::from_message(&req).unwrap(), dwr);
    let dwa = Dwa {
        result_code: ResultCode::DIAMETER_SUCCESS,
        origin_host: "aaa.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
        error_message: Some("fine".into()),
        origin_state_id: Some(5),
    };
    let back = rt(&dwa.answer(&req)).0;
    assert_eq!(Dwa::from_message(&back).unwrap(), dwa);

    let dpr = Dpr {
        origin_host: "as1.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
        disconnect_cause: DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU,
    };
    let (req, bytes) = rt(&dpr.to_message());
    assert_eq!(
        &bytes[..8],
        &hex("01 00 00 54 80 00 01 1a"),
        "DPR header: R bit, code 282"
    );
    assert!(bytes.ends_with(&hex("00 00 01 11 40 00 00 0c 00 00 00 02")));
    assert_eq!(Dpr::from_message(&req).unwrap(), dpr);
    let dpa = Dpa {
        result_code: ResultCode::DIAMETER_SUCCESS,
        origin_host: "aaa.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
        error_message: None,
    };
    let back = rt(&dpa.answer(&req)).0;
    assert_eq!(Dpa::from_message(&back).unwrap(), dpa);
}

fn profile() -> IptvProfile {
    IptvProfile {
        sequence_number: 3,
        packages: vec!["basic".into(), "sports & news".into()],
        max_streams: 2,
        parental_level: 12,
    }
}

#[test]
fn udr_uda_round_trip() {
    let udr = Udr::iptv_profile(
        "as1.tv.example.org;1700000000;1",
        "as1.tv.example.org",
        "tv.example.org",
        "hss.example.org",
        "sip:alice@example.org",
    );
    let m = udr.to_message();
    assert!(m.flags.is_request() && m.flags.is_proxiable());
    assert_eq!(m.application, ApplicationId::TGPP_SH);
    let (back, bytes) = rt(&m);
    assert_eq!(Udr::from_message(&back).unwrap(), udr);
    assert_eq!(
        &bytes[4..12],
        &hex("c0 00 01 32 01 00 00 01"),
        "UDR 306, app Sh"
    );
    // Session-Id is the first AVP (fixed position).
    assert_eq!(&bytes[20..24], &hex("00 00 01 07"));
    // User-Identity { Public-Identity }: vendor 10415, V and M set.
    assert!(contains(
        &bytes,
        &hex(r#"00 00 02 bc c0 00 00 30 00 00 28 af
                00 00 02 59 c0 00 00 21 00 00 28 af "sip:alice@example.org" 00 00 00"#)
    ));
    // Data-Reference RepositoryData (0); Service-Indication "IPTV".
    assert!(contains(
        &bytes,
        &hex("00 00 02 bf c0 00 00 10 00 00 28 af 00 00 00 00")
    ));
    assert!(contains(
        &bytes,
        &hex(r#"00 00 02 c0 c0 00 00 10 00 00 28 af "IPTV""#)
    ));
    // Vendor-Specific-Application-Id { Vendor-Id 10415, Auth-Application-Id 16777217 }.
    assert!(contains(
        &bytes,
        &hex("00 00 01 04 40 00 00 20 00 00 01 0a 40 00 00 0c 00 00 28 af
              00 00 01 02 40 00 00 0c 01 00 00 01")
    ));

    let uda = Uda {
        session_id: udr.session_id.clone(),
        outcome: Outcome::SUCCESS,
        origin_host: "hss.example.org".into(),
        origin_realm: "example.org".into(),
        user_data: Some(Bytes::from(profile().to_user_data())),
    };
    let a = uda.answer(&back);
    assert!(!a.is_request() && a.flags.is_proxiable());
    let back = rt(&a).0;
    let got = Uda::from_message(&back).unwrap();
    assert_eq!(got, uda);
    assert_eq!(
        IptvProfile::from_user_data(got.user_data.as_ref().unwrap()).unwrap(),
        profile()
    );

    let unknown = Uda {
        outcome: Outcome::Experimental(ExperimentalResult {
            vendor_id: VendorId::TGPP,
            code: experimental::DIAMETER_ERROR_USER_UNKNOWN,
        }),
        user_data: None,
        ..uda
    };
    let (back, bytes) = rt(&unknown.to_message());
    assert_eq!(Uda::from_message(&back).unwrap(), unknown);
    assert!(!back.flags.is_error());
    assert!(contains(
        &bytes,
        &hex("00 00 01 29 40 00 00 20 00 00 01 0a 40 00 00 0c 00 00 28 af
              00 00 01 2a 40 00 00 0c 00 00 13 89")
    ));

    // MSISDN identity and several data references.
    let udr2 = Udr {
        user_identity: UserIdentity {
            public_identity: None,
            msisdn: Some(Bytes::from_static(&[0x21, 0x43, 0x65, 0xf7])),
        },
        data_references: vec![DataReference::IMS_USER_STATE, DataReference::MSISDN],
        service_indications: vec![],
        destination_host: Some("hss1.example.org".into()),
        ..udr
    };
    assert_eq!(Udr::from_message(&rt(&udr2.to_message()).0).unwrap(), udr2);
    // No Data-Reference: 5005 naming it.
    let mut m = udr2.to_message();
    m.avps.retain(|a| !a.is(&dict::DATA_REFERENCE));
    let e = Udr::from_message(&m).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::DIAMETER_MISSING_AVP);
    assert!(e.failed_avp().unwrap().is(&dict::DATA_REFERENCE));
    assert_eq!(e.session_id(), Some(udr2.session_id.as_str()));
    let ans = e.error_answer("hss.example.org", "example.org").unwrap();
    assert!(
        !ans.flags.is_error(),
        "5005 is a permanent failure, no E bit"
    );
    assert_eq!(ans.result_code(), Some(ResultCode::DIAMETER_MISSING_AVP));
    assert_eq!(ans.avps[0], Avp::utf8(&dict::SESSION_ID, &*udr2.session_id));
    let failed = ans.one(&dict::FAILED_AVP).unwrap().as_grouped().unwrap();
    assert!(failed[0].is(&dict::DATA_REFERENCE));
    rt(&ans);
}

#[test]
fn pnr_pna_round_trip() {
    let pnr = Pnr {
        session_id: "hss.example.org;1;42".into(),
        origin_host: "hss.example.org".into(),
        origin_realm: "example.org".into(),
        destination_host: "as1.tv.example.org".into(),
        destination_realm: "tv.example.org".into(),
        user_identity: UserIdentity::public("sip:alice@example.org"),
        user_data: Bytes::from(
            IptvProfile {
                max_streams: 1,
                ..profile()
            }
            .to_user_data(),
        ),
    };
    let (back, bytes) = rt(&pnr.to_message());
    assert_eq!(&bytes[4..8], &hex("c0 00 01 35"), "PNR 309");
    assert_eq!(Pnr::from_message(&back).unwrap(), pnr);
    let pna = Pna {
        session_id: pnr.session_id.clone(),
        outcome: Outcome::SUCCESS,
        origin_host: "as1.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
    };
    let back = rt(&pna.answer(&back)).0;
    assert_eq!(Pna::from_message(&back).unwrap(), pna);
    // A PNR without User-Data is 5005.
    let mut m = pnr.to_message();
    m.avps.retain(|a| !a.is(&dict::USER_DATA));
    assert_eq!(
        Pnr::from_message(&m).unwrap_err().result_code(),
        ResultCode::DIAMETER_MISSING_AVP
    );
}

fn acr(kind: RecordType, n: u32) -> Acr {
    let mut acr = Acr::new(
        "as1.tv.example.org;1700000000;7",
        "as1.tv.example.org",
        "tv.example.org",
        "cdf.example.org",
        kind,
        n,
    );
    acr.event_timestamp = Some(Time::from_unix(1_790_000_000 + u64::from(n)));
    acr.user_name = Some("alice@example.org".into());
    let mut ims = ImsInformation {
        user_session_id: Some("a84b4c76e66710@pc33.example.org".into()),
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
        ims.set_duration_secs(600);
        ims.cause_code = Some(0);
    }
    acr.ims = Some(ims);
    acr
}

#[test]
fn acr_aca_round_trip() {
    for (kind, n) in [
        (RecordType::START, 0),
        (RecordType::INTERIM, 1),
        (RecordType::STOP, 2),
        (RecordType::EVENT, 0),
    ] {
        let acr = acr(kind, n);
        let m = acr.to_message();
        assert_eq!(m.application, ApplicationId::BASE_ACCOUNTING);
        let (back, bytes) = rt(&m);
        assert_eq!(Acr::from_message(&back).unwrap(), acr);
        assert_eq!(
            &bytes[4..12],
            &hex("c0 00 01 0f 00 00 00 03"),
            "ACR 271 app 3"
        );
        // Accounting-Record-Type, Acct-Application-Id 3, Node-Functionality AS (6).
        assert!(contains(
            &bytes,
            &hex(&format!("00 00 01 e0 40 00 00 0c 00 00 00 0{}", kind.0))
        ));
        assert!(contains(
            &bytes,
            &hex("00 00 01 03 40 00 00 0c 00 00 00 03")
        ));
        assert!(contains(
            &bytes,
            &hex("00 00 03 5e c0 00 00 10 00 00 28 af 00 00 00 06")
        ));
        let ims = acr.ims.as_ref().unwrap();
        assert_eq!(ims.channel(), Some("news"));
        assert_eq!(
            ims.duration_secs(),
            (kind == RecordType::STOP).then_some(600)
        );
        let aca = Aca::success(&acr, "cdf.example.org", "example.org");
        let back = rt(&aca.answer(&back)).0;
        assert_eq!(Aca::from_message(&back).unwrap(), aca);
    }
    // An ACR naming another accounting application is refused with 5004.
    let mut m = acr(RecordType::START, 0).to_message();
    for a in &mut m.avps {
        if a.is(&dict::ACCT_APPLICATION_ID) {
            a.value = AvpValue::Unsigned32(4);
        }
    }
    assert_eq!(
        Acr::from_message(&m).unwrap_err().result_code(),
        ResultCode::DIAMETER_INVALID_AVP_VALUE
    );
}

#[test]
fn profile_xml_reader() {
    let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- pushed by the HSS -->
<Sh-Data>
  <RepositoryData>
    <ServiceIndication>OTHER</ServiceIndication>
    <SequenceNumber>9</SequenceNumber>
    <ServiceData><Other/></ServiceData>
  </RepositoryData>
  <RepositoryData>
    <ServiceIndication> IPTV </ServiceIndication>
    <SequenceNumber>65535</SequenceNumber>
    <ServiceData>
      <IptvProfile xmlns="urn:iptv-as:profile:1" version='1'>
        <Package>kids &amp; family</Package>
        <Package><![CDATA[<premium>]]></Package>
        <Future a="b">ignored</Future>
        <MaxStreams>4</MaxStreams>
        <ParentalLevel>&#49;8</ParentalLevel>
      </IptvProfile>
    </ServiceData>
  </RepositoryData>
</Sh-Data>
"#;
    let p = IptvProfile::from_user_data(doc.as_bytes()).unwrap();
    assert_eq!(
        p,
        IptvProfile {
            sequence_number: 65535,
            packages: vec!["kids & family".into(), "<premium>".into()],
            max_streams: 4,
            parental_level: 18,
        }
    );
    assert_eq!(
        IptvProfile::from_user_data(p.to_user_data().as_bytes()).unwrap(),
        p
    );
    let base = profile().to_user_data();
    let bad = |s: &str| IptvProfile::from_user_data(s.as_bytes()).unwrap_err();
    assert!(matches!(
        bad(&base.replace("</MaxStreams>", "</MaxStream>")),
        ProfileError::Malformed(..)
    ));
    assert_eq!(
        bad(&base.replace("<MaxStreams>2</MaxStreams>", "")),
        ProfileError::Element("MaxStreams")
    );
    assert_eq!(
        bad(&base.replace("<MaxStreams>2", "<MaxStreams>2</MaxStreams><MaxStreams>2")),
        ProfileError::Element("MaxStreams")
    );
    assert_eq!(
        bad(&base.replace(">12<", ">19<")),
        ProfileError::Value("ParentalLevel")
    );
    assert_eq!(
        bad(&base.replace(">IPTV<", ">TV<")),
        ProfileError::NoIptvData
    );
    assert!(matches!(
        bad(&format!("{base}<x/>")),
        ProfileError::Malformed(..)
    ));
    assert!(matches!(
        bad(&base.replace("&amp;", "&bogus;")),
        ProfileError::Malformed(..)
    ));
    assert!(matches!(
        bad("<!DOCTYPE x><x/>"),
        ProfileError::Malformed(..)
    ));
    let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
    assert_eq!(bad(&deep), ProfileError::TooComplex);
    assert_eq!(
        IptvProfile::from_user_data(&[0xff, 0xfe]).unwrap_err(),
        ProfileError::NotUtf8
    );
    assert_eq!(
        IptvProfile::from_user_data(&vec![b' '; 70_000]).unwrap_err(),
        ProfileError::TooLarge
    );
    // Every prefix of a valid document is an error, never a panic.
    for i in 0..base.len() {
        if base.is_char_boundary(i) {
            assert!(IptvProfile::from_user_data(&base.as_bytes()[..i]).is_err());
        }
    }
}

#[test]
fn every_data_type() {
    let p = |ty, b: &[u8]| AvpValue::parse(ty, &Bytes::copy_from_slice(b));
    assert_eq!(
        p(AvpType::Integer32, &[0xff; 4]).unwrap(),
        AvpValue::Integer32(-1)
    );
    assert_eq!(
        p(AvpType::Integer64, &[0xff; 8]).unwrap(),
        AvpValue::Integer64(-1)
    );
    assert_eq!(
        p(AvpType::Unsigned32, &[0xff; 4]).unwrap(),
        AvpValue::Unsigned32(u32::MAX)
    );
    assert_eq!(
        p(AvpType::Unsigned64, &[1, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
        AvpValue::Unsigned64(1 << 56)
    );
    assert_eq!(
        p(AvpType::Float32, &1.5f32.to_be_bytes()).unwrap(),
        AvpValue::Float32(1.5)
    );
    assert_eq!(
        p(AvpType::Float64, &(-2.25f64).to_be_bytes()).unwrap(),
        AvpValue::Float64(-2.25)
    );
    // NaN equals itself (bitwise), so round trips compare equal.
    let nan = p(AvpType::Float64, &f64::NAN.to_be_bytes()).unwrap();
    assert_eq!(nan, nan.clone());
    assert_eq!(
        p(AvpType::Enumerated, &[0, 0, 0, 6]).unwrap(),
        AvpValue::Enumerated(6)
    );
    assert_eq!(
        p(AvpType::Time, &[0x83, 0xaa, 0x7e, 0x80]).unwrap(),
        AvpValue::Time(Time(0x83aa_7e80))
    );
    for (ty, len) in [
        (AvpType::Integer32, 3),
        (AvpType::Unsigned32, 5),
        (AvpType::Integer64, 4),
        (AvpType::Unsigned64, 9),
        (AvpType::Float32, 8),
        (AvpType::Float64, 4),
        (AvpType::Time, 0),
        (AvpType::Enumerated, 2),
    ] {
        assert_eq!(
            p(ty, &vec![0; len]).unwrap_err().kind(),
            DecodeErrorKind::InvalidAvpLength,
            "{ty:?} with {len} bytes"
        );
    }
    // Address: IPv4, IPv6, another family kept, wrong lengths refused.
    assert_eq!(
        p(AvpType::Address, &[0, 1, 10, 0, 0, 1]).unwrap(),
        AvpValue::Address(Address::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
    let mut v6 = vec![0, 2];
    v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    assert_eq!(
        p(AvpType::Address, &v6).unwrap(),
        AvpValue::Address(Address::V6(Ipv6Addr::LOCALHOST))
    );
    assert_eq!(
        p(AvpType::Address, &[0, 8, 0x12, 0x34]).unwrap(),
        AvpValue::Address(Address::Other {
            family: 8,
            bytes: Bytes::from_static(&[0x12, 0x34])
        })
    );
    for bad in [&[0u8, 1, 10, 0, 0][..], &[0, 2, 1, 2, 3, 4], &[0]] {
        assert_eq!(
            p(AvpType::Address, bad).unwrap_err().kind(),
            DecodeErrorKind::InvalidAvpLength
        );
    }
    // Text types.
    assert_eq!(
        p(AvpType::Utf8String, "zapping ✓".as_bytes()).unwrap(),
        AvpValue::Utf8String("zapping ✓".into())
    );
    assert_eq!(
        p(AvpType::Utf8String, &[0xc3, 0x28]).unwrap_err().kind(),
        DecodeErrorKind::InvalidAvpValue
    );
    assert_eq!(
        p(AvpType::DiameterIdentity, b"aaa.example.org").unwrap(),
        AvpValue::DiameterIdentity("aaa.example.org".into())
    );
    for bad in [&b""[..], b"a b", b"\xc3\xa9.example"] {
        assert_eq!(
            p(AvpType::DiameterIdentity, bad).unwrap_err().kind(),
            DecodeErrorKind::InvalidAvpValue
        );
    }
    let uri = "aaa://aaa.example.org:3868;transport=tcp;protocol=diameter";
    assert_eq!(
        p(AvpType::DiameterUri, uri.as_bytes()).unwrap(),
        AvpValue::DiameterUri(uri.into())
    );
    assert!(p(AvpType::DiameterUri, b"AAAS://x.example").is_ok());
    assert!(p(AvpType::DiameterUri, b"http://x.example").is_err());
    let rule = "permit in ip from 192.0.2.0/24 to any";
    assert_eq!(
        p(AvpType::IpFilterRule, rule.as_bytes()).unwrap(),
        AvpValue::IpFilterRule(rule.into())
    );
    assert!(p(AvpType::IpFilterRule, b"permit\tin").is_err());
    assert_eq!(
        p(AvpType::OctetString, &[0, 1, 2]).unwrap(),
        AvpValue::OctetString(Bytes::from_static(&[0, 1, 2]))
    );
    // Grouped: members decoded; a bad member is the Failed-AVP.
    let mut g = Vec::new();
    Avp::u32(&dict::VENDOR_ID, 10415).encode(&mut g).unwrap();
    assert_eq!(
        p(AvpType::Grouped, &g).unwrap(),
        AvpValue::Grouped(vec![Avp::u32(&dict::VENDOR_ID, 10415)])
    );
    g[7] = 13; // Vendor-Id with 5 data bytes
    g.extend_from_slice(&[0, 0, 0, 0]);
    let e = p(AvpType::Grouped, &g).unwrap_err();
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    assert!(e.failed_avp().unwrap().is(&dict::VENDOR_ID));

    // Typed values in a message round-trip through the dictionary.
    let mut m = Message::request(CommandCode(8_388_600), ApplicationId::RELAY, true);
    m.avps = vec![
        Avp::utf8(&dict::SESSION_ID, "s;1"),
        Avp::u64(&dict::ACCOUNTING_SUB_SESSION_ID, u64::MAX),
        Avp::new(&dict::REDIRECT_HOST, AvpValue::DiameterUri(uri.into())),
        Avp::new(&dict::NAS_FILTER_RULE, AvpValue::IpFilterRule(rule.into())),
        Avp::address(&dict::HOST_IP_ADDRESS, IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Avp::time(&dict::EVENT_TIMESTAMP, Time::from_unix(2_100_000_000)),
        Avp::octets(&dict::CLASS, Bytes::from_static(b"\x00\x01")),
    ];
    let (back, _) = rt(&m);
    assert_eq!(back.session_id(), Some("s;1"));
}

#[test]
fn time_wraps_in_2036() {
    assert_eq!(Time::from_unix(0), Time(2_208_988_800));
    assert_eq!(Time(2_208_988_800).to_unix(), 0);
    // 2036-02-07T06:28:16Z is NTP 2^32, which wraps to 0: era 1.
    assert_eq!(Time(0).to_unix(), 2_085_978_496);
    assert_eq!(Time::from_unix(2_085_978_496 + 10), Time(10));
    for t in [
        0u64,
        1_790_000_000,
        2_085_978_495,
        2_085_978_496,
        3_000_000_000,
    ] {
        assert_eq!(Time::from_unix(t).to_unix(), t);
    }
}

#[test]
fn m_bit_handling() {
    let base = Dwr {
        origin_host: "as1.tv.example.org".into(),
        origin_realm: "tv.example.org".into(),
        origin_state_id: None,
    }
    .to_message();
    // An unknown AVP with the M bit: decoded and kept, then 5001 from check_avps.
    let mut m = base.clone();
    m.hop_by_hop = 77;
    let unknown = Avp {
        code: AvpCode(5555),
        flags: AvpFlags::VENDOR | AvpFlags::MANDATORY,
        vendor: VendorId(4491),
        value: AvpValue::Raw(Bytes::from_static(b"?")),
    };
    m.avps.push(unknown.clone());
    let back = Message::decode(&m.to_vec().unwrap()).unwrap();
    let e = back.check_avps().unwrap_err();
    assert_eq!(e.result_code(), ResultCode::DIAMETER_AVP_UNSUPPORTED);
    assert_eq!(e.failed_avp(), Some(&unknown));
    let ans = e.error_answer("aaa.example.org", "example.org").unwrap();
    assert_eq!(ans.hop_by_hop, 77);
    assert!(!ans.flags.is_error() && !ans.is_request());
    assert_eq!(ans.code, CommandCode::DEVICE_WATCHDOG);
    assert_eq!(
        ans.one(&dict::FAILED_AVP).unwrap().as_grouped().unwrap(),
        &[unknown][..]
    );
    rt(&ans);

    // An Sh AVP with M in an Rf (application 3) message: the application does not define it.
    let mut m = acr(RecordType::START, 0).to_message();
    m.avps
        .push(Avp::octets(&dict::USER_DATA, Bytes::from_static(b"x")));
    let e = Message::decode(&m.to_vec().unwrap())
        .unwrap()
        .check_avps()
        .unwrap_err();
    assert_eq!(e.result_code(), ResultCode::DIAMETER_AVP_UNSUPPORTED);
    assert!(e.failed_avp().unwrap().is(&dict::USER_DATA));
    // Without M it is fine.
    let last = m.avps.last_mut().unwrap();
    last.flags = last.flags.with(AvpFlags::MANDATORY, false);
    Message::decode(&m.to_vec().unwrap())
        .unwrap()
        .check_avps()
        .unwrap();
    // ... and inside a group it is found too.
    let mut m = acr(RecordType::START, 0).to_message();
    let si = m.avps.last_mut().unwrap();
    if let AvpValue::Grouped(g) = &mut si.value {
        g.push(Avp::octets(&dict::USER_DATA, Bytes::from_static(b"x")));
    }
    assert_eq!(
        m.check_avps().unwrap_err().kind(),
        DecodeErrorKind::AvpUnsupported
    );

    // Product-Name (M must not) with M: 3009, answered with the E bit.
    let mut m = Cer {
        capabilities: caps(),
    }
    .to_message();
    for a in &mut m.avps {
        if a.is(&dict::PRODUCT_NAME) {
            a.flags = a.flags | AvpFlags::MANDATORY;
        }
    }
    let e = m.check_avps().unwrap_err();
    assert_eq!(e.result_code(), ResultCode::DIAMETER_INVALID_AVP_BITS);
    let ans = e.error_answer("aaa.example.org", "example.org").unwrap();
    assert!(ans.flags.is_error(), "3xxx answers carry the E bit");
    assert_eq!(ans.code, CommandCode::CAPABILITIES_EXCHANGE);

    // Duplicate Origin-Host: 5009 naming the second one.
    let mut m = base.clone();
    m.avps
        .push(Avp::identity(&dict::ORIGIN_HOST, "dup.example.org"));
    let e = Dwr::from_message(&m).unwrap_err();
    assert_eq!(
        e.result_code(),
        ResultCode::DIAMETER_AVP_OCCURS_TOO_MANY_TIMES
    );
    assert_eq!(e.failed_avp().unwrap().as_str().unwrap(), "dup.example.org");
}

/// A request with Session-Id, then `extra` raw AVP bytes; length fixed up.
fn request_with(extra: &[u8]) -> Vec<u8> {
    let mut m = Message::request(CommandCode::USER_DATA, ApplicationId::TGPP_SH, true);
    m.hop_by_hop = 0xabcd;
    m.avps.push(Avp::utf8(&dict::SESSION_ID, "as1;1;1"));
    let mut b = m.to_vec().unwrap();
    b.extend_from_slice(extra);
    set_len(&mut b);
    b
}

fn refused(b: &[u8]) -> DecodeError {
    Message::decode(b).expect_err("hostile input must be refused")
}

#[test]
fn hostile_avp_lengths() {
    // AVP Length 4 (< 8).
    let e = refused(&request_with(&hex("00 00 01 08 40 00 00 04")));
    assert_eq!(e.result_code(), ResultCode::DIAMETER_INVALID_AVP_LENGTH);
    assert_eq!(e.failed_avp().unwrap().code, AvpCode::ORIGIN_HOST);
    assert_eq!(e.session_id(), Some("as1;1;1"), "read before the fault");
    let ans = e.error_answer("hss.example.org", "example.org").unwrap();
    assert_eq!(ans.hop_by_hop, 0xabcd);
    assert_eq!(ans.session_id(), Some("as1;1;1"));
    assert_eq!(
        ans.result_code(),
        Some(ResultCode::DIAMETER_INVALID_AVP_LENGTH)
    );
    assert!(ans.find(&dict::FAILED_AVP).is_some());
    rt(&ans);
    // V bit with length 10 (< 12).
    let e = refused(&request_with(&hex("00 00 02 bc c0 00 00 0a 00 00 28 af")));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    // V bit but only 8 bytes left.
    let e = refused(&request_with(&hex("00 00 02 bc c0 00 00 0c")));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    // Length beyond the message.
    let e = refused(&request_with(&hex("00 00 01 08 40 00 01 00 61 62 63 64")));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    // Length 16 MiB - 1 in a small message.
    let e = refused(&request_with(&hex("00 00 01 08 40 ff ff ff 61 62 63 64")));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    // 4 stray bytes: not even an AVP header.
    let e = refused(&request_with(&hex("00 00 01 08")));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    assert!(e.failed_avp().is_none());
    // An Unsigned32 with 5 data bytes; a Time with 2.
    let e = refused(&request_with(&hex(
        "00 00 01 0c 40 00 00 0d 00 00 07 d1 00 00 00 00",
    )));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    assert_eq!(e.failed_avp().unwrap().code, AvpCode::RESULT_CODE);
    let e = refused(&request_with(&hex("00 00 00 37 40 00 00 0a 00 01 00 00")));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    // A known grouped AVP whose member overruns the group.
    let e = refused(&request_with(&hex(
        "00 00 01 04 40 00 00 14 00 00 01 0a 40 00 00 10 00 00 28 af",
    )));
    assert_eq!(e.kind(), DecodeErrorKind::InvalidAvpLength);
    // Bad UTF-8 in Session-Id: 5004 naming it.
    let mut b = Message::request(CommandCode::USER_DATA, ApplicationId::TGPP_SH, true)
        .to_vec()
        .unwrap();
    b.extend_from_slice(&hex("00 00 01 07 40 00 00 0a ff fe 00 00"));
    set_len(&mut b);
    let e = refused(&b);
    assert_eq!(e.result_code(), ResultCode::DIAMETER_INVALID_AVP_VALUE);
    assert_eq!(
        e.failed_avp().unwrap().value,
        AvpValue::Raw(Bytes::from_static(&[0xff, 0xfe]))
    );
}

fn nested(depth: usize) -> Avp {
    let mut a = Avp::octets(&dict::PROXY_STATE, Bytes::from_static(b"s"));
    for _ in 0..depth {
        a = Avp::grouped(&dict::PROXY_INFO, vec![a]);
    }
    a
}

#[test]
fn hostile_nesting() {
    let mut m = Message::request(CommandCode::USER_DATA, ApplicationId::TGPP_SH, true);
    m.avps.push(nested(MAX_GROUP_DEPTH));
    rt(&m);
    m.avps[0] = nested(MAX_GROUP_DEPTH + 1);
    let e = refused(&m.to_vec().unwrap());
    assert_eq!(e.result_code(), ResultCode::DIAMETER_UNABLE_TO_COMPLY);
    // 10,000 levels of grouping (built as bytes) are refused without deep recursion.
    let depth = 10_000usize;
    let mut b = Message::request(CommandCode::USER_DATA, ApplicationId::TGPP_SH, true)
        .to_vec()
        .unwrap();
    for i in 0..depth {
        let len = ((depth - i) * 8 + 12) as u32;
        b.extend_from_slice(&hex("00 00 01 1c 40"));
        b.extend_from_slice(&len.to_be_bytes()[1..]);
    }
    b.extend_from_slice(&hex("00 00 00 21 40 00 00 0c 73 73 73 73"));
    set_len(&mut b);
    assert_eq!(refused(&b).kind(), DecodeErrorKind::NestingTooDeep);
    // The borrowed iterator does not recurse at all.
    assert_eq!(MessageRef::parse(&b).unwrap().avps().count(), 1);
}

#[test]
fn hostile_headers() {
    let good = hex(DWR_HEX);
    // Shorter than a header: 5015, nothing to answer.
    let e = refused(&good[..19]);
    assert_eq!(e.result_code(), ResultCode::DIAMETER_INVALID_MESSAGE_LENGTH);
    assert!(e.error_answer("a", "b").is_none());
    assert!(refused(&[]).header().is_none());
    // Version 2.
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(
        refused(&b).result_code(),
        ResultCode::DIAMETER_UNSUPPORTED_VERSION
    );
    assert_eq!(frame_len(&b, 4096), Err(FrameError::UnsupportedVersion(2)));
    // Length says 16 MiB - 1 / more than the bytes / less / not a multiple of 4.
    for len in [0x00ff_ffffu32, 80, 72, 74, 19, 0] {
        let mut b = good.clone();
        b[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        let e = refused(&b);
        assert_eq!(
            e.result_code(),
            ResultCode::DIAMETER_INVALID_MESSAGE_LENGTH,
            "length {len}"
        );
        assert!(e.error_answer("a", "b").is_some(), "the header was read");
    }
    // Framing: 16 MiB announced is refused by the configured maximum before any allocation;
    // a length below 20 or not a multiple of 4 is garbage; 0xFFFFFFFF is version 255.
    assert_eq!(
        frame_len(&hex("01 ff ff fc"), DEFAULT_MAX_MESSAGE_SIZE),
        Err(FrameError::TooLarge {
            len: 0x00ff_fffc,
            max: DEFAULT_MAX_MESSAGE_SIZE
        })
    );
    assert_eq!(
        frame_len(&hex("ff ff ff ff"), usize::MAX),
        Err(FrameError::UnsupportedVersion(255))
    );
    assert_eq!(
        frame_len(&hex("01 00 00 10"), 4096),
        Err(FrameError::InvalidLength(16))
    );
    assert_eq!(
        frame_len(&hex("01 00 00 16"), 4096),
        Err(FrameError::InvalidLength(22))
    );
    // E bit on a request: 3008, answered with the E bit.
    let mut b = good.clone();
    b[4] |= 0x20;
    let e = refused(&b);
    assert_eq!(e.result_code(), ResultCode::DIAMETER_INVALID_HDR_BITS);
    let ans = e.error_answer("aaa.example.org", "example.org").unwrap();
    assert!(ans.flags.is_error());
    assert_eq!((ans.hop_by_hop, ans.end_to_end), (0x1122_3344, 0x5566_7788));
    // Answers are never answered.
    let mut b = good.clone();
    b[4] = 0x00;
    b.extend_from_slice(&hex("00 00 01 08 40 00 00 04"));
    set_len(&mut b);
    assert!(refused(&b).error_answer("a", "b").is_none());
    // Reserved header bits are kept (RFC 6733 section 3: ignored by the receiver).
    let mut b = good.clone();
    b[4] |= 0x0f;
    let m = Message::decode(&b).unwrap();
    assert_eq!(m.flags.0 & 0x0f, 0x0f);
    assert_eq!(m.to_vec().unwrap(), b);
    // Every truncation of a valid message is refused, never a panic.
    for i in 0..good.len() {
        let mut t = good[..i].to_vec();
        if t.len() >= 4 {
            set_len(&mut t);
        }
        let _ = Message::decode(&t);
    }
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let mut m = Message::request(CommandCode(0x0100_0000), ApplicationId::COMMON, false);
    assert!(m.to_vec().is_err());
    m.code = CommandCode::DEVICE_WATCHDOG;
    m.avps
        .push(Avp::octets(&dict::CLASS, vec![0u8; 0x0100_0000]));
    let mut out = vec![1, 2, 3];
    assert!(m.encode(&mut out).is_err());
    assert_eq!(out, vec![1, 2, 3], "nothing half-written");
}
