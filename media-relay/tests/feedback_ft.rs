//! `media-relay ft`, the pure feedback target, as a process on 127.0.0.1: 20 viewers send RR +
//! APP `VOTE` to it and each gets a group-size RSI back; a fake parent receives its summaries
//! (RSI + APP tally) until the tally holds exactly the latest vote of each viewer (repeats do not
//! double); the parent's own group-size RSI reaches the FT (its status line shows it). Every
//! wait is bounded; the child process is killed by PID.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use media_relay::feedback::aggregate::{write_vote, VoteTally, VOTERS_POLL, VOTE_SUBTYPE_TALLY};
use media_relay::rsi::{Rsi, Srbt, SubReport, RSI};
use rtcp_types::{
    Compound, Packet, ReceiverReport, ReportBlock, RtcpPacketParserExt, RtcpPacketWriter,
    RtcpPacketWriterExt,
};

const MEDIA: u32 = 0x1111;
const POLL: u32 = 9;
const VIEWERS: u32 = 20;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn report(ssrc: u32, option: u32) -> Vec<u8> {
    let rr = ReceiverReport::builder(ssrc)
        .add_report_block(ReportBlock::builder(MEDIA).fraction_lost(8));
    let mut v = vec![0u8; rr.calculate_size().unwrap()];
    rr.write_into(&mut v).unwrap();
    write_vote(&mut v, ssrc, POLL, option).unwrap();
    v
}

/// The RSI and the APP tally of a compound.
fn parse(data: &[u8]) -> (Option<Rsi>, Option<VoteTally>) {
    let mut rsi = None;
    let mut tally = None;
    for p in Compound::parse(data).unwrap() {
        match p.unwrap() {
            Packet::Unknown(u) if u.type_() == RSI.0 => rsi = Some(Rsi::from_unknown(&u).unwrap()),
            Packet::App(a) if a.name() == *b"VOTE" && a.count() == VOTE_SUBTYPE_TALLY => {
                tally = Some(VoteTally::from_app_data(a.data()).unwrap())
            }
            _ => {}
        }
    }
    (rsi, tally)
}

fn group_size(rsi: &Rsi) -> Option<u32> {
    match rsi.find(Srbt::GROUP_AND_AVG_PACKET_SIZE) {
        Some(SubReport::GroupAndAvgPacketSize { group_size, .. }) => Some(*group_size),
        _ => None,
    }
}

#[test]
fn pure_ft_over_loopback() {
    let parent = UdpSocket::bind("127.0.0.1:0").unwrap();
    parent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let parent_addr = parent.local_addr().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_media-relay"))
        .args(["ft", "--listen", "127.0.0.1:0", "--parent"])
        .arg(parent_addr.to_string())
        .args([
            "--media-ssrc",
            "0x1111",
            "--min-interval",
            "0.2",
            "--status-interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ft: Option<SocketAddr> = None;
    for _ in 0..20 {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("listening line");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            ft = v["listening"].as_str().and_then(|a| a.parse().ok());
            if ft.is_some() {
                break;
            }
        }
    }
    let ft = ft.expect("the FT printed its address");

    // Viewers report and vote; each is answered with its group size.
    let mut socks = Vec::new();
    for i in 0..VIEWERS {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&report(0x100 + i, i % 2), ft).unwrap();
        socks.push(s);
    }
    let mut buf = [0u8; 2048];
    for s in &socks {
        let (n, from) = s.recv_from(&mut buf).expect("a group-size RSI back");
        assert_eq!(from, ft);
        let rsi = Rsi::decode(&buf[..n]).unwrap();
        assert!(group_size(&rsi).is_some_and(|g| g >= 2), "{rsi:?}");
        assert!(rsi.find(Srbt::RTCP_BANDWIDTH).is_some());
    }
    // Repeats (same vote) and one change: viewer 0 moves from option 0 to 1.
    for (i, s) in socks.iter().enumerate().skip(1) {
        s.send_to(&report(0x100 + i as u32, i as u32 % 2), ft)
            .unwrap();
    }
    socks[0].send_to(&report(0x100, 1), ft).unwrap();
    let want = (VIEWERS as u64 / 2 - 1, VIEWERS as u64 / 2 + 1);

    // The parent sees summaries until the tally is exact (bounded: 10 s of summaries).
    let mut got = None;
    let mut summaries = 0;
    for _ in 0..20 {
        let Ok((n, from)) = parent.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, ft);
        summaries += 1;
        let (rsi, tally) = parse(&buf[..n]);
        let rsi = rsi.expect("RSI in every summary");
        assert_eq!(rsi.summarized_ssrc, MEDIA);
        let tally = tally.unwrap_or_default();
        let counts = (tally.get(POLL, 0), tally.get(POLL, 1));
        if counts == want && group_size(&rsi) == Some(VIEWERS) {
            assert_eq!(tally.get(VOTERS_POLL, 0), u64::from(VIEWERS));
            assert!(n < 600, "summary size {n} does not grow with viewers");
            got = Some(counts);
            break;
        }
    }
    assert_eq!(got, Some(want), "after {summaries} summaries");

    // The parent answers with the group size of the FT's level: the FT takes it.
    let down = Rsi {
        ssrc: 0xfeed,
        summarized_ssrc: MEDIA,
        ntp: 0,
        sub_reports: vec![SubReport::GroupAndAvgPacketSize {
            avg_packet_size: 120,
            group_size: 7,
        }],
    };
    parent.send_to(&down.to_vec().unwrap(), ft).unwrap();
    let mut seen = false;
    for _ in 0..50 {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        // Log lines share stdout: only JSON counts.
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["parent_group_size"] == 7 {
            assert_eq!(v["group_size"], VIEWERS);
            assert_eq!(v["votes"][POLL.to_string()]["1"], want.1);
            assert_eq!(v["voters"], VIEWERS);
            seen = true;
            break;
        }
    }
    assert!(seen, "status never showed the parent's group size");
}

/// A pure FT below a relay: `ft --channel quiz --parent <relay RTCP>` takes 10 viewers' RR +
/// votes (report blocks about any SSRC, as a relay numbers each viewer's stream). Until the FT
/// is registered at the relay (`set_feedback_child`) its summaries are dropped and counted;
/// then they reach the relay, whose feedback for `quiz` holds every vote once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pure_ft_below_a_relay() {
    use media_relay::{AddViewer, ChannelId, ChannelSpec, Relay, RelayConfig};

    let relay = Relay::spawn(RelayConfig::default()).unwrap();
    relay.create_ingest(ChannelSpec::new("quiz")).await.unwrap();
    let quiz = ChannelId::from("quiz");
    // A viewer of the relay only to learn its RTCP address.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req: AddViewer = serde_json::from_value(serde_json::json!({
        "viewer": 1, "channel": "quiz", "rtp_dest": probe.local_addr().unwrap(), "payload_type": 96
    }))
    .unwrap();
    let mut relay_rtcp = relay.add_viewer(req).await.unwrap().relay_rtcp;
    if relay_rtcp.ip().is_unspecified() {
        relay_rtcp.set_ip([127, 0, 0, 1].into());
    }
    let child = Command::new(env!("CARGO_BIN_EXE_media-relay"))
        .args([
            "ft",
            "--listen",
            "127.0.0.1:0",
            "--channel",
            "quiz",
            "--parent",
        ])
        .arg(relay_rtcp.to_string())
        .args(["--min-interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ft: Option<SocketAddr> = None;
    for _ in 0..20 {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) else {
            break;
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            ft = v["listening"].as_str().and_then(|a| a.parse().ok());
            if ft.is_some() {
                break;
            }
        }
    }
    let ft = ft.expect("the FT printed its address");
    let socks: Vec<UdpSocket> = (0..10)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    // Report blocks about per-viewer SSRCs; options 0 x4, 1 x6.
    let send_reports = || {
        for (i, s) in socks.iter().enumerate() {
            let rr = ReceiverReport::builder(0x500 + i as u32)
                .add_report_block(ReportBlock::builder(0xa000 + i as u32).fraction_lost(3));
            let mut v = vec![0u8; rr.calculate_size().unwrap()];
            rr.write_into(&mut v).unwrap();
            write_vote(&mut v, 0x500 + i as u32, POLL, u32::from(i >= 4)).unwrap();
            s.send_to(&v, ft).unwrap();
        }
    };
    // Not registered at the relay yet: its summaries are dropped and counted, nothing merged.
    let mut refused = 0;
    for _round in 0..40 {
        send_reports();
        tokio::time::sleep(Duration::from_millis(100)).await;
        refused = relay
            .stats()
            .await
            .unwrap()
            .totals
            .feedback_refused_summaries;
        if refused >= 2 {
            break;
        }
    }
    assert!(
        refused >= 2,
        "the unregistered FT's summaries were not refused"
    );
    let f = relay.feedback(&quiz).await.unwrap();
    assert_eq!(
        (f.voters, f.child_fts, f.viewers_reporting),
        (0, 0, 0),
        "{f:?}"
    );
    // `POST /channels/quiz/feedback/children {"addr": <ft>}` does the same over HTTP.
    relay.set_feedback_child(&quiz, ft, true).await.unwrap();
    let mut last = None;
    for _round in 0..40 {
        // Re-sent each round.
        send_reports();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let f = relay.feedback(&quiz).await.unwrap();
        let done = f.voters == 10 && f.viewers_reporting == 10;
        last = Some(f);
        if done {
            break;
        }
    }
    let f = last.unwrap();
    assert_eq!(f.voters, 10, "{f:?}");
    assert_eq!(f.viewers_reporting, 10);
    assert_eq!(f.child_fts, 1);
    assert_eq!(f.votes[&POLL][&0], 4);
    assert_eq!(f.votes[&POLL][&1], 6);
    let _ = relay.shutdown().await;
}
