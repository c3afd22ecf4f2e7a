//! The AS's media relays: a pool of in-process relays (`[relay] count`, named `relay-0`,
//! `relay-1`, ...), where each viewer and each ingest is placed, and whether each relay is
//! alive.
//!
//! * [`PoolState`] is the sans-IO part: per relay its health (consecutive failed probes;
//!   dead is final, an in-process relay that stopped does not come back), the viewers the AS
//!   placed on it and the channels it carries. Placement: a join goes to the least-loaded
//!   healthy relay that carries the channel ([`PoolState::pick_for_channel`]); a new ingest
//!   (personal or producer channel) to the least-loaded healthy relay
//!   ([`PoolState::pick_least_loaded`]); a test-pattern channel is created on every healthy
//!   relay (each runs its own pattern). Ties go to the lowest index. With `[relay] tree`
//!   (`tu/tree.rs`) a channel has one ingest, at its home relay (a test pattern too), and
//!   the other relays pull it from there ([`RelayState::pulled`]): a join then goes to the
//!   least-loaded relay that has the ingest or pulls it.
//! * [`RelayPool`] is the driver around it: the [`RelayHandle`]s, the health probe
//!   ([`RelayPool::probe`]: `stats()` under a timeout) that the service's monitor task runs
//!   every `relay.health_interval_ms`, and [`RelayPool::stop`], which stops a relay abruptly
//!   (no RTCP BYE, no SIP BYE: a crashed relay process, for the lab and the tests).
//!
//! What happens to the sessions of a relay declared dead is the service's failover
//! (`tu/failover.rs`): viewers are re-INVITEd to another relay.
//!
//! # Poll declarations
//!
//! A relay counts a viewer's APP `VOTE` only in a poll of the channel it arrives on; it
//! knows a channel's polls when told ([`RelayHandle::set_channel_polls`]), which only the AS
//! can do for a viewer that voted at another relay. [`PoolState`] keeps each channel's poll
//! ids ([`PoolState::set_channel_polls`], from `service::feedback`) and the (relay, channel)
//! pairs whose declaration is due: every live relay carrying the channel when its polls
//! change, and a relay that starts carrying a channel with polls (an ingest, a tree pull, a
//! failover re-home, a remote channel pulled: every such path records it here with
//! `add_channel`/`add_ingest`/`set_pulled`). The driver ([`RelayPool::declare_polls`], also
//! run by a task the first [`RelayPool::set_channel_polls`] starts, woken whenever the state
//! guard drops with fresh work) sends them one control call each under the health timeout,
//! in order (one declaration run at a time, each with the channel's polls at that moment). A
//! failed declaration is logged and retried with the next change; nothing here is awaited
//! by a SIP transaction. Every relay of the pool is in-process (`RelayMode::InProcess`), so
//! the handle is the only path; a relay reached by HTTP control takes the same list as
//! `PUT /channels/{id}/polls` (`media_relay::driver::http`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use media_relay::control::{ChannelId, Error as RelayError, IngestInfo, RelayStats};
use media_relay::{Relay, RelayHandle};
use tracing::{debug, warn};

use crate::config::RelaySection;

/// How relays are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between probes of each relay.
    pub interval: Duration,
    /// Consecutive failed probes that make a relay dead.
    pub failures: u32,
    /// Longest a probe (or a failover control call) may take.
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            failures: 2,
            timeout: Duration::from_millis(500),
        }
    }
}

impl HealthConfig {
    /// From the `[relay]` section.
    pub fn from_section(s: &RelaySection) -> Self {
        Self {
            interval: Duration::from_millis(s.health_interval_ms),
            failures: s.health_failures.max(1),
            timeout: Duration::from_millis(s.health_timeout_ms),
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The relay answered in time.
    Ok,
    /// No answer in time (counts towards [`HealthConfig::failures`]).
    Timeout,
    /// The relay task is gone (its command channel is closed): dead at once.
    Stopped,
}

/// What the AS knows of one relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayState {
    /// Declared dead (final).
    pub dead: bool,
    /// Consecutive failed probes.
    pub failures: u32,
    /// When it last answered a probe.
    pub last_ok: Option<Instant>,
    /// Viewers (and personal-channel owners count as none) the AS placed on it.
    pub viewers: usize,
    /// Channels it has an ingest for.
    pub channels: BTreeSet<String>,
    /// Channels it pulls from another relay (relay tree, `[relay] tree`): viewers may be
    /// placed on it, but it is not a source (a failover re-homes a channel whose only
    /// ingest died even when relays pull it).
    pub pulled: BTreeSet<String>,
}

/// Health, load and channels of every relay (sans-IO; the service holds it in a mutex).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolState {
    relays: Vec<RelayState>,
    patterns: BTreeSet<String>,
    ingests: BTreeMap<(usize, String), IngestInfo>,
    /// Each channel's poll ids, as last declared by the AS (an entry, even empty, once the
    /// channel had polls).
    polls: BTreeMap<String, Vec<u32>>,
    /// (relay, channel) whose poll declaration is due and not yet tried.
    declare_due: BTreeSet<(usize, String)>,
    /// (relay, channel) whose last declaration failed: retried with the next change.
    declare_failed: BTreeSet<(usize, String)>,
}

impl PoolState {
    /// `n` healthy, empty relays.
    pub fn new(n: usize) -> Self {
        Self {
            relays: vec![RelayState::default(); n],
            patterns: BTreeSet::new(),
            ingests: BTreeMap::new(),
            polls: BTreeMap::new(),
            declare_due: BTreeSet::new(),
            declare_failed: BTreeSet::new(),
        }
    }

    /// Number of relays (dead ones included).
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// Whether there is no relay at all.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// One relay's state.
    pub fn relay(&self, i: usize) -> Option<&RelayState> {
        self.relays.get(i)
    }

    /// Whether relay `i` is alive.
    pub fn is_healthy(&self, i: usize) -> bool {
        self.relays.get(i).is_some_and(|r| !r.dead)
    }

    /// Indexes of the live relays.
    pub fn healthy(&self) -> Vec<usize> {
        (0..self.relays.len())
            .filter(|&i| self.is_healthy(i))
            .collect()
    }

    /// Feeds a probe result taken at `now`; returns `true` when it makes the relay dead
    /// (`limit` consecutive timeouts, or one [`Probe::Stopped`]). A dead relay stays dead.
    pub fn on_probe(&mut self, i: usize, now: Instant, probe: Probe, limit: u32) -> bool {
        let Some(r) = self.relays.get_mut(i) else {
            return false;
        };
        if r.dead {
            return false;
        }
        match probe {
            Probe::Ok => {
                r.failures = 0;
                r.last_ok = Some(now);
                false
            }
            Probe::Timeout => {
                r.failures = r.failures.saturating_add(1);
                if r.failures >= limit.max(1) {
                    self.mark_dead(i)
                } else {
                    false
                }
            }
            Probe::Stopped => self.mark_dead(i),
        }
    }

    /// Declares relay `i` dead; `true` if it was alive (the caller starts the failover).
    /// Its viewer count is forgotten; its channel list stays (the failover reads it to
    /// re-home the channels only it carried), but a dead relay never carries anything.
    pub fn mark_dead(&mut self, i: usize) -> bool {
        let Some(r) = self.relays.get_mut(i) else {
            return false;
        };
        if r.dead {
            return false;
        }
        r.dead = true;
        r.viewers = 0;
        true
    }

    /// The channels relay `i` had (dead or alive).
    pub fn channels_of(&self, i: usize) -> Vec<String> {
        self.relays
            .get(i)
            .map(|r| r.channels.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Marks `channel` as fed by each relay's own test pattern (re-created as such when
    /// re-homed).
    pub fn set_test_pattern(&mut self, channel: &str, on: bool) {
        if on {
            self.patterns.insert(channel.to_owned());
        } else {
            self.patterns.remove(channel);
        }
    }

    /// Whether `channel` is a test-pattern channel.
    pub fn is_test_pattern(&self, channel: &str) -> bool {
        self.patterns.contains(channel)
    }

    /// The least-loaded live relay that carries `channel`, as an ingest or pulled from
    /// another relay (ties: lowest index).
    pub fn pick_for_channel(&self, channel: &str) -> Option<usize> {
        self.pick(|r| r.channels.contains(channel) || r.pulled.contains(channel))
    }

    /// Relay `i` pulls `channel` from another relay (`on`), or no longer does.
    pub fn set_pulled(&mut self, i: usize, channel: &str, on: bool) {
        if let Some(r) = self.relays.get_mut(i) {
            if on && !r.dead {
                r.pulled.insert(channel.to_owned());
                self.carrying(i, channel);
            } else {
                r.pulled.remove(channel);
            }
        }
    }

    /// Live relays that pull `channel` from another relay.
    pub fn pullers(&self, channel: &str) -> Vec<usize> {
        (0..self.relays.len())
            .filter(|&i| self.is_healthy(i) && self.relays[i].pulled.contains(channel))
            .collect()
    }

    /// The least-loaded live relay (ties: fewer channels, then lowest index), for a new
    /// ingest.
    pub fn pick_least_loaded(&self) -> Option<usize> {
        (0..self.relays.len())
            .filter(|&i| self.is_healthy(i))
            .min_by_key(|&i| (self.relays[i].viewers, self.relays[i].channels.len(), i))
    }

    fn pick(&self, pred: impl Fn(&RelayState) -> bool) -> Option<usize> {
        (0..self.relays.len())
            .filter(|&i| self.is_healthy(i) && pred(&self.relays[i]))
            .min_by_key(|&i| (self.relays[i].viewers, i))
    }

    /// Live relays that carry `channel`.
    pub fn carriers(&self, channel: &str) -> Vec<usize> {
        (0..self.relays.len())
            .filter(|&i| self.is_healthy(i) && self.relays[i].channels.contains(channel))
            .collect()
    }

    /// Whether live relay `i` carries `channel`.
    pub fn carries(&self, i: usize, channel: &str) -> bool {
        self.is_healthy(i) && self.relays[i].channels.contains(channel)
    }

    /// Relay `i` has an ingest for `channel` now.
    pub fn add_channel(&mut self, i: usize, channel: &str) {
        if let Some(r) = self.relays.get_mut(i).filter(|r| !r.dead) {
            r.channels.insert(channel.to_owned());
            self.carrying(i, channel);
        }
    }

    /// Relay `i` has an ingest for `channel` at `ingest`.
    pub fn add_ingest(&mut self, i: usize, ingest: IngestInfo) {
        self.add_channel(i, ingest.channel.as_str());
        if self.is_healthy(i) {
            self.ingests
                .insert((i, ingest.channel.as_str().to_owned()), ingest);
        }
    }

    /// Where relay `i` takes `channel`'s media, if it has it.
    pub fn ingest_of(&self, i: usize, channel: &str) -> Option<IngestInfo> {
        self.ingests.get(&(i, channel.to_owned())).cloned()
    }

    /// `channel` is deleted: the live relays that carried it (to delete its ingest there).
    pub fn remove_channel(&mut self, channel: &str) -> Vec<usize> {
        self.patterns.remove(channel);
        let mut had = Vec::new();
        for (i, r) in self.relays.iter_mut().enumerate() {
            self.ingests.remove(&(i, channel.to_owned()));
            let pulled = r.pulled.remove(channel);
            if (r.channels.remove(channel) || pulled) && !r.dead {
                had.push(i);
            }
        }
        had
    }

    /// Declares `channel`'s polls (replacing its previous list): every live relay carrying
    /// it (ingest or pull) is due a declaration ([`PoolState::take_declarations`]).
    pub fn set_channel_polls(&mut self, channel: &str, polls: Vec<u32>) {
        self.polls.insert(channel.to_owned(), polls);
        for i in 0..self.relays.len() {
            if self.carries_any(i, channel) {
                self.declare_due.insert((i, channel.to_owned()));
            }
        }
    }

    /// `channel`'s declared polls, if it ever had any.
    pub fn channel_polls(&self, channel: &str) -> Option<&[u32]> {
        self.polls.get(channel).map(Vec::as_slice)
    }

    /// Whether a declaration is due that was not tried yet (failed ones wait for a change).
    pub fn has_due_declarations(&self) -> bool {
        !self.declare_due.is_empty()
    }

    /// Takes every due declaration, fresh and failed ones, as (relay, channel, polls) with
    /// the channel's polls now; pairs whose relay died or no longer carries the channel are
    /// dropped.
    pub fn take_declarations(&mut self) -> Vec<(usize, String, Vec<u32>)> {
        let mut due = std::mem::take(&mut self.declare_due);
        due.append(&mut self.declare_failed);
        due.into_iter()
            .filter(|(i, c)| self.carries_any(*i, c))
            .filter_map(|(i, c)| {
                let polls = self.polls.get(&c)?.clone();
                Some((i, c, polls))
            })
            .collect()
    }

    /// The declaration of `channel`'s polls to relay `i` failed: tried again with the next
    /// change (unless one is due already).
    pub fn declaration_failed(&mut self, i: usize, channel: &str) {
        if self.carries_any(i, channel) && !self.declare_due.contains(&(i, channel.to_owned())) {
            self.declare_failed.insert((i, channel.to_owned()));
        }
    }

    /// Live relay `i` has an ingest for `channel` or pulls it.
    fn carries_any(&self, i: usize, channel: &str) -> bool {
        self.relays.get(i).is_some_and(|r| {
            !r.dead && (r.channels.contains(channel) || r.pulled.contains(channel))
        })
    }

    /// Relay `i` carries `channel` now: due a declaration if the channel has polls.
    fn carrying(&mut self, i: usize, channel: &str) {
        if self.polls.contains_key(channel) {
            self.declare_due.insert((i, channel.to_owned()));
        }
    }

    /// A viewer was placed on relay `i`.
    pub fn viewer_added(&mut self, i: usize) {
        if let Some(r) = self.relays.get_mut(i).filter(|r| !r.dead) {
            r.viewers += 1;
        }
    }

    /// A viewer left relay `i`.
    pub fn viewer_removed(&mut self, i: usize) {
        if let Some(r) = self.relays.get_mut(i) {
            r.viewers = r.viewers.saturating_sub(1);
        }
    }
}

/// One relay as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayGauge {
    /// Its name (`relay-0`, ...).
    pub name: String,
    /// Alive.
    pub healthy: bool,
    /// Viewers the AS placed on it.
    pub viewers: usize,
}

#[derive(Debug)]
struct PoolInner {
    names: Vec<String>,
    handles: Vec<RelayHandle>,
    health: HealthConfig,
    state: Mutex<PoolState>,
    /// Relay tree (`[relay] tree`, `tu/tree.rs`).
    tree: std::sync::atomic::AtomicBool,
    /// Wakes the declaration task ([`RelayPool::set_channel_polls`]).
    declare_wake: Arc<tokio::sync::Notify>,
    /// Whether the declaration task runs.
    declare_task: std::sync::atomic::AtomicBool,
    /// One declaration run at a time, so a relay gets a channel's lists in order.
    declaring: tokio::sync::Mutex<()>,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Ends the declaration task (it holds only a weak reference).
        self.declare_wake.notify_one();
    }
}

/// The pool's state under its lock ([`RelayPool::state`]); dropping it wakes the poll
/// declaration task when a change made a declaration due.
#[derive(Debug)]
pub struct PoolGuard<'a> {
    guard: MutexGuard<'a, PoolState>,
    wake: &'a tokio::sync::Notify,
}

impl std::ops::Deref for PoolGuard<'_> {
    type Target = PoolState;
    fn deref(&self) -> &PoolState {
        &self.guard
    }
}

impl std::ops::DerefMut for PoolGuard<'_> {
    fn deref_mut(&mut self) -> &mut PoolState {
        &mut self.guard
    }
}

impl Drop for PoolGuard<'_> {
    fn drop(&mut self) {
        if self.guard.has_due_declarations() {
            self.wake.notify_one();
        }
    }
}

/// The relays of one AS (cheap to clone).
#[derive(Debug, Clone)]
pub struct RelayPool {
    inner: Arc<PoolInner>,
}

impl RelayPool {
    /// A pool over running relays, named in order.
    pub fn new(relays: Vec<(String, RelayHandle)>, health: HealthConfig) -> Self {
        let n = relays.len();
        let (names, handles) = relays.into_iter().unzip();
        Self {
            inner: Arc::new(PoolInner {
                names,
                handles,
                health,
                state: Mutex::new(PoolState::new(n)),
                tree: std::sync::atomic::AtomicBool::new(false),
                declare_wake: Arc::new(tokio::sync::Notify::new()),
                declare_task: std::sync::atomic::AtomicBool::new(false),
                declaring: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A pool of one relay, `relay-0`.
    pub fn single(relay: RelayHandle) -> Self {
        Self::new(
            vec![(RelaySection::relay_name(0), relay)],
            HealthConfig::default(),
        )
    }

    /// Starts `section.count` in-process relays on the current tokio runtime
    /// ([`RelaySection::relay_config_for`]); the ones started are shut down if one fails.
    pub async fn spawn(section: &RelaySection) -> Result<Self, RelayError> {
        let mut relays = Vec::new();
        for i in 0..section.count.max(1) {
            match Relay::spawn(section.relay_config_for(i)) {
                Ok(h) => relays.push((RelaySection::relay_name(i), h)),
                Err(e) => {
                    for (_, h) in &relays {
                        let _ = h.shutdown().await;
                    }
                    return Err(e);
                }
            }
        }
        let pool = Self::new(relays, HealthConfig::from_section(section));
        pool.set_tree(section.tree);
        Ok(pool)
    }

    /// Whether channels are ingested at one relay and pulled by the others (`[relay] tree`).
    pub fn tree(&self) -> bool {
        self.inner.tree.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns the relay tree on or off (for channels placed from now on).
    pub fn set_tree(&self, on: bool) {
        self.inner
            .tree
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Number of relays.
    pub fn len(&self) -> usize {
        self.inner.handles.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.handles.is_empty()
    }

    /// Every relay's handle, by index.
    pub fn handles(&self) -> &[RelayHandle] {
        &self.inner.handles
    }

    /// Relay `i`'s handle.
    ///
    /// # Panics
    /// When `i` is out of range (indexes come from the pool itself).
    pub fn handle(&self, i: usize) -> &RelayHandle {
        &self.inner.handles[i]
    }

    /// Relay `i`'s name (`relay-<i>`, or `?` out of range).
    pub fn name(&self, i: usize) -> &str {
        self.inner.names.get(i).map_or("?", String::as_str)
    }

    /// The probe settings.
    pub fn health(&self) -> HealthConfig {
        self.inner.health
    }

    /// The placement/health state (a std mutex: never hold it across an await).
    pub fn state(&self) -> PoolGuard<'_> {
        PoolGuard {
            guard: self
                .inner
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            wake: &self.inner.declare_wake,
        }
    }

    /// Declares `channel`'s polls to every live relay carrying it and waits for those calls
    /// (each under the health timeout; a failure is logged and retried with the next
    /// change). From then on a relay that starts carrying the channel is told by the
    /// declaration task this starts (on the current tokio runtime) the first time; the
    /// caller must not be a SIP transaction waiting on it (the HTTP API is).
    pub async fn set_channel_polls(&self, channel: &str, polls: Vec<u32>) {
        self.record_channel_polls(channel, polls);
        self.declare_polls().await;
    }

    /// [`RelayPool::set_channel_polls`] without waiting: records the list and leaves the
    /// calls to the declaration task (or to a [`RelayPool::declare_polls`] of the caller).
    /// Must run on a tokio runtime.
    pub fn record_channel_polls(&self, channel: &str, polls: Vec<u32>) {
        self.start_declaration_task();
        self.state().set_channel_polls(channel, polls);
    }

    fn start_declaration_task(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.declare_task.swap(true, Ordering::AcqRel) {
            return;
        }
        let wake = Arc::clone(&self.inner.declare_wake);
        let pool: Weak<PoolInner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                let Some(inner) = pool.upgrade() else { break };
                RelayPool { inner }.declare_polls().await;
            }
        });
    }

    /// Sends every due poll declaration ([`PoolState::take_declarations`]), concurrently,
    /// each under the health timeout; returns how many failed (logged, and kept for the
    /// next change).
    pub async fn declare_polls(&self) -> usize {
        let _one = self.inner.declaring.lock().await;
        let work = self.state().take_declarations();
        let timeout = self.inner.health.timeout;
        let mut calls = tokio::task::JoinSet::new();
        for (i, channel, polls) in work {
            let h = self.handle(i).clone();
            calls.spawn(async move {
                let id = ChannelId(channel.clone());
                let r = tokio::time::timeout(timeout, h.set_channel_polls(&id, polls)).await;
                (i, channel, r)
            });
        }
        let mut failed = 0;
        while let Some(done) = calls.join_next().await {
            let Ok((i, channel, r)) = done else { continue };
            let error = match r {
                Ok(Ok(())) => {
                    debug!(relay = %self.name(i), %channel, "polls declared");
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer in time".to_owned(),
            };
            failed += 1;
            warn!(relay = %self.name(i), %channel, %error, "poll declaration failed: retried with the next change");
            self.state().declaration_failed(i, &channel);
        }
        failed
    }

    /// Each relay's name, health and viewers.
    pub fn gauges(&self) -> Vec<RelayGauge> {
        let st = self.state();
        (0..self.len())
            .map(|i| RelayGauge {
                name: self.name(i).to_owned(),
                healthy: st.is_healthy(i),
                viewers: st.relay(i).map_or(0, |r| r.viewers),
            })
            .collect()
    }

    /// Probes relay `i` once (`stats()` under the timeout). Does not change the state.
    pub async fn probe(&self, i: usize) -> Probe {
        let Some(h) = self.inner.handles.get(i) else {
            return Probe::Stopped;
        };
        match tokio::time::timeout(self.inner.health.timeout, h.stats()).await {
            Ok(Ok(_)) => Probe::Ok,
            Ok(Err(RelayError::Stopped)) => Probe::Stopped,
            Ok(Err(_)) | Err(_) => Probe::Timeout,
        }
    }

    /// Stats of every live relay (each under the timeout), with its index.
    pub async fn stats(&self) -> Vec<(usize, RelayStats)> {
        let live = self.state().healthy();
        let timeout = self.inner.health.timeout;
        let mut calls = tokio::task::JoinSet::new();
        for i in live {
            let h = self.handle(i).clone();
            calls.spawn(async move { (i, tokio::time::timeout(timeout, h.stats()).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = calls.join_next().await {
            if let Ok((i, Ok(Ok(s)))) = r {
                out.push((i, s));
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out
    }

    /// Stops relay `i` abruptly, like a crashed process: its task ends, no RTCP BYE, no SIP
    /// BYE; the health monitor finds out on its next probe. `false` if `i` is out of range
    /// or the relay had stopped already.
    pub async fn stop(&self, i: usize) -> bool {
        match self.inner.handles.get(i) {
            Some(h) => h.shutdown().await.is_ok(),
            None => false,
        }
    }
}

/// Adds up several relays' stats for the AS's `/metrics`: totals summed, channels merged
/// by id (viewers and counters summed), no per-viewer rows.
pub fn merge_stats(all: &[RelayStats]) -> RelayStats {
    let mut out = RelayStats::default();
    for s in all {
        let t = &mut out.totals;
        let u = &s.totals;
        t.packets_in += u.packets_in;
        t.packets_out += u.packets_out;
        t.bytes_out += u.bytes_out;
        t.burst_packets += u.burst_packets;
        t.rtcp_out += u.rtcp_out;
        t.rtcp_in += u.rtcp_in;
        t.malformed_rtp += u.malformed_rtp;
        t.malformed_rtcp += u.malformed_rtcp;
        t.unmatched += u.unmatched;
        t.send_errors += u.send_errors;
        t.viewers_dropped += u.viewers_dropped;
        for c in &s.channels {
            match out.channels.iter_mut().find(|x| x.channel == c.channel) {
                Some(x) => {
                    x.packets_in += c.packets_in;
                    x.bytes_in += c.bytes_in;
                    x.key_frames += c.key_frames;
                    x.viewers += c.viewers;
                    x.cached_packets += c.cached_packets;
                    x.cached_bytes += c.cached_bytes;
                    x.malformed += c.malformed;
                    x.rtcp_in += c.rtcp_in;
                    x.downstreams += c.downstreams;
                    x.downstream_packets += c.downstream_packets;
                }
                None => out.channels.push(c.clone()),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the virtual clock starts (only differences matter).
    #[expect(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn pool(n: usize, channels: &[(usize, &str)]) -> PoolState {
        let mut p = PoolState::new(n);
        for (i, c) in channels {
            p.add_channel(*i, c);
        }
        p
    }

    #[test]
    fn join_goes_to_the_least_loaded_relay_with_the_channel() {
        let mut p = pool(3, &[(0, "news"), (1, "news"), (2, "news"), (2, "mine")]);
        let mut placed = Vec::new();
        for _ in 0..6 {
            let i = p.pick_for_channel("news").unwrap();
            p.viewer_added(i);
            placed.push(i);
        }
        assert_eq!(
            placed,
            [0, 1, 2, 0, 1, 2],
            "spread evenly, ties to the lowest"
        );
        assert_eq!(p.pick_for_channel("mine"), Some(2), "only relay 2 has it");
        assert_eq!(p.pick_for_channel("other"), None);
        p.viewer_removed(1);
        p.viewer_removed(1);
        assert_eq!(p.pick_for_channel("news"), Some(1));
    }

    #[test]
    fn new_ingest_goes_to_the_least_loaded_live_relay() {
        let mut p = pool(3, &[(0, "a")]);
        p.viewer_added(1);
        assert_eq!(
            p.pick_least_loaded(),
            Some(2),
            "0 has a channel, 1 a viewer"
        );
        assert!(p.mark_dead(2));
        assert_eq!(p.pick_least_loaded(), Some(0));
        p.mark_dead(0);
        p.mark_dead(1);
        assert_eq!(p.pick_least_loaded(), None);
    }

    #[test]
    fn dead_relays_are_never_picked_and_stay_dead() {
        let mut p = pool(2, &[(0, "news"), (1, "news")]);
        assert!(p.mark_dead(0));
        assert!(!p.mark_dead(0), "the transition is reported once");
        assert_eq!(p.channels_of(0), ["news"], "kept for the failover");
        assert_eq!(p.pick_for_channel("news"), Some(1));
        assert_eq!(p.carriers("news"), [1]);
        assert!(!p.carries(0, "news"));
        p.add_channel(0, "late");
        assert_eq!(p.pick_for_channel("late"), None);
        let t = base();
        assert!(
            !p.on_probe(0, t, Probe::Ok, 2),
            "a dead relay does not come back"
        );
        assert!(!p.is_healthy(0));
        assert_eq!(p.healthy(), [1]);
    }

    #[test]
    fn health_counts_consecutive_timeouts_under_a_virtual_clock() {
        let t0 = base();
        let tick = Duration::from_millis(100);
        let mut p = PoolState::new(2);
        // Relay 0: timeout, ok, timeout -> still alive (not consecutive).
        assert!(!p.on_probe(0, t0, Probe::Timeout, 2));
        assert!(!p.on_probe(0, t0 + tick, Probe::Ok, 2));
        assert_eq!(p.relay(0).unwrap().last_ok, Some(t0 + tick));
        assert!(!p.on_probe(0, t0 + tick * 2, Probe::Timeout, 2));
        assert!(p.is_healthy(0));
        // Second consecutive timeout: dead, reported once.
        assert!(p.on_probe(0, t0 + tick * 3, Probe::Timeout, 2));
        assert!(!p.on_probe(0, t0 + tick * 4, Probe::Timeout, 2));
        assert!(!p.is_healthy(0));
        // Stopped: dead at once, whatever the limit.
        assert!(p.on_probe(1, t0, Probe::Stopped, 5));
        assert!(p.healthy().is_empty());
    }

    #[test]
    fn deleting_a_channel_names_the_live_relays_that_had_it() {
        let mut p = pool(3, &[(0, "x"), (1, "x"), (2, "x")]);
        p.mark_dead(1);
        assert_eq!(p.remove_channel("x"), [0, 2]);
        assert!(p.carriers("x").is_empty());
    }

    #[test]
    fn polls_are_due_where_the_channel_is_carried_and_where_it_arrives() {
        let mut p = pool(3, &[(0, "a"), (1, "b")]);
        p.add_channel(2, "a");
        assert!(
            !p.has_due_declarations(),
            "no polls yet: nothing to declare"
        );
        p.set_channel_polls("a", vec![7]);
        let mut got = p.take_declarations();
        got.sort();
        assert_eq!(
            got,
            [(0, "a".to_owned(), vec![7]), (2, "a".to_owned(), vec![7])]
        );
        assert!(p.take_declarations().is_empty(), "taken once");
        // A relay that starts carrying the channel (pull, ingest) is due its polls.
        p.set_pulled(1, "a", true);
        assert!(p.has_due_declarations());
        p.set_channel_polls("a", vec![7, 8]);
        let got = p.take_declarations();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|(_, _, polls)| polls == &[7, 8]));
        // A failure waits for the next change (no busy retry), then goes with it.
        p.declaration_failed(1, "a");
        assert!(!p.has_due_declarations());
        p.add_channel(1, "b");
        assert!(!p.has_due_declarations(), "b has no polls");
        p.set_channel_polls("b", vec![]);
        let mut got = p.take_declarations();
        got.sort();
        assert_eq!(
            got,
            [(1, "a".to_owned(), vec![7, 8]), (1, "b".to_owned(), vec![])]
        );
        // A dead relay is not told.
        p.mark_dead(0);
        p.set_channel_polls("a", vec![8]);
        let mut got = p.take_declarations();
        got.sort();
        assert_eq!(got.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p.channel_polls("a"), Some(&[8][..]));
    }

    #[test]
    fn stats_merge_by_channel() {
        use media_relay::control::{ChannelId, ChannelStats};
        let ch = |id: &str, v: usize| ChannelStats {
            channel: ChannelId::from(id),
            packets_in: 1,
            bytes_in: 10,
            key_frames: 0,
            viewers: v,
            cached_packets: 0,
            cached_bytes: 0,
            malformed: 0,
            rtcp_in: 0,
            downstreams: 0,
            downstream_packets: 0,
        };
        let mut a = RelayStats {
            channels: vec![ch("news", 2), ch("mine", 1)],
            ..RelayStats::default()
        };
        a.totals.packets_out = 5;
        let mut b = RelayStats {
            channels: vec![ch("news", 3)],
            ..RelayStats::default()
        };
        b.totals.packets_out = 7;
        let m = merge_stats(&[a, b]);
        assert_eq!(m.totals.packets_out, 12);
        assert_eq!(m.channels.len(), 2);
        assert_eq!(m.channels[0].viewers, 5);
        assert_eq!(m.channels[0].packets_in, 2);
    }
}
