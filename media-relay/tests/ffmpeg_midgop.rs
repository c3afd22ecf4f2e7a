//! Acceptance: a viewer that joins a channel mid-GOP gets a stream ffmpeg decodes at once,
//! with no "non-existing PPS" / "no frame" errors (fast channel change, design.md "Join").
//!
//! Set-up, per producer variant (the relay's own test pattern; a real ffmpeg/libx264 RTP
//! producer):
//! 1. An in-process relay (`Relay::spawn`) with one channel (`create_ingest`) fed by the producer.
//! 2. A monitor viewer (a UDP socket of the test) watches the channel's output and notes when each
//!    key frame arrives and the bytes of its first IDR-slice packet.
//! 3. 1.3 s after a key frame (GOP 2 s, so mid-GOP) two viewers join at once: an ffmpeg RTP
//!    receiver (SDP file, `-frames:v 25`) and a probe socket of the test.
//!
//! Asserts:
//! - the probe's first packet starts a key frame (parameter sets or IDR), and its first IDR
//!   slice is the channel's *last* key frame (same payload bytes as the monitor saw 1.3 s
//!   earlier): the relay burst the cached GOP instead of sending mid-GOP slices or waiting for
//!   the next key frame;
//! - ffmpeg identifies the H.264 stream, decodes its 25 frames before the deadline, and prints
//!   none of the h264 decoder's error lines (`non-existing PPS`, `no frame`,
//!   `decode_slice_header error`, `concealing`).
//!
//! Each variant runs about 5-8 s (20 s bound); every child process is killed by PID.

mod ffmpeg_util;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ffmpeg_util::{decode_errors, decoded_frames, now, Ffmpeg};
use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, RelayHandle, ViewerId};
use media_relay::h264::{payload_nal_types, payload_starts_key_frame, NalType};

/// How far into the GOP the viewer joins.
const JOIN_AFTER_KEY: Duration = Duration::from_millis(1300);
/// Frames ffmpeg must decode.
const FRAMES: u32 = 25;
/// Upper bound of one variant.
const BOUND: Duration = Duration::from_secs(20);

/// Who feeds the channel.
#[derive(Debug, Clone, Copy)]
enum Producer {
    TestPattern,
    Ffmpeg,
}

/// A UDP socket of the test that receives what the relay sends one viewer.
struct Tap {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Tap {
    fn bind() -> Tap {
        let port = ffmpeg_util::free_rtp_port();
        let rtp = UdpSocket::bind(("127.0.0.1", port)).expect("bind tap");
        let rtcp = UdpSocket::bind(("127.0.0.1", port + 1)).expect("bind tap rtcp");
        rtp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Tap { rtp, rtcp }
    }

    fn viewer(&self, viewer: u64, channel: &ChannelId) -> AddViewer {
        AddViewer {
            viewer: ViewerId(viewer),
            channel: channel.clone(),
            rtp_dest: self.rtp.local_addr().expect("addr"),
            rtcp_dest: Some(self.rtcp.local_addr().expect("addr")),
            payload_type: 96,
            downstream: false,
        }
    }

    /// Marker bit and RTP payload of the next datagram, if one comes within 50 ms.
    fn recv(&self) -> Option<(bool, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let n = self.rtp.recv(&mut buf).ok()?;
        let p = rtp_types::RtpPacket::parse(&buf[..n]).expect("relay sends valid RTP");
        assert_eq!(
            p.payload_type(),
            96,
            "relay writes the viewer's payload type"
        );
        Some((p.marker_bit(), p.payload().to_vec()))
    }
}

/// Whether a payload carries (the start of) an IDR slice.
fn has_idr(payload: &[u8]) -> bool {
    payload_nal_types(payload).contains(&NalType::IDR_SLICE)
}

fn mid_gop_join(name: &str, producer: Producer) {
    if !ffmpeg_util::ffmpeg_or_skip(name) {
        return;
    }
    if matches!(producer, Producer::Ffmpeg) && !ffmpeg_util::encoder_or_skip(name, "libx264") {
        return;
    }
    let start = now();
    let deadline = start + BOUND;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let relay: RelayHandle = rt
        .block_on(async { media_relay::Relay::spawn(RelayConfig::default()) })
        .expect("relay starts");
    let channel = ChannelId::from(name);
    let ingest = rt
        .block_on(relay.create_ingest(ChannelSpec::new(channel.clone())))
        .expect("create ingest");

    // The producer.
    let _producer = match producer {
        Producer::TestPattern => {
            rt.block_on(relay.start_test_pattern(&channel))
                .expect("start test pattern");
            None
        }
        Producer::Ffmpeg => {
            let url = format!(
                "rtp://{}:{}?rtcpport={}&pkt_size=1200",
                ingest.rtp_addr.ip(),
                ingest.rtp_addr.port(),
                ingest.rtcp_addr.port()
            );
            Some(Ffmpeg::spawn(&[
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
                "-t",
                "20",
                "-c:v",
                "libx264",
                "-g",
                "50",
                "-bf",
                "0",
                "-x264-params",
                "keyint=50:min-keyint=50:scenecut=0:repeat-headers=1",
                "-payload_type",
                "96",
                "-f",
                "rtp",
                &url,
            ]))
        }
    };

    // The monitor: note each key frame's arrival and first IDR-slice payload.
    let monitor = Tap::bind();
    rt.block_on(relay.add_viewer(monitor.viewer(1, &channel)))
        .expect("add monitor");
    let dir = ffmpeg_util::temp_dir(name);
    let ff_port = ffmpeg_util::free_rtp_port();
    let sdp = ffmpeg_util::write_sdp(&dir, ff_port, 96);
    let receiver = Ffmpeg::receiver(&sdp, ff_port, FRAMES);
    let probe = Tap::bind();

    // Key frames seen by the monitor: (arrival of the access unit's first packet, payload of
    // its first IDR-slice packet). Access units end at the marker bit (RFC 6184 5.1).
    let mut keys: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut au_start: Option<Instant> = None;
    let mut au_idr: Option<Vec<u8>> = None;
    loop {
        assert!(
            now() < deadline,
            "{name}: too few key frames from the producer"
        );
        // The first key frame the monitor sees may be its own join burst; wait for a live one.
        if keys.len() >= 2 && keys.last().is_some_and(|k| now() >= k.0 + JOIN_AFTER_KEY) {
            break;
        }
        let Some((marker, payload)) = monitor.recv() else {
            continue;
        };
        let at = *au_start.get_or_insert_with(now);
        if au_idr.is_none() && has_idr(&payload) {
            au_idr = Some(payload);
        }
        if marker {
            if let Some(idr) = au_idr.take() {
                keys.push((at, idr));
            }
            au_start = None;
        }
    }
    let (last_key_at, last_idr) = keys.last().cloned().expect("a key frame");

    // Join mid-GOP: ffmpeg and the probe at once.
    let join = now();
    rt.block_on(relay.add_viewer(AddViewer {
        viewer: ViewerId(2),
        channel: channel.clone(),
        rtp_dest: SocketAddr::from(([127, 0, 0, 1], ff_port)),
        rtcp_dest: Some(SocketAddr::from(([127, 0, 0, 1], ff_port + 1))),
        payload_type: 96,
        downstream: false,
    }))
    .expect("add ffmpeg viewer");
    rt.block_on(relay.add_viewer(probe.viewer(3, &channel)))
        .expect("add probe viewer");

    // The probe: the first packet starts a key frame, and its IDR is the last key frame's.
    let mut first: Option<Vec<u8>> = None;
    let mut probe_idr: Option<Vec<u8>> = None;
    while probe_idr.is_none() && now() < deadline {
        if let Some((_, p)) = probe.recv() {
            if has_idr(&p) {
                probe_idr = Some(p.clone());
            }
            first.get_or_insert(p);
        }
    }
    let log = receiver.finish(deadline);
    let took = join.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let stats = rt.block_on(relay.stats()).ok();
    let _ = rt.block_on(relay.shutdown());

    let decoded = decoded_frames(&log);
    let errors = decode_errors(&log);
    eprintln!(
        "{name}: joined {:?} after a key frame; ffmpeg decoded {decoded} frames, exited {:?} \
         after the join; relay stats: {stats:?}",
        join.duration_since(last_key_at),
        took
    );
    let first = first.expect("the probe viewer received packets");
    assert!(
        payload_starts_key_frame(&first),
        "first packet after a mid-GOP join must start a key frame, got NAL types {:?}",
        payload_nal_types(&first)
    );
    assert!(
        probe_idr.as_deref() == Some(last_idr.as_slice()),
        "the burst must start at the channel's last key frame (not wait for the next one)"
    );
    assert!(
        errors.is_empty(),
        "ffmpeg decoder errors after a mid-GOP join: {errors:#?}\n--- log ---\n{log}"
    );
    assert!(
        log.contains("Video: h264"),
        "ffmpeg did not identify the H.264 stream\n--- log ---\n{log}"
    );
    assert_eq!(
        decoded, FRAMES,
        "ffmpeg decoded {decoded} of {FRAMES} frames\n--- log ---\n{log}"
    );
}

#[test]
fn mid_gop_join_test_pattern() {
    mid_gop_join("midgop-testpattern", Producer::TestPattern);
}

#[test]
fn mid_gop_join_ffmpeg_producer() {
    mid_gop_join("midgop-ffmpeg", Producer::Ffmpeg);
}
