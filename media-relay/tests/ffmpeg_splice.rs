//! Acceptance (issue 7, personalised channels): a channel that switches among three sources
//! every 3 s decodes in ffmpeg with zero decoder errors across every switch, and its RTP
//! numbering is continuous (one SSRC, sequence numbers +1, timestamps never jumping by more
//! than one picture interval).
//!
//! Set-up:
//! 1. Three real H.264 sources, each a [`TestPattern`] on a virtual clock with its own SSRC,
//!    sequence and timestamp bases and its own phase (key frames at different instants):
//!    A and B loop the shipped 320x240 clip, started 0.7 s apart; C loops a 176x144 clip made
//!    by ffmpeg/libx264 for this test (a different resolution: the decoder must take the new
//!    SPS at the switch).
//! 2. A [`Splicer`] follows the schedule A (0 s), B (3 s), C (6 s), A (9 s) until 12 s; the
//!    packets come from the sources in time order, as a relay would see them.
//! 3. The spliced packets go over UDP on 127.0.0.1 to an ffmpeg RTP receiver (SDP file),
//!    paced at four times real speed.
//!
//! Bounded: about 5 s of sending and a 30 s limit; every child is killed by its PID.

mod ffmpeg_util;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ffmpeg_util::{decode_errors, decoded_frames, now, Ffmpeg};
use media_relay::h264::PacketizerConfig;
use media_relay::splice::{SourceId, SpliceConfig, Splicer};
use media_relay::testpattern::{TestPattern, TestPatternConfig, TICKS_PER_FRAME};

const SWITCH_EVERY: Duration = Duration::from_secs(3);
const LENGTH: Duration = Duration::from_secs(12);
const STEP: Duration = Duration::from_millis(5);
const SPEEDUP: u32 = 4;
const PT: u8 = 96;

fn source(ssrc: u32, seq: u16, ts: u32, clip: Option<&[u8]>, start: Instant) -> TestPattern {
    let cfg = TestPatternConfig {
        packetizer: PacketizerConfig {
            payload_type: PT,
            ssrc,
            initial_seq: seq,
            ..PacketizerConfig::default()
        },
        initial_timestamp: ts,
        ..TestPatternConfig::default()
    };
    match clip {
        Some(c) => TestPattern::from_clip(c, cfg, start).expect("clip starts with a key frame"),
        None => TestPattern::new(cfg, start),
    }
}

/// A 4 s 176x144 clip at 25 fps, IDR every 2 s with SPS/PPS in band, made by libx264.
fn small_clip(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("small.h264");
    let path_s = path.to_str().expect("utf-8 temp path");
    let ff = Ffmpeg::spawn(&[
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=176x144:rate=25",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "50",
        "-bf",
        "0",
        "-x264-params",
        "repeat-headers=1:scenecut=0",
        "-f",
        "h264",
        path_s,
    ]);
    let log = ff.finish(now() + Duration::from_secs(30));
    std::fs::read(&path).unwrap_or_else(|e| panic!("no clip from ffmpeg ({e}):\n{log}"))
}

#[test]
fn three_sources_spliced_every_three_seconds_decode_without_errors() {
    if !ffmpeg_util::ffmpeg_or_skip("ffmpeg_splice")
        || !ffmpeg_util::encoder_or_skip("ffmpeg_splice", "libx264")
    {
        return;
    }
    let dir = ffmpeg_util::temp_dir("splice");
    let clip_c = small_clip(&dir);

    // Sources and splicer on a virtual clock starting at t0.
    let t0 = now();
    let mut sources = [
        source(0xaaaa_0001, 100, 1_000, None, t0),
        source(
            0xbbbb_0002,
            30_000,
            2_000_000_000,
            None,
            t0 + Duration::from_millis(700),
        ),
        source(
            0xcccc_0003,
            65_000,
            u32::MAX - 40_000,
            Some(&clip_c),
            t0 + Duration::from_millis(1300),
        ),
    ];
    let mut splicer = Splicer::new(SpliceConfig {
        ssrc: 0x5a11_ce01,
        first_sequence: 1,
        first_timestamp: 90_000,
        payload_type: Some(PT),
        ..SpliceConfig::default()
    });
    let schedule = [0u32, 1, 2, 0];
    let mut out: Vec<(Duration, Bytes)> = Vec::new();
    let mut batch = Vec::new();
    let mut t = Duration::ZERO;
    while t < LENGTH {
        let slot = (t.as_millis() / SWITCH_EVERY.as_millis()) as usize;
        let want = SourceId(schedule[slot.min(schedule.len() - 1)]);
        if splicer.current() != Some(want) && splicer.wanted() != Some(want) {
            splicer.switch_to(want);
        }
        for (i, s) in sources.iter_mut().enumerate() {
            for p in s.poll(t0 + t) {
                batch.clear();
                splicer
                    .push(SourceId(i as u32), &p, &mut batch)
                    .expect("RTP");
                out.extend(batch.drain(..).map(|b| (t, b)));
            }
        }
        t += STEP;
    }
    let stats = splicer.stats();
    assert_eq!(stats.switches, 4, "{stats:?}");
    assert_eq!(stats.forced, 0, "{stats:?}");

    // Continuous numbering: one SSRC, seq +1, timestamps step 0 (same picture) or one picture.
    let hdr = |p: &Bytes| {
        (
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            p[1] & 0x80 != 0,
        )
    };
    for w in out.windows(2) {
        let (a, b) = (hdr(&w[0].1), hdr(&w[1].1));
        assert_eq!(b.0, a.0.wrapping_add(1), "sequence gap");
        assert_eq!(b.2, 0x5a11_ce01, "SSRC");
        let step = b.1.wrapping_sub(a.1);
        assert!(
            step == 0 || step == TICKS_PER_FRAME,
            "timestamp step {step}"
        );
    }
    let pictures = out.iter().filter(|(_, p)| hdr(p).3).count() as u32;
    assert!(pictures > 200, "only {pictures} pictures spliced");

    // Decode over RTP with ffmpeg.
    let port = ffmpeg_util::free_rtp_port();
    let sdp = ffmpeg_util::write_sdp(&dir, port, PT);
    let want_frames = pictures - 3;
    let ff = Ffmpeg::receiver(&sdp, port, want_frames);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dest: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = now();
    for (at, p) in &out {
        let due = start + *at / SPEEDUP;
        let n = now();
        if due > n {
            std::thread::sleep(due - n);
        }
        sock.send_to(p, dest).expect("send RTP");
    }
    let log = ff.finish(now() + Duration::from_secs(20));
    let errors = decode_errors(&log);
    assert!(
        errors.is_empty(),
        "decoder errors across splices: {errors:#?}\n{log}"
    );
    let frames = decoded_frames(&log);
    assert!(
        frames >= want_frames,
        "ffmpeg decoded {frames} of {want_frames} frames\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
