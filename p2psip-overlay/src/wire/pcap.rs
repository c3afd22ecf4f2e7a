//! Test support: a pcap of RELOAD PDUs on one TCP connection and a run of Wireshark's RELOAD
//! dissector over it (the project's rule: every PDU we emit decodes in tshark with no expert
//! error or warning). The pcap is raw IPv4 (link type 101) with a three-way handshake, then
//! per PDU a framing-header Data frame (RFC 6940 section 5.6.3.1) one way and an Ack back,
//! with correct IP and TCP checksums. [`tshark_check`] runs
//! `tshark -d tcp.port==PORT,reload-framing -o reload.nodeid_length:16 -z expert` with the
//! project's private kinds declared to the dissector. Spawning tshark is the only I/O here.

use std::path::Path;
use std::process::Command;

use super::{encode_data, FramedMessage, Message};

/// The TCP port the pcap uses for the RELOAD link.
pub const PORT: u16 = 6084;
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
        let total = total.min(0xffff);
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
/// The pcap file bytes for `pdus` (encoded RELOAD messages).
pub fn reload_pcap(pdus: &[Vec<u8>]) -> Vec<u8> {
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
        let _ = encode_data(i as u32 + 1, m, &mut frame);
        p.tcp(CLIENT, SERVER, cport, PORT, cseq, sseq, PSH | ACK, &frame);
        cseq = cseq.wrapping_add(frame.len() as u32);
        let ack = FramedMessage::Ack {
            ack_sequence: i as u32 + 1,
            received: if i == 0 { 0 } else { 1 },
        }
        .to_bytes()
        .unwrap_or_default();
        p.tcp(SERVER, CLIENT, PORT, cport, sseq, cseq, PSH | ACK, &ack);
        sseq = sseq.wrapping_add(ack.len() as u32);
    }
    p.out
}

/// The RELOAD messages of a pcap written by [`reload_pcap`] (the DATA frames from the
/// client side, in order). Anything that is not such a pcap yields what could be read
/// before it; never panics.
#[must_use]
pub fn read_reload_pcap(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(rec) = bytes.get(at..at + 16) {
        let len = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
        let Some(pkt) = bytes.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        // raw IPv4, 20-byte header; TCP, 20-byte header
        let Some(tcp) = pkt.get(20..40) else { continue };
        if u16::from_be_bytes([tcp[2], tcp[3]]) != PORT {
            continue;
        }
        let payload = &pkt[40..];
        if let Ok(FramedMessage::Data { message, .. }) = FramedMessage::decode(payload) {
            out.push(message);
        }
    }
    out
}

/// What [`tshark_check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsharkOutcome {
    /// tshark is not installed.
    Missing,
    /// Every PDU decoded with no expert error or warning; the message codes tshark saw.
    Clean(Vec<u16>),
    /// Expert errors/warnings or malformed packets: tshark's expert summary and tree.
    Problems(String),
}

/// Whether tshark runs here.
pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tshark(pcap: &Path, extra: &[&str]) -> Result<String, String> {
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
    let out = cmd.output().map_err(|e| format!("tshark: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes `pdus` to a pcap in `dir` and runs tshark's RELOAD dissector over it. Each PDU must
/// be a whole encoded message under 64 KB. `Err` when tshark fails to run.
pub fn tshark_check(pdus: &[Vec<u8>], dir: &Path) -> Result<TsharkOutcome, String> {
    if !tshark_available() {
        return Ok(TsharkOutcome::Missing);
    }
    let pcap = dir.join("reload.pcap");
    std::fs::write(&pcap, reload_pcap(pdus)).map_err(|e| e.to_string())?;
    let expert = tshark(&pcap, &["-q", "-z", "expert"])?;
    let verbose = tshark(&pcap, &["-V"])?;
    if let Some(dump) = std::env::var_os("RELOAD_TSHARK_DUMP") {
        let _ = std::fs::write(dump, &verbose);
    }
    let bad = expert
        .lines()
        .any(|l| l.starts_with("Errors (") || l.starts_with("Warns ("));
    if bad || verbose.contains("Malformed") {
        return Ok(TsharkOutcome::Problems(format!("{expert}\n{verbose}")));
    }
    let fields = tshark(
        &pcap,
        &["-T", "fields", "-e", "reload.message.code", "-Y", "reload"],
    )?;
    Ok(TsharkOutcome::Clean(
        fields
            .lines()
            .filter_map(|l| l.trim().split(',').next()?.parse().ok())
            .collect(),
    ))
}

/// The message codes of `pdus`, as [`TsharkOutcome::Clean`] should list them.
pub fn message_codes(pdus: &[Vec<u8>]) -> Vec<u16> {
    pdus.iter()
        .filter_map(|p| Message::decode(p).ok())
        .map(|m| m.contents.code.0)
        .collect()
}
