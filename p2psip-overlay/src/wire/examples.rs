//! One sample message of every type and field variant: the vectors of the round-trip tests,
//! the tshark check, the bench and the fuzz seeds. Deterministic (fixed ids and times).

use std::net::SocketAddr;

use super::*;

/// A self-signed ECDSA P-256 test certificate (CN alice@iptv.example.org, subjectAltName
/// `reload://000102030405060708090a0b0c0d0e0f@iptv.example.org/`), DER. Test use only.
pub const TEST_CERT_DER: &[u8] = include_bytes!("testdata/alice.cert.der");
/// The PKCS#8 private key of [`TEST_CERT_DER`]. Test use only: it is public.
pub const TEST_KEY_PKCS8: &[u8] = include_bytes!("testdata/alice.pk8.der");

/// The overlay name the samples use.
pub const OVERLAY: &str = "iptv.example.org";

fn nid(b: u8) -> NodeId {
    let mut id = [0u8; NODE_ID_LEN];
    for (i, x) in id.iter_mut().enumerate() {
        *x = b.wrapping_mul(17).wrapping_add(i as u8);
    }
    NodeId(id)
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 1)))
}

fn sig(v: &[u8]) -> Signature {
    Signature {
        algorithm: SignatureAndHashAlgorithm::ECDSA_SHA256,
        identity: SignerIdentity::CertHash {
            hash_alg: HashAlgorithm::SHA256,
            hash: vec![0xab; 32],
        },
        value: v.to_vec(),
    }
}

/// A header from `from` to `to` with transaction id `tid`.
pub fn header(tid: u64, to: Destination) -> ForwardingHeader {
    let mut h = ForwardingHeader::new(overlay_hash(OVERLAY), TransactionId(tid), vec![to]);
    h.via_list = vec![Destination::Node(nid(1))];
    h
}

/// A stored value of `kind`'s data model.
pub fn stored(model: DataModel, i: u8) -> StoredData {
    let value = match model {
        DataModel::Single => StoredDataValue::Single(DataValue::new(vec![i; 3])),
        DataModel::Array => StoredDataValue::Array {
            index: u32::from(i),
            value: DataValue::new(TEST_CERT_DER),
        },
        DataModel::Dictionary => StoredDataValue::Dictionary {
            key: nid(i).0.to_vec(),
            value: DataValue::new(
                ChannelRelay {
                    addr: addr("192.0.2.7:5004"),
                    load: 42,
                }
                .to_bytes(),
            ),
        },
    };
    StoredData {
        storage_time: 1_700_000_000_000 + u64::from(i),
        lifetime: 600,
        value,
        signature: sig(&[i; 8]),
    }
}

/// Every message body this codec knows, with variants.
pub fn bodies() -> Vec<Body> {
    let cands = vec![
        IceCandidate::host(addr("127.0.0.1:6084")),
        IceCandidate {
            addr_port: addr("[2001:db8::1]:6085"),
            overlay_link: OverlayLinkType::TLS_TCP_FH_NO_ICE,
            foundation: b"f2".to_vec(),
            priority: 100,
            cand_type: CandType::Srflx(addr("10.0.0.1:6085")),
            extensions: vec![IceExtension {
                name: b"n".to_vec(),
                value: b"v".to_vec(),
            }],
        },
        IceCandidate {
            addr_port: addr("198.51.100.1:6086"),
            overlay_link: OverlayLinkType::TLS_TCP_FH_NO_ICE,
            foundation: b"f3".to_vec(),
            priority: 1,
            cand_type: CandType::Relay(addr("[2001:db8::2]:9")),
            extensions: vec![],
        },
    ];
    let attach = AttachReqAns {
        ufrag: b"ufrag".to_vec(),
        password: b"password".to_vec(),
        role: b"passive".to_vec(),
        candidates: cands.clone(),
        send_update: true,
    };
    let app = AppAttach {
        ufrag: b"u".to_vec(),
        password: b"p".to_vec(),
        application: 5060,
        role: b"active".to_vec(),
        candidates: cands[..1].to_vec(),
    };
    let res = ResourceId::from_name(b"channel:news");
    let reg = SipRegistration::Uri("sip:alice@192.0.2.1:5060".into());
    let sip_value = StoredData {
        storage_time: 1_700_000_000_123,
        lifetime: 3600,
        value: StoredDataValue::Dictionary {
            key: nid(3).0.to_vec(),
            value: DataValue::new(reg.to_bytes().unwrap_or_default()),
        },
        signature: sig(b"sipreg"),
    };
    let route = SipRegistration::Route {
        contact_prefs: b"+sip.video".to_vec(),
        destination_list: vec![Destination::Node(nid(4))],
    };
    let route_value = StoredData {
        storage_time: 1_700_000_000_124,
        lifetime: 3600,
        value: StoredDataValue::Dictionary {
            key: nid(4).0.to_vec(),
            value: DataValue::new(route.to_bytes().unwrap_or_default()),
        },
        signature: sig(b"route"),
    };
    let tombstone = StoredData {
        storage_time: 1_700_000_000_125,
        lifetime: 0,
        value: StoredDataValue::Dictionary {
            key: nid(5).0.to_vec(),
            value: DataValue {
                exists: false,
                value: Vec::new(),
            },
        },
        signature: sig(b"del"),
    };
    let specifiers = vec![
        StoredDataSpecifier {
            kind: KindId::SIP_REGISTRATION,
            generation: 0,
            model: DataSpecifier::Dictionary(vec![]),
        },
        StoredDataSpecifier {
            kind: KindId::SIP_REGISTRATION,
            generation: 7,
            model: DataSpecifier::Dictionary(vec![nid(3).0.to_vec(), nid(4).0.to_vec()]),
        },
        StoredDataSpecifier {
            kind: KindId::CERTIFICATE_BY_NODE,
            generation: 1,
            model: DataSpecifier::Array(vec![
                ArrayRange { first: 0, last: 3 },
                ArrayRange {
                    first: 5,
                    last: 0xffff_ffff,
                },
            ]),
        },
        StoredDataSpecifier {
            kind: KindId::TURN_SERVICE,
            generation: 2,
            model: DataSpecifier::Single,
        },
    ];
    let meta = |exists: bool| MetaData {
        exists,
        value_length: 10,
        hash_algorithm: HashAlgorithm::SHA256,
        hash_value: vec![0x11; 32],
    };
    vec![
        Body::ProbeReq(vec![
            ProbeInformationType::RESPONSIBLE_SET,
            ProbeInformationType::NUM_RESOURCES,
            ProbeInformationType::UPTIME,
        ]),
        Body::ProbeAns(vec![
            ProbeInformation {
                info_type: ProbeInformationType::RESPONSIBLE_SET,
                value: 1_000_000,
            },
            ProbeInformation {
                info_type: ProbeInformationType::UPTIME,
                value: 99,
            },
        ]),
        Body::AttachReq(attach.clone()),
        Body::AttachAns(AttachReqAns {
            send_update: false,
            ..attach
        }),
        Body::StoreReq(StoreReq {
            resource: ResourceId::from_name(b"sip:alice@iptv.example.org"),
            replica_number: 0,
            kind_data: vec![StoreKindData {
                kind: KindId::SIP_REGISTRATION,
                generation_counter: 3,
                values: vec![sip_value.clone(), route_value, tombstone],
            }],
        }),
        Body::StoreReq(StoreReq {
            resource: res.clone(),
            replica_number: 2,
            kind_data: vec![
                StoreKindData {
                    kind: KindId::TURN_SERVICE,
                    generation_counter: 0,
                    values: vec![stored(DataModel::Single, 1)],
                },
                StoreKindData {
                    kind: KindId::CERTIFICATE_BY_USER,
                    generation_counter: 1,
                    values: vec![stored(DataModel::Array, 2), stored(DataModel::Array, 3)],
                },
                StoreKindData {
                    kind: KindId::SIP_REGISTRATION,
                    generation_counter: 9,
                    values: vec![],
                },
            ],
        }),
        Body::StoreAns(vec![StoreKindResponse {
            kind: KindId::SIP_REGISTRATION,
            generation_counter: 4,
            replicas: vec![nid(7), nid(8)],
        }]),
        Body::FetchReq(FetchReq {
            resource: res.clone(),
            specifiers: specifiers.clone(),
        }),
        Body::FetchAns(vec![
            FetchKindResponse {
                kind: KindId::SIP_REGISTRATION,
                generation: 4,
                values: vec![sip_value],
            },
            FetchKindResponse {
                kind: KindId::CERTIFICATE_BY_NODE,
                generation: 1,
                values: vec![stored(DataModel::Array, 9)],
            },
            FetchKindResponse {
                kind: KindId::TURN_SERVICE,
                generation: 0,
                values: vec![],
            },
        ]),
        Body::StatReq(FetchReq {
            resource: res.clone(),
            specifiers,
        }),
        Body::StatAns(vec![
            StatKindResponse {
                kind: KindId::SIP_REGISTRATION,
                generation: 4,
                values: vec![StoredMetaData {
                    storage_time: 5,
                    lifetime: 6,
                    metadata: MetaDataValue::Dictionary {
                        key: nid(3).0.to_vec(),
                        value: meta(true),
                    },
                }],
            },
            StatKindResponse {
                kind: KindId::CERTIFICATE_BY_NODE,
                generation: 1,
                values: vec![StoredMetaData {
                    storage_time: 5,
                    lifetime: 6,
                    metadata: MetaDataValue::Array {
                        index: 3,
                        value: meta(false),
                    },
                }],
            },
            StatKindResponse {
                kind: KindId::TURN_SERVICE,
                generation: 1,
                values: vec![StoredMetaData {
                    storage_time: 5,
                    lifetime: 6,
                    metadata: MetaDataValue::Single(meta(true)),
                }],
            },
        ]),
        Body::FindReq(FindReq {
            resource: res.clone(),
            kinds: vec![KindId::SIP_REGISTRATION, KindId::TURN_SERVICE],
        }),
        Body::FindAns(vec![
            FindKindData {
                kind: KindId::SIP_REGISTRATION,
                closest: res,
            },
            FindKindData {
                kind: KindId::TURN_SERVICE,
                closest: ResourceId::default(),
            },
        ]),
        Body::JoinReq(JoinReq {
            joining_peer_id: nid(10),
            overlay_specific_data: Vec::new(),
        }),
        Body::JoinAns(JoinAns::default()),
        Body::LeaveReq(LeaveReq {
            leaving_peer_id: nid(11),
            overlay_specific_data: ChordLeaveData::FromSucc(vec![nid(12), nid(13)])
                .to_bytes()
                .unwrap_or_default(),
        }),
        Body::LeaveReq(LeaveReq {
            leaving_peer_id: nid(11),
            overlay_specific_data: ChordLeaveData::FromPred(vec![nid(14)])
                .to_bytes()
                .unwrap_or_default(),
        }),
        Body::LeaveAns,
        Body::UpdateReq(ChordUpdate {
            uptime: 10,
            kind: ChordUpdateKind::PeerReady,
        }),
        Body::UpdateReq(ChordUpdate {
            uptime: 11,
            kind: ChordUpdateKind::Neighbors {
                predecessors: vec![nid(20), nid(21)],
                successors: vec![nid(22)],
            },
        }),
        Body::UpdateReq(ChordUpdate {
            uptime: 12,
            kind: ChordUpdateKind::Full {
                predecessors: vec![nid(20)],
                successors: vec![nid(22), nid(23)],
                fingers: vec![nid(24), nid(25), nid(26)],
            },
        }),
        Body::UpdateAns,
        Body::RouteQueryReq(RouteQueryReq {
            send_update: false,
            destination: Destination::Resource(ResourceId::from_name(b"x")),
            overlay_specific_data: Vec::new(),
        }),
        Body::RouteQueryAns(nid(30)),
        Body::PingReq(Vec::new()),
        Body::PingReq(vec![0; 16]),
        Body::PingAns(PingAns {
            response_id: 0x0102_0304_0506_0708,
            time: 1_700_000_000_000,
        }),
        Body::AppAttachReq(app.clone()),
        Body::AppAttachAns(app),
        Body::ConfigUpdateReq(ConfigUpdateReq::Config(
            b"<overlay><configuration instance-name=\"iptv.example.org\" sequence=\"2\"/></overlay>"
                .to_vec(),
        )),
        Body::ConfigUpdateReq(ConfigUpdateReq::Kinds(vec![
            b"<kind name=\"CHANNEL-RELAYS\"/>".to_vec()
        ])),
        Body::ConfigUpdateAns,
        Body::Error(ErrorResponse::new(ErrorCode::NOT_FOUND, "no such resource")),
        Body::Error(ErrorResponse::new(ErrorCode::TTL_EXCEEDED, "")),
        Body::Error(ErrorResponse::new(ErrorCode::INVALID_MESSAGE, "bad length")),
    ]
}

/// One message per body of [`bodies`], with header variants spread over them: compressed
/// and opaque destinations, forwarding options, extensions, certificates, signer identities.
pub fn messages() -> Vec<Message> {
    let mut out = Vec::new();
    for (i, b) in bodies().into_iter().enumerate() {
        let i = i as u64;
        let to = match i % 3 {
            0 => Destination::Node(nid(40)),
            1 => Destination::Resource(ResourceId::from_name(b"channel:news")),
            _ => Destination::Node(nid(41)),
        };
        let mut f = header(0x1000 + i, to);
        let mut security = SecurityBlock {
            certificates: Vec::new(),
            signature: sig(&[0x33; 70]),
        };
        match i % 5 {
            1 => {
                f.via_list.push(Destination::Node(nid(2)));
                f.destination_list.push(Destination::Node(nid(42)));
                f.ttl = 3;
            }
            2 => {
                security = SecurityBlock {
                    certificates: vec![GenericCertificate {
                        cert_type: CertificateType::X509,
                        certificate: TEST_CERT_DER.to_vec(),
                    }],
                    signature: sig(&[0x5a; 64]),
                };
            }
            3 => {
                security.signature = Signature {
                    algorithm: SignatureAndHashAlgorithm::RSA_SHA256,
                    identity: SignerIdentity::CertHashNodeId {
                        hash_alg: HashAlgorithm::SHA256,
                        hash: vec![0xcd; 32],
                    },
                    value: vec![1; 16],
                };
                f.max_response_length = 65_535;
                f.configuration_sequence = 2;
            }
            _ => {}
        }
        let mut contents = match MessageContents::from_body(&b) {
            Ok(c) => c,
            Err(_) => continue,
        };
        if i % 7 == 4 {
            contents.extensions.push(MessageExtension {
                ext_type: MessageExtensionType(0x8001),
                critical: false,
                contents: b"ext".to_vec(),
            });
        }
        out.push(Message {
            forwarding: f,
            contents,
            security,
        });
    }
    out
}

/// Header variants that tools may not all show (compressed and opaque ids, options,
/// fragments), for the codec's own round-trip tests.
pub fn exotic_messages() -> Vec<Message> {
    let mut f = header(0x2000, Destination::Compressed(0x8123));
    f.destination_list
        .push(Destination::OpaqueId(vec![1, 2, 3]));
    f.destination_list.push(Destination::Node(nid(50)));
    f.via_list.push(Destination::Unknown {
        dest_type: 9,
        data: vec![7, 7],
    });
    f.options.push(ForwardingOption {
        option_type: ForwardingOptionType(1),
        flags: ForwardingFlags(ForwardingFlags::FORWARD_CRITICAL | ForwardingFlags::RESPONSE_COPY),
        value: vec![9; 5],
    });
    f.fragment = Fragment::new(0, false);
    let mut m = Message {
        forwarding: f,
        contents: MessageContents {
            code: MessageCode(0x4243),
            body: b"opaque body".to_vec(),
            extensions: vec![MessageExtension {
                ext_type: MessageExtensionType(1),
                critical: true,
                contents: vec![],
            }],
        },
        security: SecurityBlock::unsigned(),
    };
    let mut n = m.clone();
    n.forwarding.fragment = Fragment::new(1234, true);
    n.security.signature.identity = SignerIdentity::Unknown {
        identity_type: 77,
        value: vec![1, 2],
    };
    m.security.certificates.push(GenericCertificate {
        cert_type: CertificateType(5),
        certificate: vec![],
    });
    vec![m, n]
}

/// The fuzz property (used by `fuzz/fuzz_targets/reload_decode.rs` and the replay test):
/// whatever `data` is, decoding never panics, and whatever decodes re-encodes to bytes that
/// decode to an equal value and encode to the same bytes again. Covers whole messages,
/// typed bodies (the first two bytes of `data` pick the code), the kinds' values and the
/// link framing. Panics when the codec breaks the property.
pub fn check_decode_roundtrip(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let enc = m.to_bytes().expect("a decoded message re-encodes");
        let again = Message::decode(&enc).expect("the re-encoding decodes");
        assert_eq!(again, m, "message round trip");
        assert_eq!(
            again.to_bytes().ok(),
            Some(enc),
            "message encoding is stable"
        );
        if let Ok(b) = m.body() {
            check_body(&b);
        }
        let _ = m.signature_input();
        let _ = m.forwarding.validate(&[]);
        let _ = m.contents.check_extensions(&[]);
        let _ = m
            .forwarding
            .response_header(DEFAULT_TTL)
            .encode_with_payload(&[], &mut Vec::new());
    }
    if let Ok((h, at)) = ForwardingHeader::decode_prefix(data) {
        let mut out = Vec::new();
        h.encode_with_payload(&data[at..], &mut out)
            .expect("a decoded header re-encodes");
        assert_eq!(out, data, "header round trip");
    }
    if let [a, b, rest @ ..] = data {
        let code = MessageCode(u16::from_be_bytes([*a, *b]));
        if let Ok(body) = Body::decode(code, rest) {
            assert_eq!(body.code(), code, "body code");
            check_body(&body);
        }
        let all = |_: KindId| Some(DataModel::Array);
        if let Ok(body) = Body::decode_with(code, rest, &all) {
            let enc = body.to_bytes().expect("a decoded body re-encodes");
            assert_eq!(enc, rest, "body round trip (array kinds)");
        }
    }
    if let Ok(r) = SipRegistration::from_bytes(data) {
        assert_eq!(
            r.to_bytes().ok().as_deref(),
            Some(data),
            "SipRegistration round trip"
        );
    }
    if let Ok(r) = ChannelRelay::from_bytes(data) {
        assert_eq!(r.to_bytes(), data, "ChannelRelay round trip");
    }
    if let Ok(r) = ChannelDirectoryEntry::from_bytes(data) {
        assert_eq!(
            r.to_bytes().ok().as_deref(),
            Some(data),
            "directory round trip"
        );
    }
    if let Ok(r) = ChordLeaveData::from_bytes(data) {
        assert_eq!(
            r.to_bytes().ok().as_deref(),
            Some(data),
            "leave data round trip"
        );
    }
    let mut d = FrameDecoder::new(1 << 16);
    d.push(data);
    let mut used = 0;
    for _ in 0..64 {
        match d.next_frame() {
            Ok(Some(f)) => {
                let enc = f.to_bytes().expect("a decoded frame re-encodes");
                assert_eq!(enc, &data[used..used + enc.len()], "frame round trip");
                used += enc.len();
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(d.buffered(), data.len() - used, "decoder accounting");
}

fn check_body(b: &Body) {
    let enc = b.to_bytes().expect("a decoded body re-encodes");
    let again = Body::decode(b.code(), &enc).expect("the body re-encoding decodes");
    assert_eq!(&again, b, "body round trip");
    if let Body::Error(e) = b {
        if let Ok(k) = e.info_unknown_kinds() {
            let back = ErrorResponse::unknown_kinds(&k).expect("kinds re-encode");
            assert_eq!(back.info, e.info, "unknown kinds round trip");
        }
        if let Ok(r) = e.info_store_kind_response() {
            let back = ErrorResponse::generation_counter_too_low(&r).expect("re-encodes");
            assert_eq!(back.info, e.info, "store kind response round trip");
        }
    }
}

/// Seed inputs for the fuzzer: every sample message, framed streams, bodies with their code.
pub fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (i, m) in messages()
        .iter()
        .chain(exotic_messages().iter())
        .enumerate()
    {
        let Ok(bytes) = m.to_bytes() else { continue };
        let name = m.contents.code.name().unwrap_or("unknown");
        let mut framed = Vec::new();
        if encode_data(i as u32, &bytes, &mut framed).is_ok() {
            let _ = FramedMessage::Ack {
                ack_sequence: i as u32,
                received: 3,
            }
            .encode(&mut framed);
            v.push((format!("f{i:02}_{name}"), framed));
        }
        v.push((format!("m{i:02}_{name}"), bytes));
        let mut body = m.contents.code.0.to_be_bytes().to_vec();
        body.extend_from_slice(&m.contents.body);
        v.push((format!("b{i:02}_{name}"), body));
    }
    v
}
