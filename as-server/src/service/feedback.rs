//! Live feedback at the AS: per-channel quality and polls with live tallies, merged over the
//! relays that carry a channel.
//!
//! How it fits: every relay is an RFC 5760 feedback target for its channels
//! (`media_relay::feedback::live`): it takes its viewers' RTCP receiver reports and APP `VOTE`
//! packets and answers [`media_relay::control::RelayHandle::feedback`] with a
//! [`FeedbackSummary`] whose size does not grow with viewers. [`channel_feedback`] asks every
//! healthy relay carrying the channel (bounded by the pool's health timeout) and merges the
//! answers (viewers at different relays are different viewers: counts add; histograms add bin
//! by bin; a relay that sends its summaries up the channel's relay tree is left out when the
//! tree's root answered, since the root's summary holds its subtree). [`Polls`] keeps the polls
//! the operator (or a channel owner) declared: a poll id is the `u32` viewers put in their vote,
//! an option is its 0-based index in the poll's option list; [`Polls::tally`] maps the merged
//! counts onto the options. Each viewer counts once per poll (its latest vote, kept by the
//! relay). The HTTP routes are in [`crate::api`].
//!
//! A relay counts a vote only in a poll of the channel it arrives on, so the AS declares each
//! channel's polls to the relays: [`Polls::declare`] after a poll is created or deleted hands
//! the channel's poll ids to [`RelayPool::set_channel_polls`], which tells every relay
//! carrying the channel now and, from then on, every relay that starts carrying it (see
//! `service::relays`, "Poll declarations"). A vote for a poll of channel A arriving on
//! channel B is then refused at the relay (its `feedback_foreign_poll_votes` counter), even
//! from a viewer that first voted in it at B or was moved there from another relay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use media_relay::control::{ChannelId, FeedbackSummary};
use serde::{Deserialize, Serialize};

use super::relays::RelayPool;
use crate::error::{Error, Result};

/// Most polls an AS keeps.
pub const MAX_POLLS: usize = 1024;
/// Most options of one poll.
pub const MAX_OPTIONS: usize = 64;
/// Longest question or option label, in bytes.
pub const MAX_TEXT: usize = 1024;

/// `POST /api/polls` body: a poll on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPoll {
    /// The channel whose viewers vote.
    pub channel: String,
    /// Poll id: the `u32` viewers put in their APP `VOTE` packets.
    pub poll: u32,
    /// The question.
    pub question: String,
    /// Option labels; a vote's option is an index into this list.
    pub options: Vec<String>,
}

/// One option's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionTally {
    /// Index (the number viewers send).
    pub option: u32,
    /// Label.
    pub label: String,
    /// Votes (each viewer's latest vote in this poll).
    pub votes: u64,
}

/// A poll with its live tally (`GET /api/polls/{poll}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollTally {
    /// Poll id.
    pub poll: u32,
    /// Channel.
    pub channel: String,
    /// Question.
    pub question: String,
    /// Counts per declared option, in order.
    pub options: Vec<OptionTally>,
    /// Votes for option numbers the poll does not declare (counted, not dropped).
    #[serde(default)]
    pub undeclared: BTreeMap<u32, u64>,
    /// All votes in this poll (declared and undeclared options).
    pub total_votes: u64,
    /// Relays that answered.
    pub relays: usize,
}

/// A channel's merged quality (`GET /api/channels/{id}/quality`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelQuality {
    /// Relays carrying the channel that answered.
    pub relays: usize,
    /// The merged summary (nested, not flattened: its integer-keyed vote maps do not survive
    /// serde's flatten on the way back in).
    pub summary: FeedbackSummary,
}

/// The channel's feedback merged over the healthy relays that carry it, each asked under the
/// pool's health timeout (a relay that does not answer in time is left out and not counted
/// in `relays`).
pub async fn channel_feedback(relays: &RelayPool, channel: &str) -> ChannelQuality {
    let id = ChannelId(channel.to_owned());
    let carriers: Vec<usize> = {
        let st = relays.state();
        st.carriers(channel)
            .into_iter()
            .filter(|&i| st.is_healthy(i))
            .collect()
    };
    let timeout = relays.health().timeout;
    let mut calls = tokio::task::JoinSet::new();
    for i in carriers {
        let h = relays.handle(i).clone();
        let id = id.clone();
        calls.spawn(async move { tokio::time::timeout(timeout, h.feedback(&id)).await });
    }
    let mut out = ChannelQuality {
        relays: 0,
        summary: FeedbackSummary::empty(id),
    };
    let mut answers = Vec::new();
    while let Some(r) = calls.join_next().await {
        if let Ok(Ok(Ok(s))) = r {
            out.relays += 1;
            answers.push(s);
        }
    }
    // A relay that is a child in the channel's feedback tree (`feedback_parent`) already
    // counts in its root's summary: when a root that merged children answered, the children
    // are left out so nobody counts twice (media_relay::feedback::live).
    let tree_root = answers
        .iter()
        .any(|s| s.feedback_parent.is_none() && s.child_fts > 0);
    for s in &answers {
        if !(tree_root && s.feedback_parent.is_some()) {
            out.summary.merge(s);
        }
    }
    out
}

/// The polls of this AS (in memory; shared by clones).
#[derive(Debug, Clone, Default)]
pub struct Polls {
    inner: Arc<Mutex<BTreeMap<u32, NewPoll>>>,
}

impl Polls {
    /// No polls.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, NewPoll>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declare a poll: `Invalid` for empty/oversized text or option lists, `Conflict` for a
    /// poll id in use (or too many polls). The caller checks that the channel exists.
    pub fn create(&self, p: NewPoll) -> Result<()> {
        if p.options.is_empty() || p.options.len() > MAX_OPTIONS {
            return Err(Error::Invalid(format!(
                "a poll needs 1 to {MAX_OPTIONS} options"
            )));
        }
        if p.question.len() > MAX_TEXT
            || p.channel.is_empty()
            || p.options.iter().any(|o| o.len() > MAX_TEXT)
        {
            return Err(Error::Invalid("poll text too long or channel empty".into()));
        }
        let mut m = self.lock();
        if m.contains_key(&p.poll) {
            return Err(Error::Conflict(format!("poll {} exists", p.poll)));
        }
        if m.len() >= MAX_POLLS {
            return Err(Error::Conflict(format!("at most {MAX_POLLS} polls")));
        }
        m.insert(p.poll, p);
        Ok(())
    }

    /// A declared poll.
    pub fn get(&self, poll: u32) -> Option<NewPoll> {
        self.lock().get(&poll).cloned()
    }

    /// Removes a poll (it is no longer declared to the relays after [`Polls::declare`]);
    /// `NotFound` if unknown.
    pub fn remove(&self, poll: u32) -> Result<NewPoll> {
        self.lock()
            .remove(&poll)
            .ok_or_else(|| Error::NotFound(format!("poll {poll}")))
    }

    /// The ids of `channel`'s polls, ascending.
    pub fn ids_of(&self, channel: &str) -> Vec<u32> {
        ids_in(&self.lock(), channel)
    }

    /// Declares `channel`'s current polls to the relays carrying it (and to those that will):
    /// waits for the control calls, each bounded by the pool's health timeout; a relay that
    /// fails is logged and told again with the next change. Call it after every change of
    /// the channel's polls.
    pub async fn declare(&self, relays: &RelayPool, channel: &str) {
        {
            // Under the registry's lock, so concurrent changes reach the pool in order.
            let m = self.lock();
            relays.record_channel_polls(channel, ids_in(&m, channel));
        }
        relays.declare_polls().await;
    }

    /// Every declared poll, by id.
    pub fn list(&self) -> Vec<NewPoll> {
        self.lock().values().cloned().collect()
    }

    /// The live tally of `poll` from its channel's merged feedback; `NotFound` if undeclared.
    pub async fn tally(&self, relays: &RelayPool, poll: u32) -> Result<PollTally> {
        let p = self
            .get(poll)
            .ok_or_else(|| Error::NotFound(format!("poll {poll}")))?;
        let q = channel_feedback(relays, &p.channel).await;
        Ok(tally_of(&p, &q))
    }
}

/// The ids of `channel`'s polls in `m`, ascending.
fn ids_in(m: &BTreeMap<u32, NewPoll>, channel: &str) -> Vec<u32> {
    m.values()
        .filter(|p| p.channel == channel)
        .map(|p| p.poll)
        .collect()
}

/// Map a merged summary's counts for `p` onto its options.
pub fn tally_of(p: &NewPoll, q: &ChannelQuality) -> PollTally {
    let counts = q.summary.votes.get(&p.poll);
    let count = |o: u32| counts.and_then(|c| c.get(&o)).copied().unwrap_or(0);
    let options: Vec<OptionTally> = p
        .options
        .iter()
        .enumerate()
        .map(|(i, label)| OptionTally {
            option: i as u32,
            label: label.clone(),
            votes: count(i as u32),
        })
        .collect();
    let undeclared: BTreeMap<u32, u64> = counts
        .map(|c| {
            c.iter()
                .filter(|(&o, _)| o as usize >= p.options.len())
                .map(|(&o, &n)| (o, n))
                .collect()
        })
        .unwrap_or_default();
    let total_votes = counts.map(|c| c.values().sum()).unwrap_or(0);
    PollTally {
        poll: p.poll,
        channel: p.channel.clone(),
        question: p.question.clone(),
        options,
        undeclared,
        total_votes,
        relays: q.relays,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> NewPoll {
        NewPoll {
            channel: "quiz".into(),
            poll: 7,
            question: "Who wins?".into(),
            options: vec!["red".into(), "blue".into()],
        }
    }

    #[test]
    fn create_validates_and_refuses_duplicates() {
        let polls = Polls::new();
        polls.create(poll()).unwrap();
        assert!(matches!(polls.create(poll()), Err(Error::Conflict(_))));
        let mut bad = poll();
        bad.poll = 8;
        bad.options.clear();
        assert!(matches!(polls.create(bad), Err(Error::Invalid(_))));
        assert_eq!(polls.list().len(), 1);
    }

    #[test]
    fn ids_by_channel_and_removal() {
        let polls = Polls::new();
        polls.create(poll()).unwrap();
        let mut other = poll();
        other.poll = 9;
        other.channel = "news".into();
        polls.create(other).unwrap();
        let mut second = poll();
        second.poll = 2;
        polls.create(second).unwrap();
        assert_eq!(polls.ids_of("quiz"), [2, 7]);
        assert_eq!(polls.ids_of("news"), [9]);
        assert_eq!(polls.remove(7).unwrap().channel, "quiz");
        assert!(matches!(polls.remove(7), Err(Error::NotFound(_))));
        assert_eq!(polls.ids_of("quiz"), [2]);
    }

    #[test]
    fn tally_maps_options_and_keeps_undeclared() {
        let mut s = FeedbackSummary::empty(ChannelId("quiz".into()));
        s.votes
            .entry(7)
            .or_default()
            .extend([(0, 5), (1, 3), (9, 1)]);
        s.votes.entry(8).or_default().insert(0, 100);
        let t = tally_of(
            &poll(),
            &ChannelQuality {
                relays: 2,
                summary: s,
            },
        );
        assert_eq!(t.options[0].votes, 5);
        assert_eq!(t.options[1].votes, 3);
        assert_eq!(t.undeclared.get(&9), Some(&1));
        assert_eq!(t.total_votes, 9);
        assert_eq!(t.relays, 2);
    }
}
