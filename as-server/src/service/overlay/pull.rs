//! Remote channels this AS's relays pull, sans-IO: which local relay was told that a channel
//! of another AS is carried upstream, and the upstream candidates it was given.
//!
//! The pulling itself is the relay tree's (`media_relay::tree`, CONTRACTS.md): the AS calls
//! `RelayHandle::set_upstream(channel, [Upstream::Http { control }, ...])` on ONE of its
//! relays the first time a viewer joins a remote channel here; from then on the relay pulls
//! one copy from the first reachable candidate while it has viewers of the channel (the first
//! viewer attaches, the last leave detaches: the relay keeps the ref count), and moves to the
//! next candidate when its upstream goes silent. The declaration is withdrawn
//! (`clear_upstream`, ingest deleted) when the last session of the channel here ends (BYE,
//! expiry, a zap away: [`PullTable::releasable`]), so the next first join looks the
//! channel's relays up again, and when the owner removes the channel from the directory.
//!
//! A join or zap into a remote channel holds a [`PullHold`] from the moment the pull is
//! made sure of until its session is in the table (or it failed): the pull is not released
//! under it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// One remote channel declared upstream on a local relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// The local relay (pool index) that pulls it.
    pub relay: usize,
    /// The remote relays' control APIs it was given, in order of preference.
    pub candidates: Vec<SocketAddr>,
    /// Shared with every [`PullHold`] handed out.
    holds: Arc<()>,
}

impl Pull {
    /// A pull on relay `relay` from `candidates`.
    pub fn new(relay: usize, candidates: Vec<SocketAddr>) -> Self {
        Self {
            relay,
            candidates,
            holds: Arc::new(()),
        }
    }

    /// A hold for a join or zap in progress (hand it out under the table's lock).
    pub fn hold(&self) -> PullHold {
        PullHold(Arc::clone(&self.holds))
    }

    /// Whether a join or zap into the channel is in progress.
    pub fn held(&self) -> bool {
        Arc::strong_count(&self.holds) > 1
    }
}

/// A join or zap into a pulled channel in progress; dropping it ends the hold.
#[derive(Debug)]
pub struct PullHold(#[expect(dead_code, reason = "held for its count")] Arc<()>);

/// The pulls of one AS, by channel.
#[derive(Debug, Default)]
pub struct PullTable {
    pulls: BTreeMap<String, Pull>,
}

impl PullTable {
    /// The pull of `channel`, if any.
    pub fn get(&self, channel: &str) -> Option<&Pull> {
        self.pulls.get(channel)
    }

    /// Records a pull (replaces an older one of the channel, returned).
    pub fn insert(&mut self, channel: &str, pull: Pull) -> Option<Pull> {
        self.pulls.insert(channel.to_owned(), pull)
    }

    /// Removes the pull of `channel`.
    pub fn remove(&mut self, channel: &str) -> Option<Pull> {
        self.pulls.remove(channel)
    }

    /// Whether the pull of `channel` may be released: there is one, no join or zap into it
    /// is in progress, and no session here watches it (`watched`).
    pub fn releasable(&self, channel: &str, watched: bool) -> bool {
        !watched && self.pulls.get(channel).is_some_and(|p| !p.held())
    }

    /// Number of pulls.
    pub fn len(&self) -> usize {
        self.pulls.len()
    }

    /// No pulls?
    pub fn is_empty(&self) -> bool {
        self.pulls.is_empty()
    }
}

/// The candidates for a pull: the relays the channel -> relays lookup found (least loaded
/// first), then the directory's addresses not among them, minus this AS's own relays.
pub fn candidates(
    looked_up: impl IntoIterator<Item = SocketAddr>,
    directory: &[SocketAddr],
    own: &[Option<SocketAddr>],
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in looked_up.into_iter().chain(directory.iter().copied()) {
        if !out.contains(&a) && !own.contains(&Some(a)) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn candidates_dedup_and_skip_own_relays() {
        let c = candidates([a(3), a(1)], &[a(1), a(2), a(9)], &[Some(a(9)), None]);
        assert_eq!(c, [a(3), a(1), a(2)]);
        assert!(candidates([], &[], &[]).is_empty());
    }

    #[test]
    fn table_replaces_and_removes() {
        let mut t = PullTable::default();
        let p = |relay| Pull::new(relay, vec![a(1)]);
        assert_eq!(t.insert("cam", p(0)), None);
        assert_eq!(t.insert("cam", p(1)), Some(p(0)));
        assert_eq!(t.get("cam").map(|x| x.relay), Some(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove("cam"), Some(p(1)));
        assert!(t.is_empty());
    }

    #[test]
    fn released_only_when_unwatched_and_not_held() {
        let mut t = PullTable::default();
        assert!(!t.releasable("cam", false), "no pull");
        t.insert("cam", Pull::new(0, vec![a(1)]));
        assert!(t.releasable("cam", false));
        assert!(!t.releasable("cam", true), "a session watches it");
        let hold = t.get("cam").unwrap().hold();
        let second = t.get("cam").unwrap().hold();
        assert!(!t.releasable("cam", false), "a join in progress");
        drop(hold);
        assert!(!t.releasable("cam", false), "another join in progress");
        drop(second);
        assert!(t.releasable("cam", false));
    }
}
