//! The relay's built-in test-pattern source: loops a shipped H.264 clip in real time as RTP.
//!
//! How it fits: `RelayHandle::start_test_pattern` makes the relay feed a channel by itself. The
//! driver owns one [`TestPattern`] per such channel, calls [`TestPattern::poll`] when
//! [`TestPattern::next_timeout`] is reached, and injects the packets into the relay core as if a
//! producer had sent them. The source is sans-IO: it never reads the clock, `now` is an argument.
//!
//! The clip (`assets/testpattern.h264`, made by `assets/make-clip.sh`) is 8 s of 320x240
//! constrained-baseline H.264 at 25 fps with an IDR every 2 s and SPS/PPS before every IDR.
//! Frames go out every 40 ms; RTP timestamps advance 3600 ticks (90 kHz, RFC 6184 section 5.1)
//! per frame and, like sequence numbers, continue across loops, so a receiver sees one endless
//! stream. After a stall the source does not burst a backlog: it skips the missed time (the
//! timestamps still advance by one frame per frame sent).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::h264::{self, AccessUnit, Packetizer, PacketizerConfig};

/// The shipped clip, an Annex-B H.264 byte stream.
pub static CLIP: &[u8] = include_bytes!("../assets/testpattern.h264");

/// Frames per second of the clip.
pub const FPS: u32 = 25;

/// RTP timestamp ticks per frame (90 kHz / 25 fps).
pub const TICKS_PER_FRAME: u32 = h264::CLOCK_RATE / FPS;

/// Time between frames.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(1000 / FPS as u64);

/// Settings of a [`TestPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestPatternConfig {
    /// RTP payload type, SSRC, first sequence number, payload budget, STAP-A.
    pub packetizer: PacketizerConfig,
    /// RTP timestamp of the first frame.
    pub initial_timestamp: u32,
    /// Most frames one `poll` sends when it is late; beyond this the source skips ahead.
    pub max_catch_up: u32,
}

impl Default for TestPatternConfig {
    fn default() -> Self {
        TestPatternConfig {
            packetizer: PacketizerConfig::default(),
            initial_timestamp: 0,
            max_catch_up: 5,
        }
    }
}

/// A real-time RTP source looping an H.264 clip (sans-IO).
#[derive(Debug, Clone)]
pub struct TestPattern {
    aus: Arc<[AccessUnit]>,
    packetizer: Packetizer,
    initial_timestamp: u32,
    max_catch_up: u32,
    /// When frame `anchor_frame` was due.
    anchor: Instant,
    anchor_frame: u64,
    /// Next frame to send (counts across loops).
    next_frame: u64,
}

/// Access units of the shipped clip, parsed once per process.
fn shipped_clip() -> Arc<[AccessUnit]> {
    static AUS: OnceLock<Arc<[AccessUnit]>> = OnceLock::new();
    AUS.get_or_init(|| {
        // The shipped clip is checked by the unit tests (`h264::tests::shipped_clip_round_trips`);
        // an unreadable clip would be a build defect, not bad input.
        h264::access_units(CLIP)
            .map(Arc::from)
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    })
    .clone()
}

/// Why a clip cannot be used as a test pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The clip is not a readable Annex-B stream.
    #[error("clip is not a valid H.264 byte stream: {0}")]
    Clip(#[from] h264::Error),
    /// The clip must start with an IDR picture with its SPS and PPS so it can loop.
    #[error("clip does not start with an IDR access unit carrying SPS and PPS")]
    NoLeadingKeyFrame,
}

impl TestPattern {
    /// A source looping the shipped clip; the first frame is due at `now`.
    #[must_use]
    pub fn new(config: TestPatternConfig, now: Instant) -> Self {
        Self::with_access_units(shipped_clip(), config, now)
    }

    /// A source looping another Annex-B clip (it must start with SPS, PPS and an IDR).
    ///
    /// # Errors
    /// [`Error::Clip`] if the stream cannot be read, [`Error::NoLeadingKeyFrame`] if it does
    /// not start with a decodable key frame (or is empty).
    pub fn from_clip(clip: &[u8], config: TestPatternConfig, now: Instant) -> Result<Self, Error> {
        let aus = h264::access_units(clip)?;
        match aus.first() {
            Some(au) if au.is_key_frame() && au.has_parameter_sets() => {}
            _ => return Err(Error::NoLeadingKeyFrame),
        }
        Ok(Self::with_access_units(Arc::from(aus), config, now))
    }

    fn with_access_units(aus: Arc<[AccessUnit]>, config: TestPatternConfig, now: Instant) -> Self {
        TestPattern {
            aus,
            packetizer: Packetizer::new(config.packetizer),
            initial_timestamp: config.initial_timestamp,
            max_catch_up: config.max_catch_up.max(1),
            anchor: now,
            anchor_frame: 0,
            next_frame: 0,
        }
    }

    /// Frames in one loop of the clip.
    #[must_use]
    pub fn frames_per_loop(&self) -> usize {
        self.aus.len()
    }

    /// Index (counting across loops) of the next frame to be sent.
    #[must_use]
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// RTP timestamp of frame `frame` (counting across loops).
    #[must_use]
    pub fn timestamp_of(&self, frame: u64) -> u32 {
        // Wrapping arithmetic modulo 2^32 is what RTP timestamps do (RFC 3550 5.1).
        let ticks = frame.wrapping_mul(u64::from(TICKS_PER_FRAME)) as u32;
        self.initial_timestamp.wrapping_add(ticks)
    }

    /// Whether frame `frame` (counting across loops) is an IDR picture.
    #[must_use]
    pub fn is_key_frame(&self, frame: u64) -> bool {
        au_at(&self.aus, frame).is_some_and(AccessUnit::is_key_frame)
    }

    /// When the next frame is due.
    #[must_use]
    pub fn next_timeout(&self) -> Instant {
        self.due(self.next_frame)
    }

    fn due(&self, frame: u64) -> Instant {
        let n = u32::try_from(frame - self.anchor_frame).unwrap_or(u32::MAX);
        self.anchor + FRAME_INTERVAL * n
    }

    /// The RTP packets of every frame due at `now`, in order.
    #[must_use = "the packets are the stream"]
    pub fn poll(&mut self, now: Instant) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.poll_into(now, &mut out);
        out
    }

    /// As [`TestPattern::poll`], appending to `out`; returns the number of frames sent.
    pub fn poll_into(&mut self, now: Instant, out: &mut Vec<Bytes>) -> u32 {
        if self.aus.is_empty() {
            return 0;
        }
        // Late by more than max_catch_up frames: skip the missed time instead of bursting.
        let late_frame = self.next_frame + u64::from(self.max_catch_up);
        if self.due(late_frame) <= now {
            self.anchor = now;
            self.anchor_frame = self.next_frame;
        }
        let mut sent = 0;
        while self.due(self.next_frame) <= now && sent < self.max_catch_up {
            let frame = self.next_frame;
            let ts = self.timestamp_of(frame);
            if let Some(au) = au_at(&self.aus, frame) {
                self.packetizer.packetize(au, ts, out);
            }
            self.next_frame += 1;
            sent += 1;
        }
        sent
    }
}

/// The access unit sent as frame `frame` (counting across loops).
fn au_at(aus: &[AccessUnit], frame: u64) -> Option<&AccessUnit> {
    let len = u64::try_from(aus.len()).ok().filter(|&l| l > 0)?;
    aus.get(usize::try_from(frame % len).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any base instant; the tests then move a virtual clock from it.
    #[expect(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn hdr(pkt: &[u8]) -> (bool, u16, u32) {
        let p = rtp_types::RtpPacket::parse(pkt).expect("valid RTP");
        (p.marker_bit(), p.sequence_number(), p.timestamp())
    }

    #[test]
    fn frames_are_due_every_40_ms() {
        let t0 = t0();
        let mut tp = TestPattern::new(TestPatternConfig::default(), t0);
        assert_eq!(tp.next_timeout(), t0);
        let first = tp.poll(t0);
        assert!(!first.is_empty());
        assert!(h264::payload_starts_key_frame(&first[0][12..]));
        assert_eq!(tp.next_timeout(), t0 + FRAME_INTERVAL);
        assert!(tp.poll(t0 + Duration::from_millis(39)).is_empty());
        let second = tp.poll(t0 + FRAME_INTERVAL);
        assert_eq!(hdr(&second[0]).2, TICKS_PER_FRAME);
        // Three frames due at once: all three go, in order.
        let three = tp.poll(t0 + FRAME_INTERVAL * 4);
        let markers: Vec<u32> = three
            .iter()
            .filter(|p| hdr(p).0)
            .map(|p| hdr(p).2)
            .collect();
        assert_eq!(markers, vec![2 * 3600, 3 * 3600, 4 * 3600]);
    }

    #[test]
    fn sequence_and_timestamps_continue_across_loops() {
        let t0 = t0();
        let config = TestPatternConfig {
            packetizer: PacketizerConfig {
                initial_seq: 65000,
                ..PacketizerConfig::default()
            },
            initial_timestamp: u32::MAX - 10_000,
            ..TestPatternConfig::default()
        };
        let mut tp = TestPattern::new(config, t0);
        let per_loop = tp.frames_per_loop() as u32;
        assert_eq!(per_loop, 200);
        let mut last: Option<(u16, u32)> = None;
        let mut frames = 0u32;
        let mut key_frames = Vec::new();
        for n in 0..(per_loop * 2 + 10) {
            let now = t0 + FRAME_INTERVAL * n;
            assert_eq!(tp.next_timeout(), now);
            let pkts = tp.poll(now);
            assert!(!pkts.is_empty(), "frame {n} sent on time");
            if h264::payload_starts_key_frame(&pkts[0][12..]) {
                key_frames.push(n);
            }
            for (k, p) in pkts.iter().enumerate() {
                let (marker, seq, ts) = hdr(p);
                assert_eq!(marker, k + 1 == pkts.len(), "marker on last packet only");
                assert_eq!(ts, config.initial_timestamp.wrapping_add(n * 3600));
                if let Some((s, _)) = last {
                    assert_eq!(seq, s.wrapping_add(1), "no sequence gap");
                }
                last = Some((seq, ts));
            }
            frames += 1;
        }
        assert_eq!(frames, per_loop * 2 + 10);
        assert_eq!(key_frames, vec![0, 50, 100, 150, 200, 250, 300, 350, 400]);
        assert!(tp.is_key_frame(400) && !tp.is_key_frame(401));
    }

    #[test]
    fn a_stall_skips_instead_of_bursting() {
        let t0 = t0();
        let mut tp = TestPattern::new(TestPatternConfig::default(), t0);
        let _ = tp.poll(t0);
        // 10 s stall: at most max_catch_up (5) frames go, the rest is skipped.
        let late = t0 + Duration::from_secs(10);
        let pkts = tp.poll(late);
        let frames = pkts.iter().filter(|p| hdr(p).0).count();
        assert_eq!(frames, 1, "re-anchored at the stall: one frame now");
        assert_eq!(tp.next_timeout(), late + FRAME_INTERVAL);
        // Timestamps continue per frame, not per wall time.
        assert_eq!(hdr(pkts.last().unwrap()).2, TICKS_PER_FRAME);
    }

    #[test]
    fn other_clips_must_start_with_a_key_frame() {
        let t0 = t0();
        let c = TestPatternConfig::default();
        assert_eq!(
            TestPattern::from_clip(&[], c, t0).unwrap_err(),
            Error::NoLeadingKeyFrame
        );
        assert_eq!(
            TestPattern::from_clip(&[0, 0, 1, 0x41, 0x9a], c, t0).unwrap_err(),
            Error::NoLeadingKeyFrame
        );
        assert!(matches!(
            TestPattern::from_clip(&[9, 9, 9], c, t0),
            Err(Error::Clip(h264::Error::NoStartCode))
        ));
        let tp = TestPattern::from_clip(CLIP, c, t0).unwrap();
        assert_eq!(tp.frames_per_loop(), 200);
    }
}
