//! The relay as a live RFC 5760 feedback target: every channel on a relay gets a
//! [`FeedbackTarget`], and the viewer RTCP the relay already receives on its RTCP socket
//! ([`crate::relay::Relay::handle_viewer_rtcp`]) is also fed here once the relay has matched
//! the datagram to one of its viewers.
//!
//! How it fits: the relay core owns one [`LiveFeedback`]; for a matched viewer it calls
//! [`LiveFeedback::on_viewer_rtcp`] with the viewer's channel and the SSRC the relay sends that
//! viewer (RFC 3550 section 7.2: the relay is a translator that owns each viewer's numbering,
//! so viewers' report blocks name that SSRC, not the producer's). Receiver report blocks about
//! it become the viewer's [`ViewerReport`] (loss, jitter, and RTT from LSR/DLSR of the relay's
//! own SRs, RFC 3550 section 6.4.1); APP `VOTE` subtype 0 packets (RFC 3550 section 6.7; layout
//! in [`crate::feedback::aggregate`]) are votes. Viewers are keyed by the relay's SSRC for them,
//! which is unique per viewer at the relay, so a viewer counts once per poll whatever SSRC it
//! uses itself: its latest vote. Votes outlive the viewer's membership (a viewer that left
//! still voted); quality covers viewers heard within the member timeout.
//! [`LiveFeedback::summary`] gives the [`FeedbackSummary`] the control API returns
//! ([`crate::control::RelayHandle::feedback`]). Nothing here runs per forwarded RTP packet.
//! Sans-IO: the wallclock needed for RTT comes from the relay's timer calls
//! ([`LiveFeedback::set_wall`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use rtcp_types::{Compound, Packet, RtcpPacketParserExt};

use crate::control::{ChannelId, FeedbackSummary, QualityDistribution};
use crate::feedback::aggregate::{
    rtt_from_lsr_dlsr, FeedbackTarget, FtConfig, Histogram, ViewerReport, VOTE_SUBTYPE_CAST,
};
use crate::rtcp;

/// Most polls one viewer's votes are kept for.
pub const MAX_POLLS_PER_VIEWER: usize = 16;
/// Most viewers whose votes a channel keeps (bounds memory against SSRC floods).
pub const MAX_VOTERS_PER_CHANNEL: usize = 1 << 20;
/// Session bandwidth assumed for a channel's FT interval computations, bit/s.
const SESSION_BPS: f64 = 2_000_000.0;

/// One channel's feedback target and votes.
#[derive(Debug)]
struct ChannelFeedback {
    ft: FeedbackTarget,
    /// Relay SSRC of the viewer -> poll -> option.
    votes: HashMap<u32, BTreeMap<u32, u32>>,
}

/// What one datagram brought (for counters and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveHandled {
    /// Report blocks about the viewer's stream.
    pub reports: u32,
    /// Votes taken.
    pub votes: u32,
}

/// The feedback targets of every channel on a relay.
#[derive(Debug, Default)]
pub struct LiveFeedback {
    channels: HashMap<ChannelId, ChannelFeedback>,
    /// A monotonic instant and the wallclock read with it.
    anchor: Option<(Instant, SystemTime)>,
    member_timeout: Option<Duration>,
}

impl LiveFeedback {
    /// No channels yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Override the FT member timeout (default that of [`FtConfig::new`]) for channels made
    /// from now on.
    pub fn set_member_timeout(&mut self, t: Duration) {
        self.member_timeout = Some(t);
    }

    /// The wallclock `wall` read together with `now` (for RTT from LSR/DLSR).
    pub fn set_wall(&mut self, now: Instant, wall: SystemTime) {
        self.anchor = Some((now, wall));
    }

    fn arrival_ntp(&self, now: Instant) -> Option<u64> {
        let (at, wall) = self.anchor?;
        let w = if now >= at {
            wall.checked_add(now - at)?
        } else {
            wall.checked_sub(at - now)?
        };
        Some(rtcp::ntp_timestamp(w))
    }

    fn channel(&mut self, channel: &ChannelId) -> &mut ChannelFeedback {
        let timeout = self.member_timeout;
        self.channels.entry(channel.clone()).or_insert_with(|| {
            let mut cfg = FtConfig::new(0, 0, SESSION_BPS);
            if let Some(t) = timeout {
                cfg.member_timeout = t;
            }
            ChannelFeedback {
                ft: FeedbackTarget::new(cfg),
                votes: HashMap::new(),
            }
        })
    }

    /// Feed one RTCP datagram that the relay matched to the viewer it sends as `viewer_ssrc`
    /// on `channel`. A datagram that does not parse brings nothing (the relay already counted
    /// it as malformed).
    pub fn on_viewer_rtcp(
        &mut self,
        now: Instant,
        channel: &ChannelId,
        viewer_ssrc: u32,
        datagram: &[u8],
    ) -> LiveHandled {
        let mut h = LiveHandled::default();
        let Ok(compound) = Compound::parse(datagram) else {
            return h;
        };
        let arrival_ntp = self.arrival_ntp(now);
        let mut reports: Vec<ViewerReport> = Vec::new();
        let mut votes: Vec<(u32, u32)> = Vec::new();
        for p in compound {
            match p {
                Ok(Packet::Rr(rr)) => {
                    for rb in rr.report_blocks() {
                        if rb.ssrc() != viewer_ssrc {
                            continue;
                        }
                        let cum = rb.cumulative_lost();
                        // 24-bit signed: negative (duplicates) counts as 0.
                        let cum = if cum & 0x80_0000 != 0 { 0 } else { cum };
                        let rtt_ms = arrival_ntp.and_then(|ntp| {
                            rtt_from_lsr_dlsr(
                                ntp,
                                rb.last_sender_report_timestamp(),
                                rb.delay_since_last_sender_report_timestamp(),
                            )
                        });
                        reports.push(ViewerReport {
                            ssrc: viewer_ssrc,
                            fraction_lost: rb.fraction_lost(),
                            cumulative_lost: cum,
                            jitter: rb.interarrival_jitter(),
                            rtt_ms,
                        });
                    }
                }
                Ok(Packet::App(app))
                    if app.name() == *b"VOTE" && app.count() == VOTE_SUBTYPE_CAST =>
                {
                    let d = app.data();
                    if d.len() == 8 && votes.len() < MAX_POLLS_PER_VIEWER {
                        let poll = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                        let option = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                        votes.push((poll, option));
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let size = datagram.len() + 28;
        let c = self.channel(channel);
        for r in reports {
            c.ft.on_viewer_report(now, r, size);
            h.reports += 1;
        }
        if !votes.is_empty() {
            c.ft.add_viewer(viewer_ssrc, now);
            let room = c.votes.len() < MAX_VOTERS_PER_CHANNEL;
            if let Some(mine) = if room {
                Some(c.votes.entry(viewer_ssrc).or_default())
            } else {
                c.votes.get_mut(&viewer_ssrc)
            } {
                for (poll, option) in votes {
                    if mine.len() < MAX_POLLS_PER_VIEWER || mine.contains_key(&poll) {
                        mine.insert(poll, option);
                        h.votes += 1;
                    }
                }
            }
        }
        h
    }

    /// The viewer the relay sent as `viewer_ssrc` left: its quality no longer counts (its
    /// votes do).
    pub fn remove_viewer(&mut self, channel: &ChannelId, viewer_ssrc: u32) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.ft.remove_viewer(viewer_ssrc);
        }
    }

    /// The channel is gone from the relay.
    pub fn remove_channel(&mut self, channel: &ChannelId) {
        self.channels.remove(channel);
    }

    /// The channel's summary at `now` (members not heard within the timeout expire first);
    /// an empty summary for a channel nobody reported on.
    pub fn summary(&mut self, now: Instant, channel: &ChannelId) -> FeedbackSummary {
        let mut out = FeedbackSummary::empty(channel.clone());
        let Some(c) = self.channels.get_mut(channel) else {
            return out;
        };
        c.ft.expire(now);
        let s = c.ft.summary();
        out.viewers_heard = s.group_size;
        out.viewers_reporting = s.loss.total();
        out.loss = dist(&s.loss);
        out.jitter = dist(&s.jitter);
        out.rtt_ms = dist(&s.rtt);
        for choices in c.votes.values() {
            if choices.is_empty() {
                continue;
            }
            out.voters += 1;
            for (&poll, &option) in choices {
                *out.votes
                    .entry(poll)
                    .or_default()
                    .entry(option)
                    .or_default() += 1;
            }
        }
        out
    }
}

fn dist(h: &Histogram) -> QualityDistribution {
    let b = h.binning();
    QualityDistribution::from_bins(b.min, b.max, h.counts().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::aggregate::write_vote;
    use rtcp_types::{ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};

    fn rr(out: &mut Vec<u8>, ssrc: u32, about: u32, lost: u8) {
        let p = ReceiverReport::builder(ssrc).add_report_block(
            ReportBlock::builder(about)
                .fraction_lost(lost)
                .interarrival_jitter(900),
        );
        let mut b = vec![0u8; p.calculate_size().unwrap()];
        p.write_into(&mut b).unwrap();
        out.extend_from_slice(&b);
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "a fixed origin for the virtual clock"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn latest_vote_per_viewer_and_reports_counted() {
        let now = t0();
        let ch = ChannelId("news".into());
        let mut f = LiveFeedback::new();
        for v in 0..10u32 {
            let mut d = Vec::new();
            rr(&mut d, 1000 + v, 50 + v, if v < 5 { 0 } else { 128 });
            write_vote(&mut d, 1000 + v, 7, v % 3).unwrap();
            let h = f.on_viewer_rtcp(now, &ch, 50 + v, &d);
            assert_eq!(
                h,
                LiveHandled {
                    reports: 1,
                    votes: 1
                }
            );
        }
        // Viewer 0 changes its vote to option 2; a report about another SSRC is ignored.
        let mut d = Vec::new();
        rr(&mut d, 1000, 999, 0);
        write_vote(&mut d, 1000, 7, 2).unwrap();
        assert_eq!(f.on_viewer_rtcp(now, &ch, 50, &d).reports, 0);
        let s = f.summary(now, &ch);
        assert_eq!(s.viewers_reporting, 10);
        assert_eq!(s.voters, 10);
        let poll = &s.votes[&7];
        // options: v%3 -> 0:{0,3,6,9} 1:{1,4,7} 2:{2,5,8}; viewer 0 moved 0 -> 2.
        assert_eq!(poll.get(&0), Some(&3));
        assert_eq!(poll.get(&1), Some(&3));
        assert_eq!(poll.get(&2), Some(&4));
        assert_eq!(s.loss.count, 10);
        assert_eq!(s.loss.counts[0], 5);
        // Quality expires, votes stay.
        let later = now + Duration::from_secs(3600);
        let s = f.summary(later, &ch);
        assert_eq!(s.viewers_reporting, 0);
        assert_eq!(s.votes[&7].values().sum::<u64>(), 10);
        // Merging two relays adds.
        let mut m = s.clone();
        m.merge(&s);
        assert_eq!(m.votes[&7][&2], 8);
    }

    #[test]
    fn garbage_is_ignored() {
        let now = t0();
        let ch = ChannelId("c".into());
        let mut f = LiveFeedback::new();
        assert_eq!(
            f.on_viewer_rtcp(now, &ch, 1, &[0x80, 201, 0, 7]),
            LiveHandled::default()
        );
        assert_eq!(f.summary(now, &ch).viewers_heard, 0);
    }
}
