//! The relay tree in the AS (`[relay] tree = true`): one ingest per channel, pulled by the
//! other relays.
//!
//! How it fits: with the tree on, [`Service::place_ingest`](super::Service) hands over to
//! [`Service::place_ingest_tree`]. A channel gets its ingest on one relay, its home (the
//! least-loaded live relay; a test pattern runs there only), and every other live relay is
//! told with `media_relay::RelayHandle::set_upstream` that the home carries it. Those relays
//! are marked as pulling it in the pool (`PoolState::set_pulled`), so viewers are placed on
//! the least-loaded of all of them (`PoolState::pick_for_channel`); a relay pulls one copy
//! from the home while it has viewers of the channel and stops on its last leave
//! (`media_relay::tree`).
//!
//! Failure: the home dies -> the failover (`tu/failover.rs`) finds the channel without a live
//! ingest and re-homes it through this same function: the new home (a relay that was pulling
//! it) stops pulling (`clear_upstream`), keeps its viewers and the channel, and is fed there
//! (test pattern restarted, or the producer re-INVITEd to its ingest); every other live relay
//! is pointed at the new home with `set_upstream`, and re-attaches at once. Meanwhile the
//! downstream relays' viewers see a gap and then the stream again at a key frame, on the same
//! SSRC and numbering line. Candidates are only relays with an ingest (never pulling relays),
//! so the tree cannot form a loop.

use media_relay::control::{ChannelId, ChannelSpec, IngestInfo};
use media_relay::Upstream;
use tracing::{info, warn};

use super::{relay_err, Service};
use crate::error::{Error, Result};

impl Service {
    /// Gives `id` its ingest on one relay (its home) and makes every other live relay pull
    /// it from there; returns the home and its ingest. See the module docs.
    pub(super) async fn place_ingest_tree(
        &self,
        id: &str,
        test_pattern: bool,
    ) -> Result<(usize, IngestInfo)> {
        let retry = self.inner.cfg.limits.retry_after_secs;
        let channel = ChannelId::from(id);
        let Some(home) = self.inner.relays.state().pick_least_loaded() else {
            return Err(Error::Overloaded { retry_after: retry });
        };
        self.inner.relays.state().set_test_pattern(id, test_pattern);
        let relay = self.relay(home).clone();
        let pulled = self.inner.relays.state().pullers(id).contains(&home);
        let made = self
            .relay_call(home, async {
                let ingest = if pulled {
                    // A relay that pulled the channel becomes its home: same channel, same
                    // viewers, fed here from now on.
                    relay.clear_upstream(&channel).await?;
                    relay.ingest_info(&channel).await?
                } else {
                    relay
                        .create_ingest(ChannelSpec::new(channel.clone()))
                        .await?
                };
                if test_pattern {
                    relay.start_test_pattern(&channel).await?;
                }
                Ok(ingest)
            })
            .await
            .map_err(|e| relay_err(e, retry))?;
        {
            let mut st = self.inner.relays.state();
            st.set_pulled(home, id, false);
            st.add_ingest(home, made.clone());
        }
        let others: Vec<usize> = self
            .inner
            .relays
            .state()
            .healthy()
            .into_iter()
            .filter(|&i| i != home)
            .collect();
        let upstream = vec![Upstream::Local(relay.clone())];
        let mut calls = tokio::task::JoinSet::new();
        for i in others {
            let svc = self.clone();
            let h = self.relay(i).clone();
            let (channel, upstream) = (channel.clone(), upstream.clone());
            calls.spawn(async move {
                let r = svc.relay_call(i, h.set_upstream(channel, upstream)).await;
                (i, r)
            });
        }
        while let Some(done) = calls.join_next().await {
            let Ok((i, r)) = done else { continue };
            match r {
                Ok(()) => self.inner.relays.state().set_pulled(i, id, true),
                Err(e) => {
                    warn!(channel = %id, relay = %self.inner.relays.name(i), error = %e, "relay cannot pull the channel");
                }
            }
        }
        info!(channel = %id, home = %self.inner.relays.name(home), test_pattern, "channel homed (relay tree)");
        Ok((home, made))
    }
}
