//! Every RELOAD PDU the codec emits decodes with Wireshark's RELOAD dissector without an
//! expert error or warning. Writes a pcap (raw IPv4, one TCP connection on a fake port with
//! handshake) carrying one RELOAD framing-header Data frame per sample message
//! (`wire::examples`) and an Ack frame back for each, then runs
//! `tshark -d tcp.port==PORT,reload-framing -o reload.nodeid_length:16 -q -z expert`.
//! Skips with a message when tshark is missing, unless `CI` is set (then fails).

use std::path::Path;
use std::process::Command;

use p2psip_overlay::wire::examples::{bodies, header, messages, TEST_CERT_DER, TEST_KEY_PKCS8};
use p2psip_overlay::wire::*;

const PORT: u16 = 6084;
const CLIENT: [u8; 4] = [127, 0, 0, 1];
const SERVER: [u8; 4] = [127, 0, 0, 2];

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

struct Pcap {
    out: Vec<u8>,
    t: u32,
}

impl Pcap {
    fn new() -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&262_144u32.to_le_bytes());
        out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
        Pcap { out, t: 0 }
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let total = 20 + 20 + payload.len();
        assert!(total <= 0xffff, "one segment per PDU");
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        pseudo.extend_from_slice(payload);
        let c = csum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        self.t += 1;
        self.out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        self.out.extend_from_slice(&(self.t * 1000).to_le_bytes());
        self.out.extend_from_slice(&(total as u32).to_le_bytes());
        self.out.extend_from_slice(&(total as u32).to_le_bytes());
        self.out.extend_from_slice(&ip);
        self.out.extend_from_slice(&tcp);
        self.out.extend_from_slice(payload);
    }
}

/// Writes the pcap: handshake, then per message a Data frame one way and an Ack back.
fn write_pcap(path: &Path, pdus: &[Vec<u8>]) {
    let mut p = Pcap::new();
    let (cport, mut cseq, mut sseq) = (40_000u16, 1000u32, 5000u32);
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    p.tcp(CLIENT, SERVER, cport, PORT, cseq, 0, SYN, &[]);
    p.tcp(SERVER, CLIENT, PORT, cport, sseq, cseq + 1, SYN | ACK, &[]);
    cseq += 1;
    sseq += 1;
    p.tcp(CLIENT, SERVER, cport, PORT, cseq, sseq, ACK, &[]);
    for (i, m) in pdus.iter().enumerate() {
        let mut frame = Vec::new();
        encode_data(i as u32 + 1, m, &mut frame).unwrap();
        p.tcp(CLIENT, SERVER, cport, PORT, cseq, sseq, PSH | ACK, &frame);
        cseq = cseq.wrapping_add(frame.len() as u32);
        let ack = FramedMessage::Ack {
            ack_sequence: i as u32 + 1,
            received: if i == 0 { 0 } else { 1 },
        }
        .to_bytes()
        .unwrap();
        p.tcp(SERVER, CLIENT, PORT, cport, sseq, cseq, PSH | ACK, &ack);
        sseq = sseq.wrapping_add(ack.len() as u32);
    }
    std::fs::write(path, p.out).unwrap();
}

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

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tshark(pcap: &Path, extra: &[&str]) -> String {
    let port = format!("tcp.port=={PORT},reload-framing");
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-d", &port, "-o", "reload.nodeid_length:16"])
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args([
            "-o",
            r#"uat:reload_kindids:"4026531841","CHANNEL-RELAYS","DICTIONARY""#,
            "-o",
            r#"uat:reload_kindids:"4026531842","CHANNEL-DIRECTORY","DICTIONARY""#,
        ])
        .args(extra);
    let out = cmd.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tshark_decodes_every_pdu_cleanly() {
    if !tshark_available() {
        assert!(std::env::var_os("CI").is_none(), "tshark is required in CI");
        eprintln!("tshark not installed: skipping the RELOAD dissector check");
        return;
    }
    let dir = std::env::temp_dir().join(format!("reload-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("reload.pcap");
    let pdus = pdus();
    write_pcap(&pcap, &pdus);

    let verbose = tshark(&pcap, &["-V"]);
    if std::env::var_os("RELOAD_TSHARK_DUMP").is_some() {
        let tree = std::env::temp_dir().join("reload-tshark-tree.txt");
        std::fs::write(&tree, &verbose).unwrap();
        eprintln!("tree in {}", tree.display());
    }
    let expert = tshark(&pcap, &["-q", "-z", "expert"]);
    let fields = tshark(
        &pcap,
        &["-T", "fields", "-e", "reload.message.code", "-Y", "reload"],
    );
    let _ = std::fs::remove_dir_all(&dir);

    let bad: Vec<&str> = expert
        .lines()
        .filter(|l| l.starts_with("Errors (") || l.starts_with("Warns ("))
        .collect();
    assert!(bad.is_empty(), "tshark expert errors/warnings:\n{expert}");
    assert!(
        !verbose.contains("Malformed"),
        "malformed packet:\n{verbose}"
    );
    // Every PDU was seen as RELOAD with the right message code.
    let codes: Vec<u16> = fields
        .lines()
        .filter_map(|l| l.trim().split(',').next()?.parse().ok())
        .collect();
    let want: Vec<u16> = pdus
        .iter()
        .map(|p| Message::decode(p).unwrap().contents.code.0)
        .collect();
    assert_eq!(codes, want, "message codes tshark saw");
}
