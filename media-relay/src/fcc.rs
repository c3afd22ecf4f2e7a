//! Fast channel change: key-frame detection and the per-channel GOP cache.
//!
//! How it fits: [`crate::relay`] runs every ingested RTP packet through [`classify`] and
//! [`GopCache::push`]. The cache holds the packets of the current group of pictures, from the
//! last key frame on, so a viewer that joins or zaps gets a decodable picture at once
//! (in the spirit of RFC 6285, "unicast-based rapid acquisition", without the RAMS signalling):
//! the relay bursts the cached packets (rewritten for the viewer) and then continues live.
//!
//! Key frames:
//! - H.264 (RFC 6184): single NAL unit packets (section 5.6) of type IDR (5), SPS (7), PPS (8);
//!   STAP-A (section 5.7.1, type 24), whose aggregated NAL units are looked into; FU-A (section
//!   5.8, type 28) with the start bit set and an IDR inner type. A key frame *starts* at the
//!   first key packet after non-key packets (so SPS, PPS, IDR slices in a row are one start).
//! - MPEG-2 TS over RTP (RFC 2250, payload type 33): any 188-byte TS packet in the payload with
//!   the adaptation field's `random_access_indicator` (ISO/IEC 13818-1 section 2.4.3.5), except
//!   on a TS packet that starts an audio PES (stream_id 0xC0..=0xDF), since many muxers mark
//!   every audio frame random-access.
//!
//! The last SPS and PPS seen are kept apart from the GOP, so a burst can start with parameter
//! sets even when the producer sends them only once or out of band; [`GopCache`] tells the relay
//! which to prepend.
//!
//! Memory is bounded: the cache has a byte and a packet limit. A stream that exceeds them (no key
//! frames, or a huge GOP) invalidates the cache until the next key frame; buffers are recycled
//! through a free list, so a steady stream allocates nothing once warm.

use std::collections::VecDeque;

use crate::rtp::{self, RtpInfo};

/// How the relay looks for key frames in a channel's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Guess from the payload type: 33 is MPEG-TS, anything else H.264.
    #[default]
    Auto,
    /// H.264 in RTP (RFC 6184).
    H264,
    /// MPEG-2 transport stream in RTP (RFC 2250).
    Mp2t,
    /// No key-frame detection (audio, unknown codecs): no cache, live packets only.
    Opaque,
}

impl MediaKind {
    /// The concrete kind for a packet of payload type `pt`.
    pub fn resolve(self, pt: u8) -> MediaKind {
        match self {
            MediaKind::Auto if pt == rtp::PT_MP2T => MediaKind::Mp2t,
            MediaKind::Auto => MediaKind::H264,
            other => other,
        }
    }
}

/// H.264 NAL unit types used here (H.264 Table 7-1, RFC 6184 Table 1).
mod nal {
    pub const NON_IDR: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;
}

/// What one packet means for the GOP cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketClass {
    /// The packet carries key-frame data (IDR slice start, SPS, PPS, TS random access point).
    pub key: bool,
    /// The packet starts a non-key picture (a non-IDR slice, a TS packet without RAI that starts
    /// a video PES); the next key packet then starts a new GOP.
    pub non_key: bool,
    /// Byte range of an SPS NAL unit inside the payload, if any.
    pub sps: Option<(usize, usize)>,
    /// Byte range of a PPS NAL unit inside the payload, if any.
    pub pps: Option<(usize, usize)>,
}

/// Classify an RTP payload of the given kind (already [`MediaKind::resolve`]d).
pub fn classify(kind: MediaKind, payload: &[u8]) -> PacketClass {
    match kind {
        MediaKind::H264 | MediaKind::Auto => classify_h264(payload),
        MediaKind::Mp2t => classify_mp2t(payload),
        MediaKind::Opaque => PacketClass::default(),
    }
}

fn note_nal(class: &mut PacketClass, nal_type: u8, start: usize, end: usize) {
    match nal_type {
        nal::IDR => class.key = true,
        nal::SPS => {
            class.key = true;
            class.sps = Some((start, end));
        }
        nal::PPS => {
            class.key = true;
            class.pps = Some((start, end));
        }
        nal::NON_IDR => class.non_key = true,
        _ => {}
    }
}

/// RFC 6184 sections 5.6-5.8.
fn classify_h264(payload: &[u8]) -> PacketClass {
    let mut class = PacketClass::default();
    let Some(&first) = payload.first() else {
        return class;
    };
    match first & 0x1f {
        nal::STAP_A => {
            // STAP-A: header byte, then (16-bit size, NAL unit)*.
            let mut i = 1;
            while i + 2 <= payload.len() {
                let size = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
                let start = i + 2;
                let end = start + size;
                if size == 0 || end > payload.len() {
                    break; // truncated aggregate: keep what was read
                }
                note_nal(&mut class, payload[start] & 0x1f, start, end);
                i = end;
            }
        }
        nal::FU_A => {
            // FU indicator, FU header (S E R Type); only the start fragment names a picture.
            if let Some(&fu_header) = payload.get(1) {
                if fu_header & 0x80 != 0 {
                    match fu_header & 0x1f {
                        nal::IDR => class.key = true,
                        nal::NON_IDR => class.non_key = true,
                        _ => {}
                    }
                }
            }
        }
        t => note_nal(&mut class, t, 0, payload.len()),
    }
    class
}

/// Size of an MPEG-2 TS packet (ISO/IEC 13818-1 section 2.4.3.2).
pub const TS_PACKET_LEN: usize = 188;

/// RFC 2250 section 2: the payload is an integral number of TS packets.
fn classify_mp2t(payload: &[u8]) -> PacketClass {
    let mut class = PacketClass::default();
    for ts in payload.chunks_exact(TS_PACKET_LEN) {
        if ts[0] != 0x47 {
            continue; // lost sync: not ours to repair
        }
        let pusi = ts[1] & 0x40 != 0;
        let afc = (ts[3] >> 4) & 0x3;
        let mut payload_start = 4;
        let mut rai = false;
        if afc & 0x2 != 0 {
            let af_len = ts[4] as usize;
            if af_len > 0 {
                rai = ts[5] & 0x40 != 0;
            }
            payload_start = 5 + af_len;
        }
        // PES header: 00 00 01 stream_id (ISO/IEC 13818-1 section 2.4.3.6).
        let stream_id = if pusi && afc & 0x1 != 0 {
            ts.get(payload_start..payload_start + 4)
                .filter(|p| p[..3] == [0, 0, 1])
                .map(|p| p[3])
        } else {
            None
        };
        let audio = matches!(stream_id, Some(0xc0..=0xdf));
        if rai && !audio {
            class.key = true;
        } else if matches!(stream_id, Some(0xe0..=0xef)) {
            class.non_key = true;
        }
    }
    if class.key {
        class.non_key = false;
    }
    class
}

/// Limits of one channel's GOP cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheLimits {
    /// Most bytes of RTP packets kept (headers included).
    pub max_bytes: usize,
    /// Most packets kept.
    pub max_packets: usize,
}

impl Default for CacheLimits {
    /// 4 MiB and 4096 packets: a 2 s GOP at 12 Mbit/s.
    fn default() -> Self {
        CacheLimits {
            max_bytes: 4 << 20,
            max_packets: 4096,
        }
    }
}

/// One cached RTP packet (bytes as received) and its parsed header.
#[derive(Debug)]
pub struct CachedPacket {
    /// The datagram as ingested.
    pub data: Vec<u8>,
    /// Its parsed header.
    pub info: RtpInfo,
}

/// What [`GopCache::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The packet starts a new GOP: the cache was reset and now begins with it.
    KeyFrameStart,
    /// Appended to the current GOP.
    Appended,
    /// Not cached: no key frame seen yet, the cache is invalid, or the kind is opaque.
    NotCached,
    /// Over the limits: the cache was dropped until the next key frame.
    Overflow,
}

/// The current GOP of one channel plus the last parameter sets seen.
#[derive(Debug)]
pub struct GopCache {
    limits: CacheLimits,
    packets: VecDeque<CachedPacket>,
    bytes: usize,
    /// True while the packets from the last key start on are all in `packets`.
    valid: bool,
    /// True while the packets being received belong to a key frame (no non-key seen since).
    in_key: bool,
    /// Whether the current GOP itself carries an SPS / a PPS.
    gop_has_sps: bool,
    gop_has_pps: bool,
    sps: Vec<u8>,
    pps: Vec<u8>,
    free: Vec<Vec<u8>>,
    key_frames: u64,
}

impl GopCache {
    /// An empty cache with these limits.
    pub fn new(limits: CacheLimits) -> Self {
        GopCache {
            limits,
            packets: VecDeque::new(),
            bytes: 0,
            valid: false,
            in_key: false,
            gop_has_sps: false,
            gop_has_pps: false,
            sps: Vec::new(),
            pps: Vec::new(),
            free: Vec::new(),
            key_frames: 0,
        }
    }

    fn clear(&mut self) {
        for p in self.packets.drain(..) {
            if self.free.len() < 64 {
                self.free.push(p.data);
            }
        }
        self.bytes = 0;
        self.gop_has_sps = false;
        self.gop_has_pps = false;
    }

    /// Feed one ingested packet (already classified) into the cache.
    pub fn push(&mut self, datagram: &[u8], info: &RtpInfo, class: &PacketClass) -> PushOutcome {
        let payload = info.payload(datagram);
        if let Some((s, e)) = class.sps {
            self.sps.clear();
            self.sps.extend_from_slice(&payload[s..e]);
        }
        if let Some((s, e)) = class.pps {
            self.pps.clear();
            self.pps.extend_from_slice(&payload[s..e]);
        }
        let mut outcome = PushOutcome::Appended;
        if class.key && !self.in_key {
            self.clear();
            self.valid = true;
            self.in_key = true;
            self.key_frames += 1;
            outcome = PushOutcome::KeyFrameStart;
        } else if class.non_key {
            self.in_key = false;
        }
        if !self.valid {
            return PushOutcome::NotCached;
        }
        if self.packets.len() + 1 > self.limits.max_packets
            || self.bytes + datagram.len() > self.limits.max_bytes
        {
            self.clear();
            self.valid = false;
            self.in_key = false;
            return PushOutcome::Overflow;
        }
        self.gop_has_sps |= class.sps.is_some();
        self.gop_has_pps |= class.pps.is_some();
        let mut data = self.free.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(datagram);
        self.bytes += data.len();
        self.packets.push_back(CachedPacket { data, info: *info });
        outcome
    }

    /// The cached GOP in order (empty when no valid key frame is cached).
    pub fn packets(&self) -> impl ExactSizeIterator<Item = &CachedPacket> + '_ {
        self.packets.iter()
    }

    /// Whether a burst can be made (a key frame is cached).
    pub fn is_valid(&self) -> bool {
        self.valid && !self.packets.is_empty()
    }

    /// Parameter sets to send before the cached GOP: the last SPS/PPS seen, for each one the
    /// GOP does not carry itself (in the order SPS, PPS).
    pub fn missing_parameter_sets(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let sps = (!self.gop_has_sps && !self.sps.is_empty()).then_some(self.sps.as_slice());
        let pps = (!self.gop_has_pps && !self.pps.is_empty()).then_some(self.pps.as_slice());
        sps.into_iter().chain(pps)
    }

    /// Key frames seen since the cache was made.
    pub fn key_frames(&self) -> u64 {
        self.key_frames
    }

    /// Packets and bytes cached now.
    pub fn len(&self) -> (usize, usize) {
        (self.packets.len(), self.bytes)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{write_header, HeaderRewrite};

    fn pkt(seq: u16, payload: &[u8]) -> (Vec<u8>, RtpInfo) {
        let mut v = Vec::new();
        write_header(
            &mut v,
            false,
            &HeaderRewrite {
                ssrc: 1,
                sequence: seq,
                timestamp: 0,
                payload_type: 96,
            },
        );
        v.extend_from_slice(payload);
        let info = rtp::parse(&v).unwrap();
        (v, info)
    }

    #[test]
    fn h264_classes() {
        assert!(classify_h264(&[0x65, 1, 2]).key); // IDR
        let c = classify_h264(&[0x67, 0x42, 0, 0x1f]); // SPS
        assert!(c.key && c.sps == Some((0, 4)));
        assert!(classify_h264(&[0x41, 1]).non_key); // non-IDR
                                                    // STAP-A with SPS (3 bytes) and PPS (2 bytes).
        let stap = [0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 9];
        let c = classify_h264(&stap);
        assert!(c.key);
        assert_eq!(c.sps, Some((3, 6)));
        assert_eq!(c.pps, Some((8, 10)));
        // FU-A: start of IDR, middle of IDR, start of non-IDR.
        assert!(classify_h264(&[0x7c, 0x85, 0]).key);
        assert_eq!(classify_h264(&[0x7c, 0x05, 0]), PacketClass::default());
        assert!(classify_h264(&[0x7c, 0x81, 0]).non_key);
        // Truncated STAP-A and empty payloads are harmless.
        assert_eq!(classify_h264(&[0x78, 0, 9, 0x67]), PacketClass::default());
        assert_eq!(classify_h264(&[]), PacketClass::default());
    }

    fn ts_packet(rai: bool, pes_stream: Option<u8>) -> [u8; 188] {
        let mut ts = [0xffu8; 188];
        ts[0] = 0x47;
        ts[1] = if pes_stream.is_some() { 0x40 } else { 0 } | 0x01;
        ts[2] = 0x00;
        ts[3] = 0x30; // adaptation field + payload
        ts[4] = 1; // adaptation field length
        ts[5] = if rai { 0x40 } else { 0 };
        if let Some(id) = pes_stream {
            ts[6..10].copy_from_slice(&[0, 0, 1, id]);
        }
        ts
    }

    #[test]
    fn mpeg_ts_random_access() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&ts_packet(false, None));
        payload.extend_from_slice(&ts_packet(true, Some(0xe0)));
        assert!(classify_mp2t(&payload).key);
        assert!(
            !classify_mp2t(&ts_packet(true, Some(0xc0))).key,
            "audio RAI"
        );
        assert!(classify_mp2t(&ts_packet(false, Some(0xe0))).non_key);
        assert!(!classify_mp2t(&ts_packet(false, None)).key);
        assert_eq!(classify_mp2t(&[0x47; 100]), PacketClass::default());
    }

    #[test]
    fn cache_resets_on_key_and_keeps_parameter_sets() {
        let mut c = GopCache::new(CacheLimits::default());
        let push = |c: &mut GopCache, seq, payload: &[u8]| {
            let (d, i) = pkt(seq, payload);
            c.push(&d, &i, &classify_h264(payload))
        };
        assert_eq!(push(&mut c, 1, &[0x41, 0]), PushOutcome::NotCached);
        assert_eq!(push(&mut c, 2, &[0x67, 7]), PushOutcome::KeyFrameStart);
        assert_eq!(push(&mut c, 3, &[0x68, 8]), PushOutcome::Appended);
        assert_eq!(push(&mut c, 4, &[0x65, 5]), PushOutcome::Appended);
        assert_eq!(push(&mut c, 5, &[0x41, 1]), PushOutcome::Appended);
        assert_eq!(c.len().0, 4);
        assert_eq!(c.missing_parameter_sets().count(), 0);
        // Next GOP: IDR only (no SPS/PPS in band).
        assert_eq!(push(&mut c, 6, &[0x65, 6]), PushOutcome::KeyFrameStart);
        assert_eq!(c.len().0, 1);
        let ps: Vec<&[u8]> = c.missing_parameter_sets().collect();
        assert_eq!(ps, vec![&[0x67u8, 7][..], &[0x68, 8][..]]);
        assert_eq!(c.key_frames(), 2);
    }

    #[test]
    fn cache_is_bounded() {
        let mut c = GopCache::new(CacheLimits {
            max_bytes: 1 << 20,
            max_packets: 10,
        });
        let (d, i) = pkt(0, &[0x65, 0]);
        assert_eq!(
            c.push(&d, &i, &classify_h264(&[0x65])),
            PushOutcome::KeyFrameStart
        );
        let mut overflowed = false;
        for seq in 1..1000u16 {
            let (d, i) = pkt(seq, &[0x41, 0]);
            let o = c.push(&d, &i, &classify_h264(&[0x41]));
            overflowed |= o == PushOutcome::Overflow;
            assert!(c.len().0 <= 10);
        }
        assert!(overflowed);
        assert!(!c.is_valid());
        // Byte limit.
        let mut c = GopCache::new(CacheLimits {
            max_bytes: 1000,
            max_packets: 1000,
        });
        for seq in 0..100u16 {
            let mut p = vec![0x65u8];
            p.resize(100, 0);
            let (d, i) = pkt(seq, &p);
            let _ = c.push(&d, &i, &classify_h264(&p));
            assert!(c.len().1 <= 1000);
        }
    }
}
