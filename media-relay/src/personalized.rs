//! Personalised channels (design.md "Personalised channel"): a relay channel whose packets are
//! spliced from other relay channels by a schedule of time slots.
//!
//! How it fits: a personalised channel is an ordinary channel of the core
//! ([`crate::relay::Relay`]): it has a GOP cache and viewers like any other, and viewers join,
//! zap and leave it the same way. Only its input differs: no ingest socket, but a
//! [`Splicer`] fed with the packets of its *source* channels. The core
//! hands every packet ingested on a source channel to the [`Registry`] (one hash lookup per
//! packet, none at all while no personalised channel exists); the registry runs the schedule,
//! pushes the packet into the splicer of each personalised channel using that source, and the
//! core ingests what comes out into the personalised channel, whose viewers get it through the
//! normal fan-out (one copy of each spliced packet, whatever the number of viewers; the
//! sources keep their own viewers untouched).
//!
//! Schedule: slots `(source channel, seconds)` that repeat from the creation instant. When the
//! slot changes the splicer is asked for the new source; the switch happens at the new
//! source's next key frame, after the old source's picture is complete (see [`crate::splice`]),
//! so the output is one continuous RTP stream (one SSRC, sequence numbers +1, timestamps one
//! picture apart) that decodes without errors across every switch. A slot is thus late by at
//! most one GOP of its source; a silent source keeps the previous one on air.
//!
//! A personalised channel cannot be a source of another one (so splicing never recurses), and
//! a channel that is a source cannot be made personalised. Deleting a source leaves the
//! personalised channel in place (the slot keeps the previous source on air until the source
//! comes back); deleting the personalised channel removes its splicer. The schedule of a
//! live personalised channel can be replaced ([`crate::RelayHandle::update_personalized`],
//! what the AS does when a source is deleted): the splicer and its numbering go on, the new
//! schedule starts at the update, so viewers see no break beyond a switch.
//!
//! Sans-IO: the schedule reads `now` from its caller.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::control::{ChannelId, Error};
use crate::fcc::MediaKind;
use crate::relay::Relay;
use crate::splice::{SourceId, SpliceConfig, Splicer};

/// Most slots in a schedule.
pub const MAX_SLOTS: usize = 64;

/// Shortest slot (a switch waits for a key frame anyway).
pub const MIN_SLOT_SECS: f64 = 0.5;

/// Longest slot (one day).
pub const MAX_SLOT_SECS: f64 = 86_400.0;

/// One slot of a schedule: `channel` is on air for `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// The source channel (an existing channel of the relay).
    pub channel: ChannelId,
    /// How long it is on air, in seconds.
    pub seconds: f64,
}

/// What to create: the personalised channel's id and its repeating schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalizedSpec {
    /// The new channel's id.
    pub channel: ChannelId,
    /// Slots, in order; the schedule repeats.
    pub schedule: Vec<Slot>,
    /// How key frames are found in the sources (default: by payload type).
    #[serde(default)]
    pub media: MediaKind,
}

impl PersonalizedSpec {
    /// A schedule that switches among `sources` in turn, each on air for `every`.
    pub fn round_robin(
        channel: impl Into<ChannelId>,
        sources: impl IntoIterator<Item = ChannelId>,
        every: Duration,
    ) -> Self {
        PersonalizedSpec {
            channel: channel.into(),
            schedule: sources
                .into_iter()
                .map(|channel| Slot {
                    channel,
                    seconds: every.as_secs_f64(),
                })
                .collect(),
            media: MediaKind::Auto,
        }
    }
}

/// The answer to a creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalizedInfo {
    /// The new channel.
    pub channel: ChannelId,
    /// Its distinct sources, in order of first appearance in the schedule.
    pub sources: Vec<ChannelId>,
    /// Length of one round of the schedule, in seconds.
    pub period_secs: f64,
}

/// Counters and state of one personalised channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalizedStats {
    /// The channel.
    pub channel: ChannelId,
    /// The source on air.
    pub current: Option<ChannelId>,
    /// The source the schedule wants, while its key frame is awaited.
    pub wanted: Option<ChannelId>,
    /// Switches done at a key frame after a complete picture (the first start included).
    pub switches: u64,
    /// Switches forced with the old picture incomplete.
    pub forced: u64,
    /// Kept SPS/PPS packets sent ahead of a key frame that lacked them.
    #[serde(default)]
    pub parameter_sets: u64,
    /// Packets spliced into the channel.
    pub forwarded: u64,
    /// Source packets not on air.
    pub skipped: u64,
}

/// A request to the driver about personalised channels (one variant of
/// [`crate::control::Command`]).
#[derive(Debug)]
pub enum PersonalizedCommand {
    /// See [`crate::RelayHandle::create_personalized`].
    Create(
        PersonalizedSpec,
        oneshot::Sender<Result<PersonalizedInfo, Error>>,
    ),
    /// See [`crate::RelayHandle::personalized_stats`].
    Stats(oneshot::Sender<Vec<PersonalizedStats>>),
    /// See [`crate::RelayHandle::update_personalized`].
    Update(
        PersonalizedSpec,
        oneshot::Sender<Result<PersonalizedInfo, Error>>,
    ),
}

impl crate::control::RelayHandle {
    /// Replace the schedule of personalised channel `spec.channel` (made by
    /// [`crate::RelayHandle::create_personalized`]): its viewers and its output numbering
    /// stay, the new schedule starts now. Errors: `UnknownChannel` (not a personalised
    /// channel, or a source), `Invalid` (schedule).
    pub async fn update_personalized(
        &self,
        spec: PersonalizedSpec,
    ) -> Result<PersonalizedInfo, Error> {
        self.call(|r| crate::control::Command::Personalized(PersonalizedCommand::Update(spec, r)))
            .await?
    }
}

/// Runs one command on the core (called by the driver).
pub fn handle_command(relay: &mut Relay, now: Instant, cmd: PersonalizedCommand) {
    match cmd {
        PersonalizedCommand::Create(spec, reply) => {
            let _ = reply.send(relay.create_personalized(now, &spec));
        }
        PersonalizedCommand::Stats(reply) => {
            let _ = reply.send(relay.personalized_stats());
        }
        PersonalizedCommand::Update(spec, reply) => {
            let _ = reply.send(relay.update_personalized(now, &spec));
        }
    }
}

/// One personalised channel.
#[derive(Debug)]
struct Mix {
    channel: ChannelId,
    /// Distinct sources; the index is the splicer's [`SourceId`].
    sources: Vec<ChannelId>,
    /// `(source index, end of the slot from the start of the round)`.
    slots: Vec<(u32, Duration)>,
    period: Duration,
    start: Instant,
    splicer: Splicer,
}

impl Mix {
    /// The source the schedule puts on air at `now`.
    fn scheduled(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let period = self.period.as_nanos().max(1);
        let pos = Duration::from_nanos((elapsed % period) as u64);
        self.slots
            .iter()
            .find(|(_, end)| pos < *end)
            .or(self.slots.last())
            .map_or(0, |(s, _)| *s)
    }

    /// Asks the splicer for the source scheduled at `now` unless it is on air with no other
    /// switch pending or already awaited (a pending switch to a source whose slot has
    /// passed is cancelled).
    fn follow_schedule(&mut self, now: Instant) {
        let want = SourceId(self.scheduled(now));
        let on_air = self.splicer.current() == Some(want);
        let wanted = self.splicer.wanted();
        if (on_air && wanted.is_some()) || (!on_air && wanted != Some(want)) {
            self.splicer.switch_to(want);
        }
    }

    fn stats(&self) -> PersonalizedStats {
        let st = self.splicer.stats();
        let name = |s: Option<SourceId>| s.and_then(|s| self.sources.get(s.0 as usize)).cloned();
        PersonalizedStats {
            channel: self.channel.clone(),
            current: name(self.splicer.current()),
            wanted: name(self.splicer.wanted()),
            switches: st.switches,
            forced: st.forced,
            parameter_sets: st.parameter_sets,
            forwarded: st.forwarded,
            skipped: st.skipped,
        }
    }
}

/// The personalised channels of one relay core (module docs).
#[derive(Debug, Default)]
pub struct Registry {
    mixes: Vec<Mix>,
    /// Source channel -> indices in `mixes` that use it.
    by_source: HashMap<ChannelId, Vec<usize>>,
    /// Reusable output buffer (see [`Registry::take_output`]).
    out: Vec<(ChannelId, Bytes)>,
    /// Reusable per-splicer output.
    batch: Vec<Bytes>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `channel` feeds some personalised channel (cheap when there is none).
    pub fn is_source(&self, channel: &ChannelId) -> bool {
        !self.by_source.is_empty() && self.by_source.contains_key(channel)
    }

    /// Whether `channel` is a personalised channel.
    pub fn is_personalized(&self, channel: &ChannelId) -> bool {
        self.mixes.iter().any(|m| &m.channel == channel)
    }

    /// Number of personalised channels.
    pub fn len(&self) -> usize {
        self.mixes.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.mixes.is_empty()
    }

    /// Checks a spec before the channel is made: a non-empty schedule of at most
    /// [`MAX_SLOTS`] slots of [`MIN_SLOT_SECS`]..=[`MAX_SLOT_SECS`] seconds, every source a
    /// channel `exists` knows and not personalised, the new id not a source itself.
    pub fn check(
        &self,
        spec: &PersonalizedSpec,
        exists: impl Fn(&ChannelId) -> bool,
    ) -> Result<(), Error> {
        if self.by_source.contains_key(&spec.channel) {
            return Err(Error::Invalid(
                "the channel is a source of a personalised channel",
            ));
        }
        self.check_slots(spec, exists)
    }

    /// The slot checks of [`Registry::check`].
    fn check_slots(
        &self,
        spec: &PersonalizedSpec,
        exists: impl Fn(&ChannelId) -> bool,
    ) -> Result<(), Error> {
        if spec.schedule.is_empty() {
            return Err(Error::Invalid("empty schedule"));
        }
        if spec.schedule.len() > MAX_SLOTS {
            return Err(Error::Invalid("more than 64 slots"));
        }
        for slot in &spec.schedule {
            if !slot.seconds.is_finite()
                || slot.seconds < MIN_SLOT_SECS
                || slot.seconds > MAX_SLOT_SECS
            {
                return Err(Error::Invalid("slot length must be 0.5 to 86400 seconds"));
            }
            if slot.channel == spec.channel {
                return Err(Error::Invalid("a channel cannot be its own source"));
            }
            if self.is_personalized(&slot.channel) {
                return Err(Error::Invalid("a personalised channel cannot be a source"));
            }
            if !exists(&slot.channel) {
                return Err(Error::UnknownChannel(slot.channel.clone()));
            }
        }
        Ok(())
    }

    /// Adds a personalised channel (after [`Registry::check`]; the core made the channel).
    /// Its schedule starts at `now`; `splice` sets the output numbering.
    pub fn add(
        &mut self,
        now: Instant,
        spec: &PersonalizedSpec,
        splice: SpliceConfig,
    ) -> PersonalizedInfo {
        let mut sources: Vec<ChannelId> = Vec::new();
        let mut slots = Vec::with_capacity(spec.schedule.len());
        let mut end = Duration::ZERO;
        for slot in &spec.schedule {
            let idx = match sources.iter().position(|s| s == &slot.channel) {
                Some(i) => i,
                None => {
                    sources.push(slot.channel.clone());
                    sources.len() - 1
                }
            };
            end += Duration::from_secs_f64(slot.seconds);
            slots.push((idx as u32, end));
        }
        let info = PersonalizedInfo {
            channel: spec.channel.clone(),
            sources: sources.clone(),
            period_secs: end.as_secs_f64(),
        };
        let mut splicer = Splicer::new(SpliceConfig {
            kind: spec.media,
            ..splice
        });
        if let Some((first, _)) = slots.first() {
            splicer.switch_to(SourceId(*first));
        }
        self.mixes.push(Mix {
            channel: spec.channel.clone(),
            sources,
            slots,
            period: end,
            start: now,
            splicer,
        });
        self.reindex();
        info
    }

    /// Replaces the schedule of personalised channel `spec.channel` from `now` on (checked
    /// like [`Registry::check`]; `UnknownChannel` if it is not one). The splicer stays, so
    /// the output numbering goes on; a source kept keeps its splicer id (its parameter sets
    /// and key-frame state), a source dropped no longer feeds the channel.
    pub fn update(
        &mut self,
        now: Instant,
        spec: &PersonalizedSpec,
        exists: impl Fn(&ChannelId) -> bool,
    ) -> Result<PersonalizedInfo, Error> {
        let Some(i) = self.mixes.iter().position(|m| m.channel == spec.channel) else {
            return Err(Error::UnknownChannel(spec.channel.clone()));
        };
        self.check_slots(spec, exists)?;
        let m = &mut self.mixes[i];
        let mut slots = Vec::with_capacity(spec.schedule.len());
        let mut used: Vec<ChannelId> = Vec::new();
        let mut end = Duration::ZERO;
        for slot in &spec.schedule {
            let idx = match m.sources.iter().position(|s| s == &slot.channel) {
                Some(i) => i,
                None => {
                    m.sources.push(slot.channel.clone());
                    m.sources.len() - 1
                }
            };
            if !used.contains(&slot.channel) {
                used.push(slot.channel.clone());
            }
            end += Duration::from_secs_f64(slot.seconds);
            slots.push((idx as u32, end));
        }
        m.slots = slots;
        m.period = end;
        m.start = now;
        m.follow_schedule(now);
        self.reindex();
        Ok(PersonalizedInfo {
            channel: spec.channel.clone(),
            sources: used,
            period_secs: end.as_secs_f64(),
        })
    }

    /// Removes a personalised channel; `false` if it was not one.
    pub fn remove(&mut self, channel: &ChannelId) -> bool {
        let before = self.mixes.len();
        self.mixes.retain(|m| &m.channel != channel);
        let removed = self.mixes.len() != before;
        if removed {
            self.reindex();
        }
        removed
    }

    fn reindex(&mut self) {
        self.by_source.clear();
        for (i, m) in self.mixes.iter().enumerate() {
            // Only the sources the schedule uses (an update may have dropped some).
            for (s, src) in m.sources.iter().enumerate() {
                if m.slots.iter().any(|(x, _)| *x as usize == s) {
                    self.by_source.entry(src.clone()).or_default().push(i);
                }
            }
        }
    }

    /// The output buffer, to pass to [`Registry::push`] and give back with
    /// [`Registry::put_output`] (so the core can ingest the output while the registry is
    /// borrowed no more).
    pub fn take_output(&mut self) -> Vec<(ChannelId, Bytes)> {
        std::mem::take(&mut self.out)
    }

    /// Gives the (drained) output buffer back for reuse.
    pub fn put_output(&mut self, mut out: Vec<(ChannelId, Bytes)>) {
        out.clear();
        self.out = out;
    }

    /// One packet of source channel `source` at `now`: each personalised channel using it
    /// follows its schedule, and what its splicer sends goes to `out` as
    /// `(personalised channel, packet)`, in order. Malformed packets and RTCP are ignored here
    /// (the core counts them on the source).
    pub fn push(
        &mut self,
        now: Instant,
        source: &ChannelId,
        datagram: &[u8],
        out: &mut Vec<(ChannelId, Bytes)>,
    ) {
        let Some(users) = self.by_source.get(source) else {
            return;
        };
        for &i in users {
            let Some(m) = self.mixes.get_mut(i) else {
                continue;
            };
            let Some(src) = m.sources.iter().position(|s| s == source) else {
                continue;
            };
            m.follow_schedule(now);
            self.batch.clear();
            if m.splicer
                .push(SourceId(src as u32), datagram, &mut self.batch)
                .is_ok()
            {
                out.extend(self.batch.drain(..).map(|p| (m.channel.clone(), p)));
            }
        }
    }

    /// Counters of every personalised channel, by channel id.
    pub fn stats(&self) -> Vec<PersonalizedStats> {
        let mut v: Vec<PersonalizedStats> = self.mixes.iter().map(Mix::stats).collect();
        v.sort_by(|a, b| a.channel.cmp(&b.channel));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{self, HeaderRewrite};

    #[expect(clippy::disallowed_methods, reason = "a test needs one base instant")]
    fn t0() -> Instant {
        Instant::now()
    }

    /// A one-packet picture: key (IDR) or not, 3000 ticks per picture.
    fn pkt(ssrc: u32, n: u16, key: bool) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write_header(
            &mut v,
            true,
            &HeaderRewrite {
                ssrc,
                sequence: n,
                timestamp: u32::from(n) * 3000,
                payload_type: 96,
            },
        );
        v.push(if key { 0x65 } else { 0x41 });
        v.extend_from_slice(&[0; 8]);
        v
    }

    fn spec(slots: &[(&str, f64)]) -> PersonalizedSpec {
        PersonalizedSpec {
            channel: "mix".into(),
            schedule: slots
                .iter()
                .map(|(c, s)| Slot {
                    channel: ChannelId::from(*c),
                    seconds: *s,
                })
                .collect(),
            media: MediaKind::Auto,
        }
    }

    #[test]
    fn check_refuses_bad_schedules() {
        let r = Registry::new();
        let known = |c: &ChannelId| c.as_str() != "nope";
        assert!(matches!(
            r.check(&spec(&[]), known),
            Err(Error::Invalid("empty schedule"))
        ));
        assert!(matches!(
            r.check(&spec(&[("a", 0.1)]), known),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            r.check(&spec(&[("a", f64::NAN)]), known),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            r.check(&spec(&[("mix", 2.0)]), known),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            r.check(&spec(&[("a", 2.0), ("nope", 2.0)]), known),
            Err(Error::UnknownChannel(c)) if c.as_str() == "nope"
        ));
        let many: Vec<(&str, f64)> = (0..65).map(|_| ("a", 1.0)).collect();
        assert!(r.check(&spec(&many), known).is_err());
        assert!(r.check(&spec(&[("a", 2.0), ("b", 2.0)]), known).is_ok());
    }

    #[test]
    fn no_personalised_source_and_no_source_made_personalised() {
        let mut r = Registry::new();
        let now = t0();
        r.add(now, &spec(&[("a", 2.0)]), SpliceConfig::default());
        let known = |_: &ChannelId| true;
        let mut other = spec(&[("mix", 2.0)]);
        other.channel = "mix2".into();
        assert!(r.check(&other, known).is_err(), "mix as a source");
        let mut a = spec(&[("b", 2.0)]);
        a.channel = "a".into();
        assert!(r.check(&a, known).is_err(), "a source made personalised");
        assert!(r.is_source(&"a".into()));
        assert!(r.remove(&"mix".into()));
        assert!(!r.is_source(&"a".into()));
        assert!(!r.remove(&"mix".into()));
    }

    #[test]
    fn schedule_switches_sources_at_key_frames_with_one_numbering() {
        let mut r = Registry::new();
        let now = t0();
        let info = r.add(
            now,
            &spec(&[("a", 1.0), ("b", 1.0), ("a", 0.5)]),
            SpliceConfig {
                ssrc: 77,
                ..SpliceConfig::default()
            },
        );
        assert_eq!(info.sources, vec![ChannelId::from("a"), "b".into()]);
        assert!((info.period_secs - 2.5).abs() < 1e-9);
        let mut out = r.take_output();
        // 100 ms per picture for 6 s; a: key every 5 pictures, b: key every 7, both feed.
        for n in 0..60u16 {
            let t = now + Duration::from_millis(100 * u64::from(n));
            r.push(t, &"a".into(), &pkt(1, n, n % 5 == 0), &mut out);
            r.push(t, &"b".into(), &pkt(2, 1000 + n, n % 7 == 3), &mut out);
            r.push(t, &"zzz".into(), &pkt(3, n, true), &mut out);
        }
        assert!(!out.is_empty());
        let infos: Vec<rtp::RtpInfo> = out
            .iter()
            .map(|(c, p)| {
                assert_eq!(c.as_str(), "mix");
                rtp::parse(p).unwrap()
            })
            .collect();
        for w in infos.windows(2) {
            assert_eq!(w[1].ssrc, 77);
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
            assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 3000);
        }
        let st = &r.stats()[0];
        // a (start), b (1 s), a (2 s), b (3.5 s), a (4.5 s), a stays (5 s: slot a again).
        assert!(st.switches >= 4, "{st:?}");
        assert_eq!(st.forced, 0);
        r.put_output(out);
        assert!(r.take_output().is_empty());
    }

    #[test]
    fn update_replaces_the_schedule_and_keeps_the_numbering() {
        let mut r = Registry::new();
        let now = t0();
        r.add(
            now,
            &spec(&[("a", 1.0), ("b", 1.0)]),
            SpliceConfig {
                ssrc: 9,
                ..SpliceConfig::default()
            },
        );
        let mut out = r.take_output();
        let mut n = 0u16;
        let mut feed = |r: &mut Registry, out: &mut Vec<(ChannelId, Bytes)>, until: u16| {
            while n < until {
                let t = now + Duration::from_millis(100 * u64::from(n));
                r.push(t, &"a".into(), &pkt(1, n, n % 5 == 0), out);
                r.push(t, &"b".into(), &pkt(2, 1000 + n, n % 5 == 2), out);
                n += 1;
            }
        };
        feed(&mut r, &mut out, 30);
        let before = out.len();
        assert!(before > 0);
        // Errors: not a personalised channel, an unknown source, an empty schedule.
        let mut other = spec(&[("b", 1.0)]);
        other.channel = "a".into();
        assert!(matches!(
            r.update(now, &other, |_| true),
            Err(Error::UnknownChannel(_))
        ));
        assert!(matches!(
            r.update(now, &spec(&[("zz", 1.0)]), |c| c.as_str() != "zz"),
            Err(Error::UnknownChannel(_))
        ));
        assert!(r.update(now, &spec(&[]), |_| true).is_err());
        // b only from 3 s on: a feeds no more, the output goes on in one numbering.
        let t = now + Duration::from_millis(3000);
        let info = r.update(t, &spec(&[("b", 2.0)]), |_| true).unwrap();
        assert_eq!(info.sources, vec![ChannelId::from("b")]);
        assert!(!r.is_source(&"a".into()));
        assert!(r.is_source(&"b".into()));
        feed(&mut r, &mut out, 60);
        assert!(out.len() > before + 20, "{} then {}", before, out.len());
        let infos: Vec<rtp::RtpInfo> = out.iter().map(|(_, p)| rtp::parse(p).unwrap()).collect();
        for w in infos.windows(2) {
            assert_eq!(w[1].ssrc, 9);
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
        }
        let st = &r.stats()[0];
        assert_eq!(st.current.as_ref().map(ChannelId::as_str), Some("b"));
        assert_eq!(
            st.wanted, None,
            "no switch left pending to a dropped source"
        );
        r.put_output(out);
    }

    /// An [`crate::control::AddViewer`] from JSON (optional fields at their defaults).
    fn add_viewer(id: u64, channel: &str, port: u16) -> crate::control::AddViewer {
        serde_json::from_value(serde_json::json!({
            "viewer": id,
            "channel": channel,
            "rtp_dest": format!("127.0.0.1:{port}"),
            "payload_type": 96,
        }))
        .unwrap()
    }

    #[test]
    fn relay_core_splices_sources_into_a_channel_its_viewers_see_as_one_stream() {
        use crate::control::{ChannelSpec, RelayConfig};
        let now = t0();
        let mut relay = Relay::new(RelayConfig::default(), 5);
        for c in ["a", "b"] {
            relay.create_channel(ChannelSpec::new(c)).unwrap();
        }
        let made = relay
            .create_personalized(
                now,
                &PersonalizedSpec::round_robin(
                    "mix",
                    ["a".into(), "b".into()],
                    Duration::from_secs(1),
                ),
            )
            .unwrap();
        assert_eq!(made.sources.len(), 2);
        // Errors: unknown source, existing id, a personalised source.
        let bad = PersonalizedSpec::round_robin("m2", ["zz".into()], Duration::from_secs(1));
        assert!(matches!(
            relay.create_personalized(now, &bad),
            Err(Error::UnknownChannel(_))
        ));
        let dup = PersonalizedSpec::round_robin("a", ["b".into()], Duration::from_secs(1));
        assert!(relay.create_personalized(now, &dup).is_err());
        let nested = PersonalizedSpec::round_robin("m3", ["mix".into()], Duration::from_secs(1));
        assert!(relay.create_personalized(now, &nested).is_err());
        assert!(!relay.has_channel(&"m2".into()));
        // A source counts one consumer for the splicer (it holds a pulled source's pull).
        assert_eq!(relay.channel_consumers(&"b".into()), Some(1));

        // A viewer of a source and a viewer of the mix.
        relay.add_viewer(now, &add_viewer(1, "a", 30_000)).unwrap();
        relay
            .add_viewer(now, &add_viewer(2, "mix", 30_002))
            .unwrap();
        let mut to_mix = Vec::new();
        let mut to_a = 0;
        for n in 0..40u16 {
            let t = now + Duration::from_millis(100 * u64::from(n));
            relay
                .ingest(t, &"a".into(), &pkt(1, n, n % 4 == 0))
                .unwrap();
            relay
                .ingest(t, &"b".into(), &pkt(2, 500 + n, n % 4 == 2))
                .unwrap();
            while let Some(tx) = relay.poll_transmit() {
                match tx.viewer {
                    Some(crate::control::ViewerId(2)) => {
                        to_mix.push(rtp::parse(tx.payload).unwrap())
                    }
                    Some(crate::control::ViewerId(1)) => to_a += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(to_a, 40, "the source's own viewer keeps every packet");
        assert!(to_mix.len() > 30, "{}", to_mix.len());
        for w in to_mix.windows(2) {
            assert_eq!(w[1].ssrc, w[0].ssrc);
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
            assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 3000);
        }
        let st = relay.personalized_stats();
        assert_eq!(st.len(), 1);
        assert!(st[0].switches >= 4, "{st:?}");
        // Deleting the channel removes its splicer; the sources go on.
        relay.delete_channel(&"mix".into()).unwrap();
        assert!(relay.personalized_stats().is_empty());
        assert_eq!(relay.channel_consumers(&"b".into()), Some(0));
        relay.ingest(now, &"a".into(), &pkt(1, 99, true)).unwrap();
    }
}
