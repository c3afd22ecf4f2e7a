//! Every RELOAD PDU the codec emits decodes with Wireshark's RELOAD dissector without an
//! expert error or warning (`wire::pcap`: one TCP connection on a fake port, a framing-header
//! Data frame per PDU and an Ack back, `tshark -d tcp.port==PORT,reload-framing -o
//! reload.nodeid_length:16 -z expert`). PDUs: one sample of every message type
//! (`wire::examples`), the project's kinds, every error code, header variants; the ones this
//! test makes are signed for real. Skips with a message when tshark is missing, unless `CI` is
//! set (then fails). `RELOAD_TSHARK_DUMP=/tmp/tree.txt` keeps tshark's tree.

use p2psip_overlay::wire::examples::{bodies, header, messages, TEST_CERT_DER, TEST_KEY_PKCS8};
use p2psip_overlay::wire::pcap::{message_codes, tshark_check, TsharkOutcome};
use p2psip_overlay::wire::*;

/// The PDUs: every sample message, plus the project's own kinds in Store/Fetch.
fn pdus() -> Vec<Vec<u8>> {
    let signer = Signer::ecdsa_p256(TEST_KEY_PKCS8, TEST_CERT_DER).unwrap();
    let mut v: Vec<Vec<u8>> = messages().iter().map(|m| m.to_bytes().unwrap()).collect();
    assert!(v.len() >= bodies().len());
    let relay = StoredData {
        storage_time: 1_700_000_000_000,
        lifetime: 60,
        value: StoredDataValue::Dictionary {
            key: NodeId::from_u128(0x42).0.to_vec(),
            value: DataValue::new(
                ChannelRelay {
                    addr: "192.0.2.10:5004".parse().unwrap(),
                    load: 12,
                }
                .to_bytes(),
            ),
        },
        signature: Signature::unsigned(),
    };
    let dir = StoredData {
        storage_time: 1_700_000_000_001,
        lifetime: 60,
        value: StoredDataValue::Dictionary {
            key: b"news".to_vec(),
            value: DataValue::new(
                ChannelDirectoryEntry {
                    title: "News".into(),
                    sip_uri: "sip:news@iptv.example.org".into(),
                    created_ms: 1,
                }
                .to_bytes()
                .unwrap(),
            ),
        },
        signature: Signature::unsigned(),
    };
    let res = ResourceId::from_name(b"channel:news");
    let mut relay = relay;
    signer
        .sign_stored_data(&res, KindId::CHANNEL_RELAYS, &mut relay)
        .unwrap();
    let mut dir = dir;
    signer
        .sign_stored_data(&res, KindId::CHANNEL_DIRECTORY, &mut dir)
        .unwrap();
    let store = Body::StoreReq(StoreReq {
        resource: res.clone(),
        replica_number: 0,
        kind_data: vec![
            StoreKindData {
                kind: KindId::CHANNEL_RELAYS,
                generation_counter: 1,
                values: vec![relay.clone()],
            },
            StoreKindData {
                kind: KindId::CHANNEL_DIRECTORY,
                generation_counter: 1,
                values: vec![dir],
            },
        ],
    });
    let fetch = Body::FetchAns(vec![FetchKindResponse {
        kind: KindId::CHANNEL_RELAYS,
        generation: 1,
        values: vec![relay],
    }]);
    for (i, b) in [store, fetch].iter().enumerate() {
        let mut m = Message::new(
            header(0x9000 + i as u64, Destination::Resource(res.clone())),
            b,
        )
        .unwrap();
        signer.sign_message(&mut m).unwrap();
        verify_message(&m, None).unwrap();
        v.push(m.to_bytes().unwrap());
    }
    // Every error code of RFC 6940 section 6.3.3.1.
    for code in 2..=20u16 {
        let e = match ErrorCode(code) {
            ErrorCode::UNKNOWN_KIND => {
                ErrorResponse::unknown_kinds(&[KindId(0x1234), KindId::CHANNEL_RELAYS]).unwrap()
            }
            ErrorCode::GENERATION_COUNTER_TOO_LOW => {
                ErrorResponse::generation_counter_too_low(&StoreKindResponse {
                    kind: KindId::SIP_REGISTRATION,
                    generation_counter: 9,
                    replicas: vec![NodeId::from_u128(3)],
                })
                .unwrap()
            }
            c => ErrorResponse::new(c, "reason"),
        };
        let body = Body::Error(e);
        let mut m = Message::new(
            header(
                0x9200 + u64::from(code),
                Destination::Node(NodeId::from_u128(5)),
            ),
            &body,
        )
        .unwrap();
        signer.sign_message(&mut m).unwrap();
        v.push(m.to_bytes().unwrap());
    }
    // Header variants: compressed and opaque ids in the lists, a forwarding option.
    let mut f = header(0x9100, Destination::Compressed(0x8123));
    f.destination_list
        .push(Destination::OpaqueId(vec![1, 2, 3, 4]));
    f.destination_list.push(Destination::Resource(res));
    f.via_list.push(Destination::Compressed(0x8001));
    f.options.push(ForwardingOption {
        option_type: ForwardingOptionType(1),
        flags: ForwardingFlags(ForwardingFlags::RESPONSE_COPY),
        value: vec![0; 4],
    });
    let mut m = Message::new(f, &Body::PingReq(vec![])).unwrap();
    signer.sign_message(&mut m).unwrap();
    v.push(m.to_bytes().unwrap());
    v
}

#[test]
fn tshark_decodes_every_pdu_cleanly() {
    let dir = std::env::temp_dir().join(format!("reload-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pdus = pdus();
    let outcome = tshark_check(&pdus, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match outcome.unwrap() {
        TsharkOutcome::Missing => {
            assert!(std::env::var_os("CI").is_none(), "tshark is required in CI");
            eprintln!("tshark not installed: skipping the RELOAD dissector check");
        }
        TsharkOutcome::Problems(report) => panic!("tshark expert errors/warnings:\n{report}"),
        TsharkOutcome::Clean(codes) => assert_eq!(codes, message_codes(&pdus), "codes tshark saw"),
    }
}

/// The check is not vacuous: a PDU the dissector objects to (a SignerIdentity of type none,
/// which Wireshark 4.0 flags as "Unknown identity type", and a truncated body) is reported.
#[test]
fn tshark_check_reports_problems() {
    let dir = std::env::temp_dir().join(format!("reload-tshark-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = messages()[0].clone();
    m.security = SecurityBlock::unsigned();
    let mut bad = Message::new(
        header(1, Destination::Node(NodeId::from_u128(1))),
        &Body::PingReq(vec![]),
    )
    .unwrap();
    bad.contents.body = vec![0, 9]; // padding length 9, no padding
    let outcome = tshark_check(&[m.to_bytes().unwrap(), bad.to_bytes().unwrap()], &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match outcome.unwrap() {
        TsharkOutcome::Missing => {
            assert!(std::env::var_os("CI").is_none(), "tshark is required in CI");
            eprintln!("tshark not installed: skipping");
        }
        TsharkOutcome::Problems(report) => assert!(report.contains("Errors ("), "{report}"),
        TsharkOutcome::Clean(_) => panic!("tshark found nothing wrong"),
    }
}
