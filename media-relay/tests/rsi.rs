//! RSI (RFC 5760 section 7.1) codec: every sub-report block round-trips, RSI sits in an
//! `rtcp-types` compound, hostile inputs give typed errors (never a panic), and tshark decodes
//! our SR/RR/APP/RSI without expert errors or malformed marks.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::process::Command;

use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig};
use media_relay::feedback::aggregate::{write_vote, FeedbackTarget, FtConfig, ViewerReport};
use media_relay::feedback::node::FtNode;
use media_relay::rsi::{Distribution, Rsi, RsiError, Srbt, SubReport, RSI};
use media_relay::rtcp::{write_sender_report, SenderInfo};
use media_relay::Relay;
use rtcp_types::{
    Compound, Packet, ReceiverReport, ReportBlock, RtcpPacketParserExt, RtcpPacketWriter,
    RtcpPacketWriterExt, Sdes, SdesChunk, SdesItem,
};

fn every_block() -> Vec<SubReport> {
    vec![
        SubReport::Ipv4Target(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 5005)),
        SubReport::Ipv6Target(SocketAddrV6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42),
            5007,
            0,
            0,
        )),
        SubReport::DnsTarget {
            port: 6000,
            name: "ft1.relay.example.net".into(),
        },
        SubReport::Loss(Distribution::new(
            0,
            0,
            256,
            vec![900, 40, 3, 0, 0, 0, 0, 1],
        )),
        SubReport::Jitter(Distribution::new(1, 0, 36_000, vec![10, 20, 30, 40])),
        SubReport::Rtt(Distribution::new(0, 0, 800, vec![70_000, 5, 0])),
        SubReport::CumulativeLoss(Distribution {
            mf: 0,
            min: 0,
            max: 8192,
            bucket_bits: 4,
            buckets: vec![15, 0, 3, 9, 1, 2, 3, 4],
        }),
        SubReport::Collisions(vec![0xdead_beef, 7]),
        SubReport::GeneralStats {
            median_fraction_lost: 12,
            highest_cumulative_lost: 0x00ab_cdef,
            median_jitter: 450,
        },
        SubReport::RtcpBandwidth {
            sender: false,
            receivers: true,
            bandwidth_kbps_16_16: 37 << 16 | 0x8000,
        },
        SubReport::GroupAndAvgPacketSize {
            avg_packet_size: 96,
            group_size: 1_000_000,
        },
        // A reserved type (3) and an unassigned one survive byte for byte.
        SubReport::Unknown {
            srbt: Srbt(3),
            data: vec![1, 2],
        },
        SubReport::Unknown {
            srbt: Srbt(200),
            data: vec![9, 8, 7, 6, 5, 4],
        },
    ]
}

fn sample_rsi() -> Rsi {
    Rsi {
        ssrc: 0x0102_0304,
        summarized_ssrc: 0x0a0b_0c0d,
        ntp: 0xe1e2_e3e4_8000_0000,
        sub_reports: every_block(),
    }
}

#[test]
fn every_sub_report_round_trips_alone() {
    for block in every_block() {
        let rsi = Rsi {
            sub_reports: vec![block.clone()],
            ..sample_rsi()
        };
        let bytes = rsi.to_vec().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(bytes.len(), rsi.encoded_len().unwrap());
        assert_eq!(bytes[1], 209);
        let back = Rsi::decode(&bytes).unwrap();
        assert_eq!(back, rsi, "{block:?}");
        // Re-encoding gives the same octets.
        assert_eq!(back.to_vec().unwrap(), bytes);
    }
}

#[test]
fn all_blocks_in_one_packet_and_in_a_compound() {
    let rsi = sample_rsi();
    let mut data = Vec::new();
    // RR first (RFC 3550 section 6.1), then the RSI, then SDES.
    let rr = ReceiverReport::builder(0x0102_0304);
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(0x0102_0304).add_item(SdesItem::builder(1, "ft@x")));
    let mut head = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut head).unwrap();
    data.extend_from_slice(&head);
    rsi.encode(&mut data).unwrap();
    let mut tail = vec![0u8; sdes.calculate_size().unwrap()];
    sdes.write_into(&mut tail).unwrap();
    data.extend_from_slice(&tail);

    let mut found = None;
    let mut kinds = Vec::new();
    for p in Compound::parse(&data).unwrap() {
        let p = p.unwrap();
        match &p {
            Packet::Rr(_) => kinds.push("rr"),
            Packet::Sdes(_) => kinds.push("sdes"),
            Packet::Unknown(u) if u.type_() == RSI.0 => {
                kinds.push("rsi");
                found = Some(Rsi::from_unknown(u).unwrap());
            }
            _ => kinds.push("other"),
        }
    }
    assert_eq!(kinds, ["rr", "rsi", "sdes"]);
    assert_eq!(found.unwrap(), rsi);
}

#[test]
fn wire_layout_matches_rfc5760() {
    let rsi = Rsi {
        ssrc: 1,
        summarized_ssrc: 2,
        ntp: 3,
        sub_reports: vec![
            SubReport::GroupAndAvgPacketSize {
                avg_packet_size: 0x0102,
                group_size: 0x0304_0506,
            },
            SubReport::Ipv4Target(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 0x1388)),
            SubReport::Loss(Distribution::new(3, 0x10, 0x20, vec![1, 2, 3, 4])),
        ],
    };
    let b = rsi.to_vec().unwrap();
    // Header: V=2, reserved 0, PT 209, length in words minus one.
    assert_eq!(&b[..4], &[0x80, 209, 0, (b.len() / 4 - 1) as u8]);
    assert_eq!(&b[4..20], &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
    // Group and average packet size: SRBT 12, 2 words, size 16 bits, group 32 bits.
    assert_eq!(&b[20..28], &[12, 2, 1, 2, 3, 4, 5, 6]);
    // IPv4 target: SRBT 0, 2 words, port, address.
    assert_eq!(&b[28..36], &[0, 2, 0x13, 0x88, 10, 0, 0, 1]);
    // Loss: SRBT 4, 4 words, NDB 4 << 4 | MF 3, min, max, four 8-bit buckets.
    assert_eq!(
        &b[36..52],
        &[4, 4, 0, 0x43, 0, 0, 0, 0x10, 0, 0, 0, 0x20, 1, 2, 3, 4]
    );
}

#[test]
fn hostile_inputs_are_typed_errors() {
    let good = sample_rsi().to_vec().unwrap();
    // Every truncation of a valid packet fails cleanly.
    for n in 0..good.len() {
        assert!(Rsi::decode(&good[..n]).is_err(), "prefix {n}");
    }
    // Every single-octet corruption either decodes or fails, never panics.
    for i in 0..good.len() {
        for v in [0x00, 0xff, 0x80, 0x01] {
            let mut b = good.clone();
            b[i] = v;
            let _ = Rsi::decode(&b);
            let _ = Compound::parse(&b).map(|c| c.count());
        }
    }
    let hdr = |len_words: u16| {
        let mut v = vec![0x80, 209];
        v.extend_from_slice(&len_words.to_be_bytes());
        v.extend_from_slice(&[0; 16]);
        v
    };
    assert!(matches!(
        Rsi::decode(&[0x40, 209, 0, 4, 0, 0, 0, 0]),
        Err(RsiError::BadVersion(1))
    ));
    let mut b = hdr(4);
    b[1] = 201;
    assert_eq!(Rsi::decode(&b), Err(RsiError::NotRsi(201)));
    assert!(matches!(
        Rsi::decode(&hdr(9)),
        Err(RsiError::LengthMismatch { .. })
    ));
    // A sub-report with length 0 would loop forever in a naive parser.
    let mut b = hdr(5);
    b.extend_from_slice(&[200, 0, 0, 0]);
    assert!(matches!(
        Rsi::decode(&b),
        Err(RsiError::BadSubReportLength { words: 0, .. })
    ));
    // A sub-report longer than the packet.
    let mut b = hdr(5);
    b.extend_from_slice(&[12, 200, 0, 0]);
    assert!(matches!(Rsi::decode(&b), Err(RsiError::Truncated { .. })));
    // Wrong fixed lengths.
    for (srbt, words) in [(0u8, 3u8), (1, 2), (10, 2), (11, 1), (12, 3)] {
        let mut b = hdr(4 + u16::from(words));
        b.extend_from_slice(&[srbt, words, 0, 1]);
        b.resize(b.len() + usize::from(words) * 4 - 4, 0);
        assert!(
            matches!(Rsi::decode(&b), Err(RsiError::BadSubReportLength { .. })),
            "srbt {srbt} words {words}"
        );
    }
    // Feedback target with port 0.
    let mut b = hdr(6);
    b.extend_from_slice(&[0, 2, 0, 0, 1, 2, 3, 4]);
    assert_eq!(Rsi::decode(&b), Err(RsiError::ZeroPort));
    // DNS name that is not UTF-8, and one that is empty.
    let mut b = hdr(6);
    b.extend_from_slice(&[2, 2, 0, 1, 0xff, 0xfe, 0, 0]);
    assert_eq!(Rsi::decode(&b), Err(RsiError::BadDnsName));
    let mut b = hdr(6);
    b.extend_from_slice(&[2, 2, 0, 1, 0, 0, 0, 0]);
    assert_eq!(Rsi::decode(&b), Err(RsiError::BadDnsName));
    // Distribution with zero buckets, and with buckets that do not divide the area.
    let mut b = hdr(8);
    b.extend_from_slice(&[4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        Rsi::decode(&b),
        Err(RsiError::BadDistribution { .. })
    ));
    let mut b = hdr(8);
    b.extend_from_slice(&[5, 4, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        Rsi::decode(&b),
        Err(RsiError::BadDistribution { .. })
    ));
    // 4095 buckets in one word: width 0.
    let mut b = hdr(8);
    b.extend_from_slice(&[6, 4, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        Rsi::decode(&b),
        Err(RsiError::BadDistribution { .. })
    ));
    // Padding: count larger than the packet, count not a multiple of 4.
    let mut b = hdr(5);
    b[0] |= 0x20;
    b.extend_from_slice(&[0, 0, 0, 200]);
    assert_eq!(Rsi::decode(&b), Err(RsiError::BadPadding));
    let mut b = hdr(5);
    b[0] |= 0x20;
    b.extend_from_slice(&[0, 0, 0, 4]);
    assert_eq!(Rsi::decode(&b).unwrap().sub_reports, vec![]);
}

#[test]
fn encoder_refuses_what_the_wire_cannot_carry() {
    let enc = |s: SubReport| {
        Rsi {
            sub_reports: vec![s],
            ..sample_rsi()
        }
        .to_vec()
    };
    assert_eq!(
        enc(SubReport::Ipv4Target(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            0
        ))),
        Err(RsiError::ZeroPort)
    );
    assert!(enc(SubReport::Loss(Distribution::new(0, 0, 1, vec![]))).is_err());
    assert!(enc(SubReport::Loss(Distribution::new(
        16,
        0,
        1,
        vec![1, 1, 1, 1]
    )))
    .is_err());
    assert!(enc(SubReport::Loss(Distribution {
        mf: 0,
        min: 0,
        max: 1,
        bucket_bits: 8,
        buckets: vec![256, 0, 0, 0],
    }))
    .is_err());
    // 300 32-bit buckets exceed a sub-report's 255 words.
    assert!(matches!(
        enc(SubReport::Rtt(Distribution::new(
            0,
            0,
            1,
            vec![70_000; 300]
        ))),
        Err(RsiError::TooLarge(_))
    ));
    assert!(enc(SubReport::GeneralStats {
        median_fraction_lost: 0,
        highest_cumulative_lost: 1 << 24,
        median_jitter: 0,
    })
    .is_err());
    assert!(enc(SubReport::Unknown {
        srbt: Srbt(99),
        data: vec![1, 2, 3],
    })
    .is_err());
    // Nothing is appended on error.
    let mut out = vec![7u8];
    let bad = Rsi {
        sub_reports: vec![
            SubReport::Collisions(vec![1]),
            SubReport::DnsTarget {
                port: 0,
                name: "x".into(),
            },
        ],
        ..sample_rsi()
    };
    assert!(bad.encode(&mut out).is_err());
    assert_eq!(out, [7]);
}

// ---- tshark ----------------------------------------------------------------------------------

const RTCP_PORT: u16 = 5005;

/// A classic pcap (LINKTYPE_RAW: IPv4 packets) of UDP datagrams to `RTCP_PORT`.
fn pcap(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, d) in datagrams.iter().enumerate() {
        let udp_len = 8 + d.len();
        let total = 20 + udp_len;
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            i as u8,
            0x40,
            0,
            64,
            17,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        let mut sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let ck = !(sum as u16);
        ip[10..12].copy_from_slice(&ck.to_be_bytes());
        ip.extend_from_slice(&(RTCP_PORT - 1).to_be_bytes());
        ip.extend_from_slice(&RTCP_PORT.to_be_bytes());
        ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
        ip.extend_from_slice(d);
        f.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        f.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        f.extend_from_slice(&ip);
    }
    f
}

fn our_packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // SR + SDES from the relay.
    let mut sr = Vec::new();
    write_sender_report(
        &mut sr,
        &SenderInfo {
            ssrc: 0x1111,
            ntp: 0xe000_0000_0000_0000,
            rtp_timestamp: 9000,
            packet_count: 10,
            octet_count: 12_000,
        },
        "relay@iptv.example",
    )
    .unwrap();
    out.push(sr);
    // RR + SDES + APP vote from a viewer.
    let rr = ReceiverReport::builder(0x2222).add_report_block(
        ReportBlock::builder(0x1111)
            .fraction_lost(3)
            .cumulative_lost(7)
            .interarrival_jitter(120)
            .last_sender_report_timestamp(0xe000_0000)
            .delay_since_last_sender_report_timestamp(1000),
    );
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(0x2222).add_item(SdesItem::builder(1, "v@iptv.example")));
    let c = Compound::builder().add_packet(rr).add_packet(sdes);
    let mut v = vec![0u8; c.calculate_size().unwrap()];
    c.write_into(&mut v).unwrap();
    write_vote(&mut v, 0x2222, 7, 2).unwrap();
    out.push(v);
    // An RSI with every block, alone and after an RR.
    out.push(sample_rsi().to_vec().unwrap());
    let rr = ReceiverReport::builder(0x0102_0304);
    let mut v = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut v).unwrap();
    sample_rsi().encode(&mut v).unwrap();
    out.push(v);
    // An FT's upward summary (RSI + APP tally) and its downstream group-size RSI.
    let t0 = first_instant();
    let mut ft = FeedbackTarget::new(FtConfig::new(0x3333, 0x1111, 1_000_000.0));
    ft.on_viewer_report(
        t0,
        ViewerReport {
            ssrc: 0x2222,
            fraction_lost: 3,
            cumulative_lost: 7,
            jitter: 120,
            rtt_ms: Some(40),
        },
        96,
    );
    ft.on_vote(t0, 0x2222, 7, 2);
    let (up, _) = ft.upstream_packet(0xe000_0001_0000_0000).unwrap();
    out.push(up);
    out.push(ft.downstream_rsi(0xe000_0001_0000_0000).to_vec().unwrap());
    // A viewer's last compound: RR + SDES + APP vote + BYE.
    let rr = ReceiverReport::builder(0x4444).add_report_block(ReportBlock::builder(0x1111));
    let sdes = Sdes::builder()
        .add_chunk(SdesChunk::builder(0x4444).add_item(SdesItem::builder(1, "w@iptv.example")));
    let c = Compound::builder().add_packet(rr).add_packet(sdes);
    let mut v = vec![0u8; c.calculate_size().unwrap()];
    c.write_into(&mut v).unwrap();
    write_vote(&mut v, 0x4444, 7, 1).unwrap();
    let bye = rtcp_types::Bye::builder().add_source(0x4444);
    let mut b = vec![0u8; bye.calculate_size().unwrap()];
    bye.write_into(&mut b).unwrap();
    v.extend_from_slice(&b);
    out.push(v);
    // What a pure FT (`media-relay ft`) answers a reporter: RSI with its IPv4 address, RTCP
    // bandwidth and group size.
    let mut cfg = FtConfig::new(0x5555, 0x1111, 1_000_000.0);
    cfg.address = Some("192.0.2.9:5005".parse().unwrap());
    let mut node = FtNode::new(cfg, None, t0, 1);
    let mut vv = Vec::new();
    let rr = ReceiverReport::builder(0x6666).add_report_block(ReportBlock::builder(0x1111));
    vv.resize(rr.calculate_size().unwrap(), 0);
    rr.write_into(&mut vv).unwrap();
    node.handle(t0, 0, "192.0.2.10:7000".parse().unwrap(), &vv)
        .unwrap();
    out.push(node.poll_transmit().unwrap().payload);
    // A child relay's summary to its parent relay (RSI + APP tally with the voters entry), as
    // the relay core emits it.
    let mut relay = Relay::new(RelayConfig::default(), 3);
    relay.create_channel(ChannelSpec::new("news")).unwrap();
    let req: AddViewer = serde_json::from_value(serde_json::json!({
        "viewer": 1, "channel": "news", "rtp_dest": "192.0.2.20:4000", "payload_type": 96
    }))
    .unwrap();
    let ssrc = relay.add_viewer(t0, &req).unwrap();
    let rr = ReceiverReport::builder(0x7777)
        .add_report_block(ReportBlock::builder(ssrc).fraction_lost(2));
    let mut vv = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut vv).unwrap();
    write_vote(&mut vv, 0x7777, 7, 3).unwrap();
    relay.handle_viewer_rtcp(t0, "192.0.2.20:4001".parse().unwrap(), &vv);
    let parent: std::net::SocketAddr = "192.0.2.1:5001".parse().unwrap();
    relay
        .set_feedback_parent(t0, &ChannelId::from("news"), Some(parent))
        .unwrap();
    relay.handle_timeout(t0, std::time::SystemTime::UNIX_EPOCH);
    let mut summary = None;
    while let Some(t) = relay.poll_summary_transmit() {
        if t.dest == parent {
            summary = Some(t.payload);
        }
    }
    while relay.poll_transmit().is_some() {}
    out.push(summary.expect("the relay sent its summary up"));
    // The relay's SR + SDES + group-size RSI to a viewer (after it had RTP).
    let mut idr = Vec::new();
    media_relay::rtp::write_header(
        &mut idr,
        true,
        &media_relay::rtp::HeaderRewrite {
            ssrc: 0x4242,
            sequence: 1,
            timestamp: 9000,
            payload_type: 96,
        },
    );
    idr.extend_from_slice(&[0x65, 0x88, 0x84]);
    let _ = relay.ingest(t0, &ChannelId::from("news"), &idr);
    let later = t0 + std::time::Duration::from_secs(8);
    relay.handle_timeout(later, std::time::SystemTime::UNIX_EPOCH);
    let mut sr = None;
    while let Some(t) = relay.poll_transmit() {
        if t.dest.port() == 4001 && t.payload.get(1) == Some(&200) {
            sr = Some(t.payload.to_vec());
        }
    }
    let sr = sr.expect("an SR to the viewer");
    assert!(sr.windows(2).any(|w| w[1] == 209), "RSI after the SR");
    out.push(sr);
    out
}

#[expect(clippy::disallowed_methods)]
fn first_instant() -> std::time::Instant {
    // Tests are drivers: only the origin of time is read.
    std::time::Instant::now()
}

#[test]
fn tshark_decodes_our_rtcp_cleanly() {
    let ok = Command::new("tshark").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark is missing and CI is set"
        );
        eprintln!("tshark not installed: skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rsi-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rtcp.pcap");
    let packets = our_packets();
    std::fs::write(&path, pcap(&packets)).unwrap();
    let decode = format!("udp.port=={RTCP_PORT},rtcp");
    let expert = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args(["-d", &decode, "-q", "-z", "expert"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&expert.stdout).to_string()
        + &String::from_utf8_lossy(&expert.stderr);
    assert!(expert.status.success(), "{text}");
    eprintln!("tshark expert info:\n{text}");
    for bad in ["Errors (", "Warns (", "Malformed"] {
        assert!(!text.contains(bad), "tshark expert info has {bad}:\n{text}");
    }
    // And it did see RTCP: every packet type we wrote.
    let fields = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args(["-d", &decode, "-T", "fields", "-e", "rtcp.pt"])
        .output()
        .unwrap();
    let pts = String::from_utf8_lossy(&fields.stdout).to_string();
    eprintln!("RTCP packet types per datagram:\n{pts}");
    let _ = std::fs::remove_dir_all(&dir);
    for pt in ["200", "201", "202", "203", "204", "209"] {
        assert!(pts.contains(pt), "tshark saw no RTCP PT {pt}:\n{pts}");
    }
    assert_eq!(pts.lines().count(), packets.len(), "{pts}");
}

/// The fuzz target's property on stable: the seeds of `media-relay/fuzz/seeds`, then
/// deterministic mutations of our own packets (bit flips, truncations, splices).
#[test]
fn fuzz_property_replay() {
    use rand::{Rng, RngCore};
    let seeds_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&seeds_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        inputs.len() >= 3,
        "seeds missing in {}",
        seeds_dir.display()
    );
    inputs.extend(our_packets());
    let mut rng = media_relay::feedback::hasim::SimRng::new(5760);
    let base = inputs.clone();
    for _ in 0..20_000 {
        let mut b = base[rng.gen_range(0..base.len())].clone();
        match rng.gen_range(0..4) {
            0 => {
                let i = rng.gen_range(0..b.len());
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => b.truncate(rng.gen_range(0..=b.len())),
            2 => {
                let i = rng.gen_range(0..b.len());
                b[i] = rng.next_u32() as u8;
            }
            _ => {
                let other = &base[rng.gen_range(0..base.len())];
                let at = rng.gen_range(0..b.len());
                b.truncate(at);
                b.extend_from_slice(&other[rng.gen_range(0..other.len())..]);
            }
        }
        // Keep the RTCP length consistent half the time so mutations reach sub-reports.
        if rng.gen_bool(0.5) && b.len() >= 4 && b.len() % 4 == 0 {
            let words = (b.len() / 4 - 1) as u16;
            b[2..4].copy_from_slice(&words.to_be_bytes());
        }
        media_relay::rsi::fuzz_roundtrip(&b);
    }
}
