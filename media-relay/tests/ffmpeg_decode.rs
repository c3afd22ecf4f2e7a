//! Interop: the relay's test-pattern packetiser (RFC 6184) is decoded cleanly by ffmpeg.
//!
//! An ffmpeg RTP receiver reads an SDP (`H264/90000`, `packetization-mode=1`) on a loopback
//! port; the test sends the looping test pattern to it in real time from its first key frame
//! and asserts that ffmpeg decoded the frames it was asked for and printed none of the h264
//! decoder's error lines (`non-existing PPS`, `no frame`, `decode_slice_header error`,
//! `concealing`). Runs about 4-6 s; bounded at 20 s; ffmpeg is killed by PID at the end.

mod ffmpeg_util;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ffmpeg_util::{decode_errors, decoded_frames, Ffmpeg};
use media_relay::h264::PacketizerConfig;
use media_relay::testpattern::{TestPattern, TestPatternConfig, FRAME_INTERVAL};

/// Send the test pattern (with the given packetiser settings) to a fresh ffmpeg receiver and
/// check what it decoded.
/// `skip` frames are dropped before sending starts (a receiver joining mid-GOP).
/// Returns (frames decoded, decoder error lines, log).
fn run(name: &str, packetizer: PacketizerConfig, skip: u64) -> Option<(u32, Vec<String>, String)> {
    if !ffmpeg_util::ffmpeg_or_skip(name) {
        return None;
    }
    let dir = ffmpeg_util::temp_dir(name);
    let port = ffmpeg_util::free_rtp_port();
    let sdp = ffmpeg_util::write_sdp(&dir, port, packetizer.payload_type);
    let receiver = Ffmpeg::receiver(&sdp, port, FRAMES);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let dest = SocketAddr::from(([127, 0, 0, 1], port));
    let start = ffmpeg_util::now();
    let deadline = start + Duration::from_secs(20);
    let config = TestPatternConfig {
        packetizer,
        initial_timestamp: 0x1234_5678,
        ..TestPatternConfig::default()
    };
    let mut source = TestPattern::new(config, start);
    let mut receiver = receiver;
    // Send in real time until ffmpeg has its frames and exits (or the deadline).
    while !receiver.exited() && ffmpeg_util::now() < deadline {
        let first = source.next_frame();
        let packets = source.poll(ffmpeg_util::now());
        if first >= skip {
            ffmpeg_util::send_all(&socket, dest, &packets);
        }
        let wait = source
            .next_timeout()
            .saturating_duration_since(ffmpeg_util::now())
            .min(FRAME_INTERVAL);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    let sent_frames = source.next_frame();
    let log = receiver.finish(deadline);
    let _ = std::fs::remove_dir_all(&dir);

    let decoded = decoded_frames(&log);
    let errors = decode_errors(&log);
    eprintln!(
        "{name}: sent {sent_frames} frames, ffmpeg decoded {decoded} in {:?}",
        start.elapsed()
    );
    Some((decoded, errors, log))
}

const FRAMES: u32 = 75; // 3 s of the clip, crossing one key frame (frame 50)

fn decode_test_pattern(name: &str, packetizer: PacketizerConfig) {
    let Some((decoded, errors, log)) = run(name, packetizer, 0) else {
        return;
    };
    assert!(
        errors.is_empty(),
        "ffmpeg decoder errors: {errors:#?}\n--- log ---\n{log}"
    );
    assert!(
        log.contains("Video: h264") && log.contains("320x240"),
        "ffmpeg did not identify the 320x240 H.264 stream\n--- log ---\n{log}"
    );
    assert_eq!(
        decoded, FRAMES,
        "ffmpeg decoded {decoded} of {FRAMES} frames\n--- log ---\n{log}"
    );
}

#[test]
fn ffmpeg_decodes_single_nal_and_fu_a() {
    decode_test_pattern("ffmpeg_decode_fu_a", PacketizerConfig::default());
}

#[test]
fn ffmpeg_decodes_stap_a_and_small_mtu() {
    // A 500-byte payload budget forces most slices into FU-A; SPS+PPS go in one STAP-A.
    decode_test_pattern(
        "ffmpeg_decode_stap_a",
        PacketizerConfig {
            max_payload: 500,
            stap_a: true,
            ssrc: 0xdead_beef,
            initial_seq: 65_500,
            ..PacketizerConfig::default()
        },
    );
}

#[test]
fn ffmpeg_reports_errors_when_joined_mid_gop() {
    // Negative control for the error detection the mid-GOP acceptance test relies on: a
    // receiver that gets the stream from frame 30 (no SPS/PPS, no IDR until frame 50) makes
    // the h264 decoder complain.
    let Some((_, errors, log)) = run("ffmpeg_decode_mid_gop", PacketizerConfig::default(), 30)
    else {
        return;
    };
    assert!(
        !errors.is_empty(),
        "expected decoder errors for a mid-GOP join\n--- log ---\n{log}"
    );
}
