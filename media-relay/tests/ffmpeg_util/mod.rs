//! Shared harness for the ffmpeg interop tests: find ffmpeg, pick loopback UDP ports, run an
//! ffmpeg RTP receiver (reading an SDP file) or producer as a child process killed by PID, and
//! read its log.
//!
//! Gate: when `ffmpeg` is missing a test fails if the `CI` environment variable is set, else it
//! prints a skip line and returns.

#![allow(dead_code)] // each test binary uses a different part

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Log lines the h264 decoder prints when it gets slices it cannot decode (joined without
/// SPS/PPS, or without a key frame).
pub const DECODE_ERRORS: &[&str] = &[
    "non-existing PPS",
    "no frame",
    "decode_slice_header error",
    "concealing",
];

/// `true` when ffmpeg runs; `false` (after printing a skip line) when it does not and `CI` is
/// unset. Panics when it does not and `CI` is set.
pub fn ffmpeg_or_skip(test: &str) -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ffmpeg is required in CI but was not found"
        );
        eprintln!("SKIP {test}: ffmpeg not installed");
    }
    ok
}

/// `true` when ffmpeg has the encoder `name` (e.g. `libx264`); otherwise as
/// [`ffmpeg_or_skip`]: a failure in CI, a skip line elsewhere.
pub fn encoder_or_skip(test: &str, name: &str) -> bool {
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name))
        });
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ffmpeg encoder {name} is required in CI but was not found"
        );
        eprintln!("SKIP {test}: ffmpeg has no {name} encoder");
    }
    ok
}

/// The time source of the test harness (the one place these tests read the clock).
#[expect(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// An even loopback UDP port whose odd neighbour (RTCP) is free too.
pub fn free_rtp_port() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let port = a.local_addr().expect("local addr").port();
        if port % 2 != 0 || port == u16::MAX - 1 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free even/odd UDP port pair on 127.0.0.1");
}

/// A fresh temporary directory for this test run.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("media-relay-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// SDP that tells ffmpeg to receive H.264 (RFC 6184, packetization-mode 1) on `port`.
pub fn write_sdp(dir: &std::path::Path, port: u16, payload_type: u8) -> PathBuf {
    let sdp = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=media-relay test\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=video {port} RTP/AVP {payload_type}\r\n\
         a=rtpmap:{payload_type} H264/90000\r\n\
         a=fmtp:{payload_type} packetization-mode=1\r\na=recvonly\r\n"
    );
    let path = dir.join("in.sdp");
    std::fs::write(&path, sdp).expect("write sdp");
    path
}

/// Whether a UDP socket is bound to `port` (IPv4, any address), read from /proc/net/udp.
fn udp_port_bound(port: u16) -> bool {
    let hex = format!("{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|local| local.rsplit(':').next())
                    .is_some_and(|p| p == hex)
            })
        })
        .unwrap_or(false)
}

/// A running ffmpeg child whose stderr is collected in the background; killed by PID on drop.
pub struct Ffmpeg {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Ffmpeg {
    /// Start `ffmpeg <args>` (with `-hide_banner -nostdin`).
    pub fn spawn(args: &[&str]) -> Ffmpeg {
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock().expect("log lock").push_str(&text);
            }
        });
        Ffmpeg {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// An ffmpeg RTP receiver decoding `frames` video frames from the SDP at `sdp`, started and
    /// confirmed listening on `port` (bounded wait).
    pub fn receiver(sdp: &std::path::Path, port: u16, frames: u32) -> Ffmpeg {
        let sdp = sdp.to_str().expect("utf-8 temp path");
        let frames = frames.to_string();
        let ff = Ffmpeg::spawn(&[
            "-loglevel",
            "info",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
            sdp,
            "-frames:v",
            &frames,
            "-f",
            "null",
            "-",
        ]);
        let deadline = now() + Duration::from_secs(10);
        while !udp_port_bound(port) {
            assert!(now() < deadline, "ffmpeg did not bind UDP {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        ff
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait until exit or `deadline`; kill it (by PID) if still running. Returns the log.
    pub fn finish(mut self, deadline: Instant) -> String {
        while !self.exited() && now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        self.log()
    }

    /// Log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    fn stop(&mut self) {
        if !self.exited() {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Frames decoded according to the last `frame=  N` progress line of the log.
pub fn decoded_frames(log: &str) -> u32 {
    log.rsplit("frame=")
        .next()
        .filter(|_| log.contains("frame="))
        .and_then(|tail| {
            tail.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Decoder error lines found in the log.
pub fn decode_errors(log: &str) -> Vec<String> {
    log.lines()
        .flat_map(|l| l.split('\r'))
        .filter(|l| DECODE_ERRORS.iter().any(|e| l.contains(e)))
        .map(str::to_owned)
        .collect()
}

/// Send each packet as one datagram to `dest`.
pub fn send_all(socket: &UdpSocket, dest: SocketAddr, packets: &[bytes::Bytes]) {
    for p in packets {
        socket.send_to(p, dest).expect("send RTP");
    }
}
