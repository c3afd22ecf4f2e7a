//! Splicing for personalised channels (design.md "Personalised channel"): one output stream
//! made of several sources in turn, which a viewer's decoder sees as one continuous stream.
//!
//! A [`Splicer`] is sans-IO. The relay (or a test) feeds it every packet of every source it may
//! switch among ([`Splicer::push`]) and tells it which source the schedule wants
//! ([`Splicer::switch_to`]). It forwards the packets of the *current* source with the output
//! stream's own header values and drops the rest. A switch takes effect only where the picture
//! can change cleanly:
//!
//! - **at a key frame of the new source**: the first packet of an access unit that carries key
//!   data (IDR slice, or SPS/PPS ahead of one; [`crate::fcc::classify`]), so the decoder gets
//!   parameter sets and an IDR picture first; no slice that refers to a picture it never saw;
//! - **after the old source's access unit is complete** (its marker bit, RFC 6184 section
//!   5.1): while the old source finishes its picture, the new source's key-frame packets wait
//!   in a bounded buffer ([`SpliceConfig::max_pending`]); past that bound the switch is forced
//!   and counted ([`SpliceStats::forced`]).
//! - **with the new source's parameter sets**: each source's last SPS and PPS are kept (H.264,
//!   at most [`MAX_PARAMETER_SET`] bytes each); when the key frame switched to does not start
//!   with an SPS of its own (a producer that sends parameter sets once, or out of band), the
//!   kept SPS and PPS go out first as single NAL unit packets (RFC 6184 section 5.6) with the
//!   key frame's timestamp ([`SpliceStats::parameter_sets`]), so a decoder that was fed another
//!   source (another resolution) never gets an IDR slice without the SPS/PPS it refers to.
//!
//! Header rewriting (RFC 3550 section 5.1):
//! - **SSRC**: always [`SpliceConfig::ssrc`]: one synchronisation source for the whole channel.
//! - **Sequence numbers**: `out = in + offset` per source segment, the offset chosen at the
//!   switch so the first packet of the new segment follows the last one sent. A source's own
//!   losses stay visible as gaps (receivers' loss statistics stay right); reordering survives.
//! - **Timestamps**: the same with an offset chosen so the new segment's first picture comes one
//!   frame interval after the last picture sent. The interval is the old source's last
//!   timestamp step between pictures (3000 ticks = 30 fps at 90 kHz when none was seen yet).
//! - **Payload type**: [`SpliceConfig::payload_type`] when set (sources may use different
//!   dynamic types), else the source's.
//!
//! Packets of sources that are not current cost only a header parse and, for the source being
//! switched to, a key-frame check. Memory is bounded by `max_pending`. Nothing here reads a
//! clock: a schedule of time slots is the caller's business.

use bytes::{Bytes, BytesMut};

use crate::fcc::{self, MediaKind};
use crate::rtp::{self, HeaderRewrite};

/// Which source of a splicer a packet belongs to (the caller's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// Settings of one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceConfig {
    /// SSRC of the output stream.
    pub ssrc: u32,
    /// Sequence number of the first packet sent.
    pub first_sequence: u16,
    /// Timestamp of the first picture sent.
    pub first_timestamp: u32,
    /// Payload type written on every packet (`None`: keep each source's).
    pub payload_type: Option<u8>,
    /// How key frames are found (H.264 or MPEG-TS; `Auto` guesses from the payload type).
    pub kind: MediaKind,
    /// Most packets of the new source held back while the old one finishes its picture.
    pub max_pending: usize,
}

impl Default for SpliceConfig {
    fn default() -> Self {
        Self {
            ssrc: 0x5a11_ce00,
            first_sequence: 0,
            first_timestamp: 0,
            payload_type: None,
            kind: MediaKind::Auto,
            max_pending: 256,
        }
    }
}

/// Why a packet was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpliceError {
    /// Not an RTP packet (or RTCP).
    #[error("not an RTP packet: {0}")]
    NotRtp(String),
}

/// Largest SPS or PPS kept per source (larger ones are not kept).
pub const MAX_PARAMETER_SET: usize = 512;

/// Counters of a splicer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpliceStats {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Packets of sources that were not current (dropped by design).
    pub skipped: u64,
    /// Switches done at a key frame after a complete picture.
    pub switches: u64,
    /// Switches done with the old source's picture incomplete (`max_pending` reached).
    pub forced: u64,
    /// Parameter-set packets (kept SPS/PPS) sent ahead of a key frame that lacked them.
    pub parameter_sets: u64,
}

/// Per-source state: where its last packet left off, to find access-unit starts, and its last
/// parameter sets.
#[derive(Debug, Clone, Default)]
struct SourceTrack {
    /// Timestamp and marker bit of the source's last packet.
    last: Option<(u32, bool)>,
    /// Last SPS / PPS NAL unit seen (H.264), empty if none.
    sps: Vec<u8>,
    pps: Vec<u8>,
}

impl SourceTrack {
    /// Whether a packet with `timestamp` starts a new access unit, then remembers it.
    fn observe(&mut self, timestamp: u32, marker: bool) -> bool {
        let starts = match self.last {
            None => true,
            Some((ts, m)) => m || ts != timestamp,
        };
        self.last = Some((timestamp, marker));
        starts
    }
}

/// The output side: offsets of the current segment and what was sent last.
#[derive(Debug, Clone, Copy)]
struct Segment {
    source: SourceId,
    seq_offset: u16,
    ts_offset: u32,
}

/// One spliced output stream (module docs).
#[derive(Debug)]
pub struct Splicer {
    cfg: SpliceConfig,
    tracks: Vec<(SourceId, SourceTrack)>,
    current: Option<Segment>,
    /// The source the schedule wants, when it is not yet current.
    wanted: Option<SourceId>,
    /// Key-frame packets of `wanted` held while the current picture completes.
    pending: Vec<Bytes>,
    /// Last output sequence number and timestamp, and whether that packet ended a picture.
    last_out: Option<(u16, u32, bool)>,
    /// Output timestamp step between the last two pictures sent.
    frame_step: u32,
    stats: SpliceStats,
}

/// Frame interval assumed before one was seen: 30 fps at 90 kHz.
const DEFAULT_FRAME_STEP: u32 = 3000;

impl Splicer {
    /// A splicer with no source selected: it forwards nothing until [`Splicer::switch_to`].
    #[must_use]
    pub fn new(cfg: SpliceConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            current: None,
            wanted: None,
            pending: Vec::new(),
            last_out: None,
            frame_step: DEFAULT_FRAME_STEP,
            stats: SpliceStats::default(),
        }
    }

    /// Asks for `source`; it becomes current at its next key frame (module docs). Asking for
    /// the current source cancels a pending switch.
    pub fn switch_to(&mut self, source: SourceId) {
        if self.current.map(|s| s.source) == Some(source) {
            self.wanted = None;
        } else if self.wanted != Some(source) {
            self.wanted = Some(source);
        }
        self.pending.clear();
    }

    /// The source being forwarded.
    #[must_use]
    pub fn current(&self) -> Option<SourceId> {
        self.current.map(|s| s.source)
    }

    /// The source waited for, if a switch is pending.
    #[must_use]
    pub fn wanted(&self) -> Option<SourceId> {
        self.wanted
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> SpliceStats {
        self.stats
    }

    fn track(&mut self, source: SourceId) -> &mut SourceTrack {
        let i = match self.tracks.iter().position(|(s, _)| *s == source) {
            Some(i) => i,
            None => {
                self.tracks.push((source, SourceTrack::default()));
                self.tracks.len() - 1
            }
        };
        &mut self.tracks[i].1
    }

    /// Takes one packet of `source`; what is to be sent goes to `out`, in order.
    pub fn push(
        &mut self,
        source: SourceId,
        datagram: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), SpliceError> {
        if rtp::is_rtcp(datagram) {
            return Err(SpliceError::NotRtp("RTCP".into()));
        }
        let info = rtp::parse(datagram).map_err(|e| SpliceError::NotRtp(e.to_string()))?;
        let kind = self.cfg.kind.resolve(info.payload_type);
        let class = fcc::classify(kind, info.payload(datagram));
        let track = self.track(source);
        let starts_au = track.observe(info.timestamp, info.marker);
        let payload = info.payload(datagram);
        for (range, kept) in [(class.sps, &mut track.sps), (class.pps, &mut track.pps)] {
            if let Some(nal) = range.and_then(|(s, e)| payload.get(s..e)) {
                if nal.len() <= MAX_PARAMETER_SET {
                    kept.clear();
                    kept.extend_from_slice(nal);
                }
            }
        }
        let is_current = self.current.map(|s| s.source) == Some(source);

        if self.wanted == Some(source) {
            let holding = !self.pending.is_empty();
            let key_start = starts_au && class.key;
            if holding || key_start {
                self.pending.push(Bytes::copy_from_slice(datagram));
                let old_done = self.last_out.is_none_or(|(_, _, m)| m) || self.current.is_none();
                if old_done {
                    self.splice(source, false, out);
                } else if self.pending.len() >= self.cfg.max_pending.max(1) {
                    self.splice(source, true, out);
                }
                return Ok(());
            }
        }
        if !is_current {
            self.stats.skipped += 1;
            return Ok(());
        }
        self.forward(datagram, out);
        // The old source just finished its picture: a held key frame can go now.
        if info.marker && !self.pending.is_empty() {
            if let Some(w) = self.wanted {
                self.splice(w, false, out);
            }
        }
        Ok(())
    }

    /// Makes `source` current from the first held packet and sends the held packets, after
    /// the source's kept SPS/PPS when the held key frame lacks them (module docs).
    fn splice(&mut self, source: SourceId, forced: bool, out: &mut Vec<Bytes>) {
        let mut held = std::mem::take(&mut self.pending);
        let Some(first) = held.first().and_then(|p| rtp::parse(p).ok()) else {
            return;
        };
        let added = self.prepend_parameter_sets(source, &first, &mut held);
        self.stats.parameter_sets += added;
        let Some(first) = held.first().and_then(|p| rtp::parse(p).ok()) else {
            return;
        };
        let (seq_offset, ts_offset) = match self.last_out {
            None => (
                self.cfg.first_sequence.wrapping_sub(first.sequence),
                self.cfg.first_timestamp.wrapping_sub(first.timestamp),
            ),
            Some((seq, ts, _)) => (
                seq.wrapping_add(1).wrapping_sub(first.sequence),
                ts.wrapping_add(self.frame_step)
                    .wrapping_sub(first.timestamp),
            ),
        };
        self.current = Some(Segment {
            source,
            seq_offset,
            ts_offset,
        });
        self.wanted = None;
        if forced {
            self.stats.forced += 1;
        } else {
            self.stats.switches += 1;
        }
        for p in &held {
            self.forward(p, out);
        }
    }

    /// Puts the source's kept SPS and PPS in front of `held` (a key frame starting with
    /// `first`) when the held packets carry no SPS (a key frame with in-band parameter sets
    /// starts with them; its PPS may still be on its way); they take the sequence numbers just
    /// before `first` and its timestamp. Returns how many packets were added.
    fn prepend_parameter_sets(
        &self,
        source: SourceId,
        first: &rtp::RtpInfo,
        held: &mut Vec<Bytes>,
    ) -> u64 {
        let kind = self.cfg.kind.resolve(first.payload_type);
        if !matches!(kind, MediaKind::H264 | MediaKind::Auto) {
            return 0;
        }
        let Some(track) = self
            .tracks
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, t)| t)
        else {
            return 0;
        };
        let has_sps = held
            .iter()
            .any(|p| rtp::parse(p).is_ok_and(|i| fcc::classify(kind, i.payload(p)).sps.is_some()));
        if has_sps {
            return 0;
        }
        let missing: Vec<&[u8]> = [&track.sps, &track.pps]
            .into_iter()
            .filter(|kept| !kept.is_empty())
            .map(Vec::as_slice)
            .collect();
        let n = missing.len() as u16;
        let mut extra = Vec::with_capacity(missing.len() + held.len());
        for (i, nal) in missing.iter().enumerate() {
            let mut p = Vec::with_capacity(rtp::FIXED_HEADER_LEN + nal.len());
            rtp::write_header(
                &mut p,
                false,
                &HeaderRewrite {
                    ssrc: first.ssrc,
                    sequence: first.sequence.wrapping_sub(n - i as u16),
                    timestamp: first.timestamp,
                    payload_type: first.payload_type,
                },
            );
            p.extend_from_slice(nal);
            extra.push(Bytes::from(p));
        }
        if extra.is_empty() {
            return 0;
        }
        extra.append(held);
        *held = extra;
        u64::from(n)
    }

    /// Rewrites one packet of the current segment into `out`.
    fn forward(&mut self, datagram: &[u8], out: &mut Vec<Bytes>) {
        let (Some(seg), Ok(info)) = (self.current, rtp::parse(datagram)) else {
            return;
        };
        let rw = HeaderRewrite {
            ssrc: self.cfg.ssrc,
            sequence: info.sequence.wrapping_add(seg.seq_offset),
            timestamp: info.timestamp.wrapping_add(seg.ts_offset),
            payload_type: self.cfg.payload_type.unwrap_or(info.payload_type),
        };
        if let Some((_, last_ts, _)) = self.last_out {
            let step = rw.timestamp.wrapping_sub(last_ts);
            // A forward step of less than a second is a picture interval worth remembering.
            if step != 0 && step < 90_000 {
                self.frame_step = step;
            }
        }
        let mut b = BytesMut::from(datagram);
        rtp::rewrite_header(&mut b, &rw);
        self.last_out = Some((rw.sequence, rw.timestamp, info.marker));
        self.stats.forwarded += 1;
        out.push(b.freeze());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet: `nal` is the single NAL unit's header byte (5 IDR, 1 non-IDR, 7 SPS).
    fn pkt(seq: u16, ts: u32, ssrc: u32, marker: bool, nal: u8) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write_header(
            &mut v,
            marker,
            &HeaderRewrite {
                ssrc,
                sequence: seq,
                timestamp: ts,
                payload_type: 96,
            },
        );
        v.extend_from_slice(&[0x60 | nal, 0xaa, 0xbb]);
        v
    }

    /// A source: pictures of `per` packets, key frame every `gop` pictures, 3000 ticks apart.
    struct Src {
        ssrc: u32,
        seq: u16,
        ts: u32,
        pic: u32,
        gop: u32,
        per: u16,
    }

    impl Src {
        fn picture(&mut self) -> Vec<Vec<u8>> {
            let key = self.pic % self.gop == 0;
            let mut v = Vec::new();
            for i in 0..self.per {
                let nal = if key && i == 0 {
                    7
                } else if key {
                    5
                } else {
                    1
                };
                v.push(pkt(self.seq, self.ts, self.ssrc, i + 1 == self.per, nal));
                self.seq = self.seq.wrapping_add(1);
            }
            self.ts = self.ts.wrapping_add(3000);
            self.pic += 1;
            v
        }
    }

    fn info(p: &Bytes) -> rtp::RtpInfo {
        rtp::parse(p).unwrap()
    }

    #[test]
    fn first_source_starts_at_its_key_frame_with_configured_bases() {
        let mut s = Splicer::new(SpliceConfig {
            ssrc: 42,
            first_sequence: 1000,
            first_timestamp: 7,
            payload_type: Some(100),
            ..SpliceConfig::default()
        });
        let mut a = Src {
            ssrc: 1,
            seq: 50,
            ts: 9000,
            pic: 1,
            gop: 4,
            per: 2,
        };
        s.switch_to(SourceId(0));
        let mut out = Vec::new();
        for _ in 0..6 {
            for p in a.picture() {
                s.push(SourceId(0), &p, &mut out).unwrap();
            }
        }
        // Pictures 1..3 are not key: skipped; 4 is key: first out, then 5, 6.
        assert_eq!(out.len(), 6);
        let first = info(&out[0]);
        assert_eq!(
            (
                first.ssrc,
                first.sequence,
                first.timestamp,
                first.payload_type
            ),
            (42, 1000, 7, 100)
        );
        for w in out.windows(2) {
            assert_eq!(info(&w[1]).sequence, info(&w[0]).sequence.wrapping_add(1));
        }
        assert_eq!(info(&out[5]).timestamp, 7 + 2 * 3000);
        assert_eq!(s.stats().skipped, 6);
    }

    #[test]
    fn switch_waits_for_new_key_frame_and_old_picture_end_then_continues_numbering() {
        let mut s = Splicer::new(SpliceConfig {
            ssrc: 9,
            ..SpliceConfig::default()
        });
        let mut a = Src {
            ssrc: 1,
            seq: 65_530,
            ts: u32::MAX - 5000,
            pic: 0,
            gop: 3,
            per: 3,
        };
        let mut b = Src {
            ssrc: 2,
            seq: 7,
            ts: 123_456,
            pic: 1,
            gop: 3,
            per: 2,
        };
        let mut out = Vec::new();
        s.switch_to(SourceId(0));
        for _ in 0..2 {
            for p in a.picture() {
                s.push(SourceId(0), &p, &mut out).unwrap();
            }
            for p in b.picture() {
                s.push(SourceId(1), &p, &mut out).unwrap();
            }
        }
        assert_eq!(s.current(), Some(SourceId(0)));
        s.switch_to(SourceId(1));
        // Interleave B's key picture with A's picture in progress: A's first packet arrives,
        // then B's key frame, then the rest of A's picture.
        let a_pic = a.picture();
        let b_pic = b.picture(); // picture 3: key (3 % 3 == 0)
        s.push(SourceId(0), &a_pic[0], &mut out).unwrap();
        for p in &b_pic {
            s.push(SourceId(1), p, &mut out).unwrap();
        }
        assert_eq!(
            s.current(),
            Some(SourceId(0)),
            "held until A's picture ends"
        );
        s.push(SourceId(0), &a_pic[1], &mut out).unwrap();
        s.push(SourceId(0), &a_pic[2], &mut out).unwrap();
        assert_eq!(s.current(), Some(SourceId(1)));
        for p in b.picture() {
            s.push(SourceId(1), &p, &mut out).unwrap();
        }
        for p in a.picture() {
            s.push(SourceId(0), &p, &mut out).unwrap();
        }
        // Continuous numbering across the switch, one SSRC, pictures one step apart.
        for w in out.windows(2) {
            let (x, y) = (info(&w[0]), info(&w[1]));
            assert_eq!(y.sequence, x.sequence.wrapping_add(1));
            assert_eq!(y.ssrc, 9);
            let step = y.timestamp.wrapping_sub(x.timestamp);
            assert!(step == 0 || step == 3000, "step {step}");
        }
        assert_eq!(s.stats().switches, 2);
        assert_eq!(s.stats().forced, 0);
        // 3 pictures of A (9 packets) + 2 of B (4 packets).
        assert_eq!(out.len(), 13);
    }

    #[test]
    fn a_source_that_never_finishes_its_picture_is_cut_after_max_pending() {
        let mut s = Splicer::new(SpliceConfig {
            max_pending: 4,
            ..SpliceConfig::default()
        });
        let mut out = Vec::new();
        s.switch_to(SourceId(0));
        // A: a key packet without marker, then nothing.
        s.push(SourceId(0), &pkt(1, 0, 1, false, 5), &mut out)
            .unwrap();
        s.switch_to(SourceId(1));
        for i in 0..4u16 {
            let nal = if i == 0 { 5 } else { 1 };
            s.push(
                SourceId(1),
                &pkt(100 + i, 500 + u32::from(i) * 3000, 2, true, nal),
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(s.current(), Some(SourceId(1)));
        assert_eq!(s.stats().forced, 1);
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn parameter_sets_sent_once_by_a_source_are_replayed_at_the_switch() {
        let mut s = Splicer::new(SpliceConfig {
            ssrc: 5,
            ..SpliceConfig::default()
        });
        let mut out = Vec::new();
        s.switch_to(SourceId(0));
        // A: IDR pictures only; B: SPS (7) and PPS (8) once at its start, then IDR/non-IDR.
        s.push(SourceId(0), &pkt(10, 0, 1, true, 5), &mut out)
            .unwrap();
        s.push(SourceId(1), &pkt(100, 50, 2, false, 7), &mut out)
            .unwrap();
        s.push(SourceId(1), &pkt(101, 50, 2, false, 8), &mut out)
            .unwrap();
        s.push(SourceId(1), &pkt(102, 50, 2, true, 5), &mut out)
            .unwrap();
        s.push(SourceId(1), &pkt(103, 3050, 2, true, 1), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "only A so far");
        s.switch_to(SourceId(1));
        s.push(SourceId(0), &pkt(11, 3000, 1, true, 1), &mut out)
            .unwrap();
        s.push(SourceId(1), &pkt(104, 6050, 2, true, 5), &mut out)
            .unwrap();
        assert_eq!(s.current(), Some(SourceId(1)));
        // A's two pictures, then B's kept SPS and PPS, then B's IDR.
        let nals: Vec<u8> = out.iter().map(|p| p[12] & 0x1f).collect();
        assert_eq!(nals, vec![5, 1, 7, 8, 5]);
        for w in out.windows(2) {
            assert_eq!(info(&w[1]).sequence, info(&w[0]).sequence.wrapping_add(1));
            assert_eq!(info(&w[1]).ssrc, 5);
        }
        let ts: Vec<u32> = out.iter().map(|p| info(p).timestamp).collect();
        assert_eq!(ts[2], ts[4], "parameter sets carry the IDR's timestamp");
        assert_eq!(ts[4].wrapping_sub(ts[1]), 3000);
        assert!(!info(&out[2]).marker && !info(&out[3]).marker);
        assert_eq!(s.stats().parameter_sets, 2);
        // A key frame with its own SPS/PPS gets nothing added.
        s.switch_to(SourceId(0));
        s.push(SourceId(0), &pkt(12, 9000, 1, false, 7), &mut out)
            .unwrap();
        s.push(SourceId(0), &pkt(13, 9000, 1, false, 8), &mut out)
            .unwrap();
        s.push(SourceId(0), &pkt(14, 9000, 1, true, 5), &mut out)
            .unwrap();
        assert_eq!(s.current(), Some(SourceId(0)));
        assert_eq!(s.stats().parameter_sets, 2);
        assert_eq!(out.len(), 8);
    }

    #[test]
    fn junk_and_rtcp_are_errors_not_panics() {
        let mut s = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        assert!(s.push(SourceId(0), &[], &mut out).is_err());
        assert!(s.push(SourceId(0), &[0x80, 200, 0, 1], &mut out).is_err());
        assert!(s.push(SourceId(0), &[0x80; 5], &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn switching_back_to_current_cancels() {
        let mut s = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        s.switch_to(SourceId(0));
        s.push(SourceId(0), &pkt(1, 0, 1, true, 5), &mut out)
            .unwrap();
        s.switch_to(SourceId(1));
        assert_eq!(s.wanted(), Some(SourceId(1)));
        s.switch_to(SourceId(0));
        assert_eq!(s.wanted(), None);
        s.push(SourceId(1), &pkt(1, 0, 2, true, 5), &mut out)
            .unwrap();
        assert_eq!(s.current(), Some(SourceId(0)));
        assert_eq!(out.len(), 1);
    }
}
