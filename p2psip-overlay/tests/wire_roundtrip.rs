//! Round trips of every RELOAD message type and field variant (`wire::examples`), plus
//! hostile inputs: every truncation, lengths beyond the buffer, 0xffffffff lengths, bad
//! tokens/versions/Booleans. Decoding must fail with a typed error, never panic.

use p2psip_overlay::wire::examples::{
    bodies, exotic_messages, messages, OVERLAY, TEST_CERT_DER, TEST_KEY_PKCS8,
};
use p2psip_overlay::wire::*;

fn all() -> Vec<Message> {
    let mut v = messages();
    v.extend(exotic_messages());
    v
}

#[test]
fn every_body_round_trips() {
    let bodies = bodies();
    assert!(bodies.len() >= 30);
    for b in bodies {
        let bytes = b.to_bytes().unwrap();
        let back = Body::decode(b.code(), &bytes).unwrap_or_else(|e| panic!("{b:?}: {e}"));
        assert_eq!(back, b);
        assert_eq!(back.to_bytes().unwrap(), bytes);
    }
}

#[test]
fn every_message_round_trips() {
    let mut codes = std::collections::BTreeSet::new();
    for m in all() {
        let bytes = m.to_bytes().unwrap();
        assert_eq!(&bytes[..4], &RELO_TOKEN.to_be_bytes());
        assert_eq!(bytes[10], RELOAD_VERSION);
        assert_eq!(
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()) as usize,
            bytes.len()
        );
        let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(back, m);
        assert_eq!(back.to_bytes().unwrap(), bytes);
        if back.contents.code.name().is_some() {
            assert_eq!(back.body().unwrap().code(), back.contents.code);
        }
        codes.insert(m.contents.code.0);
    }
    // Every request and answer code of RFC 6940 plus error.
    for c in [
        1u16, 2, 3, 4, 7, 8, 9, 10, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 29, 30,
        33, 34, 0xffff,
    ] {
        assert!(codes.contains(&c), "no sample for code {c}");
    }
}

#[test]
fn known_header_bytes() {
    // A hand-built PingReq to node 00..0f, unsigned: checks the layout, not just symmetry.
    let id = NodeId(core::array::from_fn(|i| i as u8));
    let mut f = ForwardingHeader::new(
        0x0102_0304,
        TransactionId(0x1122_3344_5566_7788),
        vec![Destination::Node(id)],
    );
    f.ttl = 7;
    let m = Message::new(f, &Body::PingReq(vec![])).unwrap();
    let b = m.to_bytes().unwrap();
    let mut want = vec![
        0xd2, 0x45, 0x4c, 0x4f, 1, 2, 3, 4, 0, 0, 0x0a, 7, 0xc0, 0, 0, 0,
    ];
    want.extend_from_slice(&(b.len() as u32).to_be_bytes());
    want.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    want.extend_from_slice(&[0, 0, 0, 0]); // max_response_length
    want.extend_from_slice(&[0, 0, 0, 18, 0, 0]); // via, dest, options lengths
    want.extend_from_slice(&[1, 16]);
    want.extend_from_slice(&id.0);
    want.extend_from_slice(&[0, 23]); // ping_req
    want.extend_from_slice(&[0, 0, 0, 2, 0, 0]); // body: padding<0..2^16-1> empty
    want.extend_from_slice(&[0, 0, 0, 0]); // no extensions
    want.extend_from_slice(&[0, 0]); // no certificates
    want.extend_from_slice(&[0, 0, 3, 0, 0, 0, 0]); // none/anonymous, identity none, no value
    assert_eq!(b, want);
    assert_eq!(FIXED_HEADER_LEN, 38);
}

#[test]
fn overlay_hash_is_low_32_bits_of_sha1() {
    // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d
    assert_eq!(overlay_hash("abc"), 0x9cd0_d89d);
    assert_ne!(overlay_hash(OVERLAY), 0);
    // Resource-ID: SHA-1 truncated to 128 bits.
    assert_eq!(
        ResourceId::from_name(b"abc").as_bytes(),
        &[
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c
        ]
    );
}

#[test]
fn node_id_text_and_order() {
    let a: NodeId = "000102030405060708090a0b0c0d0e0f".parse().unwrap();
    assert_eq!(a.to_string(), "000102030405060708090a0b0c0d0e0f");
    assert!("0001".parse::<NodeId>().is_err());
    assert!("zz0102030405060708090a0b0c0d0e0f"
        .parse::<NodeId>()
        .is_err());
    assert!(NodeId::from_u128(1) < NodeId::from_u128(2));
    assert!(NodeId::from_u128(u128::MAX) == NodeId::MAX);
    assert_eq!(NodeId::from_u128(5).to_u128(), 5);
}

#[test]
fn truncated_at_every_offset_is_an_error() {
    for m in all() {
        let bytes = m.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(Message::decode(&bytes[..cut]).is_err(), "cut {cut}");
            // Even with the length field patched to the cut, the inner structure is short.
            if cut >= 20 {
                let mut b = bytes[..cut].to_vec();
                b[16..20].copy_from_slice(&(cut as u32).to_be_bytes());
                assert!(Message::decode(&b).is_err(), "patched cut {cut}");
            }
        }
        // One trailing byte is an error too.
        let mut b = bytes.clone();
        b.push(0);
        let n = b.len() as u32;
        b[16..20].copy_from_slice(&n.to_be_bytes());
        assert!(Message::decode(&b).is_err());
    }
    for b in bodies() {
        let bytes = b.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                Body::decode(b.code(), &bytes[..cut]).is_err(),
                "{b:?} cut {cut}"
            );
        }
    }
}

/// Every 1-, 2- and 4-byte window set to all ones: no panic, and a success re-encodes.
#[test]
fn huge_lengths_everywhere() {
    for m in all() {
        let bytes = m.to_bytes().unwrap();
        for w in [1usize, 2, 3, 4] {
            for at in 0..bytes.len().saturating_sub(w) {
                let mut b = bytes.clone();
                b[at..at + w].fill(0xff);
                if let Ok(d) = Message::decode(&b) {
                    let again = Message::decode(&d.to_bytes().unwrap()).unwrap();
                    assert_eq!(again, d);
                    let _ = d.body();
                }
            }
        }
        for b in bodies() {
            let bytes = b.to_bytes().unwrap();
            for at in 0..bytes.len().saturating_sub(4) {
                let mut x = bytes.clone();
                x[at..at + 4].fill(0xff);
                if let Ok(d) = Body::decode(b.code(), &x) {
                    assert_eq!(Body::decode(b.code(), &d.to_bytes().unwrap()).unwrap(), d);
                }
            }
        }
    }
}

#[test]
fn header_checks() {
    let bytes = messages()[0].to_bytes().unwrap();
    let mut b = bytes.clone();
    b[0] = 0xd3;
    assert!(matches!(Message::decode(&b), Err(WireError::BadToken(_))));
    let mut b = bytes.clone();
    b[10] = 0x01;
    assert_eq!(Message::decode(&b), Err(WireError::UnknownVersion(1)));
    let mut b = bytes.clone();
    b[12] = 0x40;
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::BadFragment(_))
    ));
    let mut b = bytes.clone();
    b[16..20].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::LengthMismatch { .. })
    ));
    // via list length beyond the buffer
    let mut b = bytes.clone();
    b[32..34].copy_from_slice(&0xffffu16.to_be_bytes());
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::LengthBeyondBuffer { .. })
    ));
    // Destination type 0
    let mut b = bytes.clone();
    b[38] = 0;
    assert!(Message::decode(&b).is_err());
}

#[test]
fn bad_booleans_and_code_points() {
    let attach = bodies()
        .into_iter()
        .find(|b| matches!(b, Body::AttachReq(_)))
        .unwrap();
    let mut bytes = attach.to_bytes().unwrap();
    *bytes.last_mut().unwrap() = 2; // send_update
    assert!(matches!(
        Body::decode(MessageCode::ATTACH_REQ, &bytes),
        Err(WireError::BadBoolean { .. })
    ));
    assert!(Body::decode(MessageCode::INVALID, &[]).is_err());
    assert_eq!(MessageCode::FETCH_REQ.to_string(), "fetch_req");
    assert_eq!(
        MessageCode::FETCH_REQ.answer(),
        Some(MessageCode::FETCH_ANS)
    );
    assert_eq!(MessageCode::ERROR.answer(), None);
    assert_eq!(MessageCode(0x7000).to_string(), "message_code(0x7000)");
    assert_eq!(ErrorCode::TTL_EXCEEDED.to_string(), "Error_TTL_Exceeded");
    assert_eq!(ErrorCode(99).to_string(), "Error(99)");
    assert!(Body::decode(MessageCode::LEAVE_ANS, &[0]).is_err());
    assert_eq!(
        Body::decode(MessageCode(0x7000), b"xyz").unwrap(),
        Body::Unknown {
            code: MessageCode(0x7000),
            body: b"xyz".to_vec()
        }
    );
}

#[test]
fn unknown_kind_is_reported() {
    let b = Body::StoreReq(StoreReq {
        resource: ResourceId::from_name(b"r"),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: KindId(0x1234),
            generation_counter: 0,
            values: vec![examples::stored(DataModel::Single, 1)],
        }],
    });
    let bytes = b.to_bytes().unwrap();
    assert_eq!(
        Body::decode(MessageCode::STORE_REQ, &bytes),
        Err(WireError::UnknownKind(0x1234))
    );
    assert_eq!(
        ErrorCode::from(&WireError::UnknownKind(0x1234)),
        ErrorCode::UNKNOWN_KIND
    );
    let models = |k: KindId| (k == KindId(0x1234)).then_some(DataModel::Single);
    assert_eq!(
        Body::decode_with(MessageCode::STORE_REQ, &bytes, &models).unwrap(),
        b
    );
}

#[test]
fn encode_refuses_what_does_not_fit() {
    assert!(ResourceId::new(vec![0; 256]).is_err());
    let b = Body::PingReq(vec![0; 70_000]);
    assert!(matches!(b.to_bytes(), Err(WireError::TooLong { .. })));
    let mut m = messages()[0].clone();
    m.forwarding.destination_list = vec![Destination::Compressed(0x0001)];
    assert!(m.to_bytes().is_err());
    let mut out = vec![1, 2, 3];
    m.forwarding.destination_list = vec![Destination::OpaqueId(vec![0; 300])];
    assert!(m.encode(&mut out).is_err());
    assert_eq!(
        out,
        vec![1, 2, 3],
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn kind_values_round_trip() {
    for r in [
        SipRegistration::Uri("sip:bob@example.org".into()),
        SipRegistration::Route {
            contact_prefs: vec![],
            destination_list: vec![
                Destination::Node(NodeId::from_u128(9)),
                Destination::Compressed(0x8001),
            ],
        },
    ] {
        let b = r.to_bytes().unwrap();
        assert_eq!(SipRegistration::from_bytes(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(SipRegistration::from_bytes(&b[..cut]).is_err());
        }
    }
    for a in ["10.1.2.3:5004", "[2001:db8::5]:6000"] {
        let c = ChannelRelay {
            addr: a.parse().unwrap(),
            load: 7,
        };
        assert_eq!(ChannelRelay::from_bytes(&c.to_bytes()).unwrap(), c);
    }
    let d = ChannelDirectoryEntry {
        title: "News 24".into(),
        sip_uri: "sip:news@iptv.example.org".into(),
        created_ms: 1,
    };
    assert_eq!(
        ChannelDirectoryEntry::from_bytes(&d.to_bytes().unwrap()).unwrap(),
        d
    );
    assert!(ChannelDirectoryEntry::from_bytes(&[0, 1, 0xff, 0, 0]).is_err());
    let leave = ChordLeaveData::FromPred(vec![NodeId::from_u128(3)]);
    assert_eq!(
        ChordLeaveData::from_bytes(&leave.to_bytes().unwrap()).unwrap(),
        leave
    );
}

#[test]
fn forwarding_rewrites_header_only() {
    let m = &messages()[7];
    let bytes = m.to_bytes().unwrap();
    let (mut h, at) = ForwardingHeader::decode_prefix(&bytes).unwrap();
    h.ttl -= 1;
    h.via_list.push(Destination::Node(NodeId::from_u128(77)));
    let mut out = Vec::new();
    h.encode_with_payload(&bytes[at..], &mut out).unwrap();
    let fwd = Message::decode(&out).unwrap();
    assert_eq!(fwd.forwarding, h);
    assert_eq!(fwd.contents, m.contents);
    assert_eq!(fwd.security, m.security);
}

#[test]
fn signature_inputs() {
    let m = &messages()[2];
    let input = m.signature_input().unwrap();
    assert_eq!(&input[..4], &m.forwarding.overlay.to_be_bytes());
    assert_eq!(&input[4..12], &m.forwarding.transaction_id.0.to_be_bytes());
    let contents = m.contents_bytes().unwrap();
    assert_eq!(&input[12..12 + contents.len()], &contents[..]);
    let mut id = Vec::new();
    m.security.signature.identity.encode(&mut id).unwrap();
    assert_eq!(&input[12 + contents.len()..], &id[..]);

    let d = examples::stored(DataModel::Dictionary, 3);
    let r = ResourceId::from_name(b"channel:news");
    let s = stored_data_signature_input(
        &r,
        KindId::CHANNEL_RELAYS,
        d.storage_time,
        &d.value,
        &d.signature.identity,
    )
    .unwrap();
    assert_eq!(&s[..16], r.as_bytes());
    assert_eq!(&s[16..20], &0xf000_0001u32.to_be_bytes());
    assert_eq!(&s[20..28], &d.storage_time.to_be_bytes());
}

#[test]
fn framing_round_trip_and_stream() {
    let msgs: Vec<Vec<u8>> = all().iter().map(|m| m.to_bytes().unwrap()).collect();
    let mut stream = Vec::new();
    let mut frames = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let f = FramedMessage::Data {
            sequence: i as u32 + 1,
            message: m.clone(),
        };
        f.encode(&mut stream).unwrap();
        frames.push(f);
        let a = FramedMessage::Ack {
            ack_sequence: i as u32 + 1,
            received: 0xffff_fffe,
        };
        a.encode(&mut stream).unwrap();
        assert_eq!(FramedMessage::decode(&a.to_bytes().unwrap()).unwrap(), a);
        frames.push(a);
    }
    // Byte by byte, then in odd chunks: same frames, Ok(None) in between.
    for chunk in [1usize, 7, 1000] {
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for c in stream.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(d.buffered(), 0);
    }
    let mut d = FrameDecoder::default();
    d.push(&[0x42]);
    assert!(d.next_frame().is_err());
    let mut d = FrameDecoder::new(100);
    d.push(&[128, 0, 0, 0, 1, 0xff, 0xff, 0xff]);
    assert!(matches!(d.next_frame(), Err(WireError::TooLarge { .. })));
    assert!(FramedMessage::decode(&[129, 0, 0, 0, 1, 0, 0, 0]).is_err());
    assert!(FramedMessage::decode(&[129, 0, 0, 0, 1, 0, 0, 0, 0, 9]).is_err());
}

#[test]
fn sign_and_verify() {
    let signer = Signer::ecdsa_p256(TEST_KEY_PKCS8, TEST_CERT_DER).unwrap();
    assert!(certificate_public_key(TEST_CERT_DER).is_some_and(|k| k.len() == 65));
    assert!(Signer::ecdsa_p256(TEST_KEY_PKCS8, &TEST_CERT_DER[..100]).is_err());
    assert!(Signer::ecdsa_p256(&TEST_KEY_PKCS8[1..], TEST_CERT_DER).is_err());
    let mut m = messages()[4].clone();
    signer.sign_message(&mut m).unwrap();
    let m = Message::decode(&m.to_bytes().unwrap()).unwrap();
    verify_message(&m, None).unwrap();
    verify_message(&m, Some(TEST_CERT_DER)).unwrap();
    let mut t = m.clone();
    t.forwarding.transaction_id.0 ^= 1;
    assert_eq!(verify_message(&t, None), Err(SignError::BadSignature));
    let mut t = m.clone();
    t.contents.body.push(0);
    assert_eq!(verify_message(&t, None), Err(SignError::BadSignature));
    let mut t = m.clone();
    t.security.certificates.clear();
    assert_eq!(verify_message(&t, None), Err(SignError::IdentityMismatch));
    // Forwarding changes (TTL, via list) do not touch the signature.
    let mut t = m.clone();
    t.forwarding.ttl -= 1;
    t.forwarding
        .via_list
        .push(Destination::Node(NodeId::from_u128(1)));
    verify_message(&t, None).unwrap();

    let r = ResourceId::from_name(b"channel:news");
    let mut d = examples::stored(DataModel::Dictionary, 1);
    signer
        .sign_stored_data(&r, KindId::CHANNEL_RELAYS, &mut d)
        .unwrap();
    verify_stored_data(&r, KindId::CHANNEL_RELAYS, &d, TEST_CERT_DER).unwrap();
    assert!(verify_stored_data(&r, KindId::CHANNEL_DIRECTORY, &d, TEST_CERT_DER).is_err());
    let other = ResourceId::from_name(b"channel:sport");
    assert!(verify_stored_data(&other, KindId::CHANNEL_RELAYS, &d, TEST_CERT_DER).is_err());
    let mut e = d.clone();
    e.storage_time += 1;
    assert!(verify_stored_data(&r, KindId::CHANNEL_RELAYS, &e, TEST_CERT_DER).is_err());
}

#[test]
fn response_header_reverses_the_via_list() {
    let mut req = messages()[0].forwarding.clone();
    req.via_list = vec![
        Destination::Node(NodeId::from_u128(1)),
        Destination::Node(NodeId::from_u128(2)),
    ];
    req.ttl = 90;
    let resp = req.response_header(100);
    assert_eq!(resp.transaction_id, req.transaction_id);
    assert_eq!(resp.overlay, req.overlay);
    assert_eq!(
        resp.destination_list,
        vec![
            Destination::Node(NodeId::from_u128(2)),
            Destination::Node(NodeId::from_u128(1)),
        ]
    );
    assert!(resp.via_list.is_empty());
    assert_eq!(resp.ttl, 100);
    let big = messages()[0].to_bytes().unwrap();
    assert!(matches!(
        Message::decode_limited(&big, big.len() - 1),
        Err(WireError::TooLarge { .. })
    ));
    assert!(Message::decode_limited(&big, big.len()).is_ok());
}

#[test]
fn header_and_extension_validation() {
    let ok = messages()[0].forwarding.clone();
    ok.validate(&[]).unwrap();
    let mut h = ok.clone();
    h.ttl = 0;
    assert_eq!(h.validate(&[]).unwrap_err().code, ErrorCode::TTL_EXCEEDED);
    let mut h = ok.clone();
    h.destination_list.clear();
    assert_eq!(
        h.validate(&[]).unwrap_err().code,
        ErrorCode::INVALID_MESSAGE
    );
    let mut h = ok.clone();
    h.via_list = vec![
        Destination::Node(NodeId::from_u128(1)),
        Destination::Node(NodeId::from_u128(2)),
        Destination::Node(NodeId::from_u128(1)),
    ];
    let e = h.validate(&[]).unwrap_err();
    assert_eq!(e.code, ErrorCode::INVALID_MESSAGE);
    assert_eq!(e.info, b"via list loop");
    let mut h = ok.clone();
    h.options.push(ForwardingOption {
        option_type: ForwardingOptionType(9),
        flags: ForwardingFlags(ForwardingFlags::RESPONSE_COPY),
        value: vec![],
    });
    h.validate(&[]).unwrap();
    h.options[0].flags = ForwardingFlags(ForwardingFlags::DESTINATION_CRITICAL);
    assert_eq!(
        h.validate(&[]).unwrap_err().code,
        ErrorCode::UNSUPPORTED_FORWARDING_OPTION
    );
    h.validate(&[ForwardingOptionType(9)]).unwrap();

    let mut c = messages()[0].contents.clone();
    c.check_extensions(&[]).unwrap();
    c.extensions.push(MessageExtension {
        ext_type: MessageExtensionType(0x77),
        critical: false,
        contents: vec![],
    });
    c.check_extensions(&[]).unwrap();
    c.extensions[0].critical = true;
    assert_eq!(
        c.check_extensions(&[]).unwrap_err().code,
        ErrorCode::UNKNOWN_EXTENSION
    );
    c.check_extensions(&[MessageExtensionType(0x77)]).unwrap();

    let e = ErrorResponse::from_wire_error(&WireError::UnknownKind(7));
    assert_eq!(e.code, ErrorCode::UNKNOWN_KIND);
    let e = ErrorResponse::from_wire_error(&WireError::BadToken(0));
    assert_eq!(e.code, ErrorCode::INVALID_MESSAGE);
}

#[test]
fn structured_error_info() {
    let e = ErrorResponse::unknown_kinds(&[KindId(5), KindId::CHANNEL_DIRECTORY]).unwrap();
    assert_eq!(e.code, ErrorCode::UNKNOWN_KIND);
    assert_eq!(
        e.info_unknown_kinds().unwrap(),
        vec![KindId(5), KindId::CHANNEL_DIRECTORY]
    );
    assert_eq!(e.info, [8, 0, 0, 0, 5, 0xf0, 0, 0, 2]);
    let skr = StoreKindResponse {
        kind: KindId::SIP_REGISTRATION,
        generation_counter: 9,
        replicas: vec![NodeId::from_u128(3)],
    };
    let e = ErrorResponse::generation_counter_too_low(&skr).unwrap();
    assert_eq!(e.info_store_kind_response().unwrap(), skr);
    assert!(e.info_unknown_kinds().is_err());
    assert!(ErrorResponse::new(ErrorCode::NOT_FOUND, "x")
        .info_store_kind_response()
        .is_err());
}
