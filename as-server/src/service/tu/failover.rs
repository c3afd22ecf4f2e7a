//! Relay health and failover: the monitor that probes every relay, and what happens to the
//! sessions of a relay declared dead.
//!
//! * **Health** ([`Service::run_relay_monitor`]): every `relay.health_interval_ms` each live
//!   relay is probed (`stats()` under `relay.health_timeout_ms`); `relay.health_failures`
//!   consecutive timeouts declare it dead, and so does any control call answered
//!   "stopped" (its task is gone: [`Service::relay_call_failed`]). Dead is final. A slow
//!   control call (4 health timeouts) fails with a 503 but does not count as a failed
//!   probe: a relay busy with a failover burst must not be declared dead for it.
//! * **Failover** ([`Service::failover`]): first every channel only the dead relay carried
//!   gets a new ingest on the least-loaded live relay (a test-pattern channel its own
//!   pattern there; the catalogue's ingest address is updated; with the relay tree the new
//!   home is a relay that pulled the channel and the others are pointed at it, `tu/tree.rs`). Then every session of the
//!   dead relay is moved, concurrently ([`FAILOVER_CONCURRENCY`] at a time):
//!   - a viewer: `add_viewer` on the least-loaded live relay carrying its channel (its
//!     key-frame burst gives the picture back at once), then a re-INVITE in the dialog
//!     (RFC 3261 section 14.1; the AS is the UAS of the dialog, so this is a UAC
//!     transaction with the AS's own CSeq and the route set) whose SDP offer names the new
//!     relay: the session's last SDP with the new address, `a=rtcp`/`a=rtcp-unicast:rsi` to
//!     the new relay, `a=ssrc` of the new path, same `o=` session id, version + 1
//!     (RFC 3264 section 8), `sendonly`;
//!   - a personal channel's producer: a re-INVITE whose offer (`recvonly`) names the new
//!     ingest.
//!
//!   A 2xx is ACKed (RFC 3261 13.2.2.4) and the session row names the new relay. A 491
//!   (our re-INVITE crossed the UE's, section 14.1) is retried after a random 0-2 s (the
//!   AS did not make the Call-ID); the UE's re-INVITE that arrives while ours is pending
//!   gets 491 (`reinvite`). Any other failure, or no live relay for the channel: the
//!   session ends with a BYE carrying `Reason: SIP ;cause=...` (RFC 3326), the new relay
//!   path is removed.

use std::time::Duration;

use media_relay::control::{AddViewer, ChannelId, Error as RelayError, ViewerId};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::{now, Metrics, Role, Service, Session};
use crate::sip::dialog::DialogId;
use crate::sip::sdp::SdpOffer;
use crate::sip::Response;

/// Sessions moved at once by a failover.
pub const FAILOVER_CONCURRENCY: usize = 64;

/// Re-INVITEs tried for one session when each crosses one of the UE's (491).
const GLARE_ATTEMPTS: u32 = 3;

/// How a session's move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Re-INVITE answered 2xx.
    Moved,
    /// The session was ended (no relay, re-INVITE refused).
    Ended,
    /// The session had gone meanwhile (BYE) or was not on the dead relay.
    Gone,
}

/// What a failover did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailoverReport {
    /// Sessions moved (2xx to the re-INVITE).
    pub moved: usize,
    /// Sessions ended.
    pub ended: usize,
    /// Time from the start of the failover to the last answer.
    pub elapsed: Duration,
}

/// What a relay control call that did not answer in time returns (a 503 with Retry-After
/// for a join).
pub(super) const NO_ANSWER: &str = "relay did not answer in time";

/// A control call may take this many health timeouts before it is given up.
const CALL_TIMEOUTS: u32 = 4;

impl Service {
    /// Runs a control call to relay `i` under `CALL_TIMEOUTS` health timeouts. An answer
    /// "stopped" declares the relay dead at once (its task is gone). A call that takes too
    /// long returns `Overloaded(NO_ANSWER)` but does not count against the relay's health:
    /// under a burst (a failover moving a thousand viewers onto it) a busy relay answers
    /// late, and declaring it dead would move everyone again; the monitor's consecutive
    /// probe timeouts decide.
    pub(super) async fn relay_call<T>(
        &self,
        i: usize,
        call: impl std::future::Future<Output = Result<T, RelayError>>,
    ) -> Result<T, RelayError> {
        let limit = self.inner.relays.health().timeout * CALL_TIMEOUTS;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.relay_call_failed(i, &e);
                Err(e)
            }
            Err(_) => {
                warn!(relay = %self.inner.relays.name(i), ?limit, "relay control call timed out");
                Err(RelayError::Overloaded(NO_ANSWER))
            }
        }
    }

    /// A control call to relay `i` failed with `e`: "stopped" declares it dead at once and
    /// starts its failover (in a task).
    pub(super) fn relay_call_failed(&self, i: usize, e: &RelayError) {
        if matches!(e, RelayError::Stopped) && self.inner.relays.state().mark_dead(i) {
            warn!(relay = %self.inner.relays.name(i), "relay stopped: failover");
            self.spawn_failover(i);
        }
    }

    /// Probes every live relay each `relay.health_interval_ms` and fails over the ones
    /// declared dead. Runs until the task is dropped (the app stops it at shutdown).
    pub async fn run_relay_monitor(&self) {
        let health = self.inner.relays.health();
        let mut every = tokio::time::interval(health.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let live = self.inner.relays.state().healthy();
            let mut probes = JoinSet::new();
            for i in live {
                let pool = self.inner.relays.clone();
                probes.spawn(async move { (i, pool.probe(i).await) });
            }
            while let Some(done) = probes.join_next().await {
                let Ok((i, probe)) = done else { continue };
                let (t, _) = now();
                let died = self
                    .inner
                    .relays
                    .state()
                    .on_probe(i, t, probe, health.failures);
                if died {
                    warn!(relay = %self.inner.relays.name(i), ?probe, "relay declared dead: failover");
                    self.spawn_failover(i);
                }
            }
        }
    }

    /// Runs [`Self::failover`] in a task (boxed as `Send`: the failover's own relay calls
    /// may start another failover).
    fn spawn_failover(&self, dead: usize) {
        let svc = self.clone();
        let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move {
                svc.failover(dead).await;
            });
        tokio::spawn(task);
    }

    /// Moves everything off relay `dead` (already declared dead), see the module docs.
    pub async fn failover(&self, dead: usize) -> FailoverReport {
        let (t0, _) = now();
        Metrics::inc(&self.inner.metrics.relay_failovers);
        let name = self.inner.relays.name(dead).to_owned();
        // 1. Channels only the dead relay carried get a new ingest.
        let orphans: Vec<String> = {
            let pool = self.inner.relays.state();
            pool.channels_of(dead)
                .into_iter()
                .filter(|c| pool.carriers(c).is_empty())
                .collect()
        };
        // Personalised channels last: they are made again over their re-homed sources.
        let mixes = self.personalized_among(&orphans).await;
        for channel in orphans.iter().filter(|c| !mixes.contains(c)) {
            // A remote channel (service::overlay) is pulled again instead.
            if !self.overlay_repull(channel).await {
                self.rehome_channel(channel).await;
            }
        }
        for channel in &mixes {
            self.rehome_personalized(channel).await;
        }
        // 2. Sessions move, a bounded number at a time.
        let keys: Vec<DialogId> = self
            .state()
            .sessions
            .iter()
            .filter(|(_, s)| s.relay() == dead && !s.reinvite_pending)
            .map(|(k, _)| k.clone())
            .collect();
        let total = keys.len();
        let gate = std::sync::Arc::new(Semaphore::new(FAILOVER_CONCURRENCY));
        let mut moves = JoinSet::new();
        for key in keys {
            let svc = self.clone();
            let gate = gate.clone();
            moves.spawn(async move {
                let _permit = gate.acquire_owned().await;
                svc.move_session(key, dead).await
            });
        }
        let mut report = FailoverReport::default();
        while let Some(done) = moves.join_next().await {
            match done {
                Ok(Outcome::Moved) => report.moved += 1,
                Ok(Outcome::Ended) => report.ended += 1,
                Ok(Outcome::Gone) | Err(_) => {}
            }
        }
        report.elapsed = now().0.saturating_duration_since(t0);
        info!(
            relay = %name,
            sessions = total,
            moved = report.moved,
            ended = report.ended,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "relay failover done"
        );
        report
    }

    /// Gives `channel` (which no live relay carries) a new ingest on a live relay and
    /// records it in the catalogue. A failure leaves it without ingest: its sessions end.
    async fn rehome_channel(&self, channel: &str) {
        let pattern = self.inner.relays.state().is_test_pattern(channel);
        match self.place_ingest(channel, pattern).await {
            Ok((relay, ingest)) => {
                let relay_name = self.inner.relays.name(relay).to_owned();
                if let Err(e) = self
                    .inner
                    .catalogue
                    .set_ingest_on(channel, ingest.rtp_addr, Some(&relay_name))
                    .await
                {
                    warn!(%channel, error = %e, "new ingest not stored");
                }
                info!(%channel, relay = %relay_name, ingest = %ingest.rtp_addr, "channel re-homed");
            }
            Err(e) => warn!(%channel, error = %e, "channel lost its relay: no other relay"),
        }
    }

    /// Moves one session off relay `dead` (module docs).
    async fn move_session(&self, key: DialogId, dead: usize) -> Outcome {
        let snapshot = {
            let mut st = self.state();
            match st.sessions.get_mut(&key) {
                Some(s) if s.relay() == dead && !s.reinvite_pending => {
                    s.reinvite_pending = true;
                    Some(s.clone())
                }
                _ => None,
            }
        };
        let Some(session) = snapshot else {
            return Outcome::Gone;
        };
        let offer = match &session.role {
            Role::Viewer { .. } => self.viewer_offer(&key, &session).await,
            Role::Owner { channel, .. } => self.owner_offer(&key, &session, channel),
        };
        let body = match offer {
            Ok(Some(body)) => body,
            Ok(None) => return Outcome::Gone,
            Err(reason) => {
                return self
                    .end_failed_move(&key, &format!("SIP ;cause=503 ;text=\"{reason}\""))
                    .await
            }
        };
        self.reinvite_and_confirm(key, body).await
    }

    /// A viewer's new path: `add_viewer` on a live relay carrying its channel; the session
    /// (state) then names the new viewer, relay and SDP. `Ok(None)`: the session has gone.
    async fn viewer_offer(
        &self,
        key: &DialogId,
        session: &Session,
    ) -> std::result::Result<Option<Vec<u8>>, &'static str> {
        let Role::Viewer {
            channel,
            payload_type,
            rtp_dest,
            rtcp_dest,
            ..
        } = &session.role
        else {
            return Err("not a viewer");
        };
        let viewer = ViewerId(
            self.inner
                .next_viewer
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let placed = self
            .place_viewer(AddViewer {
                viewer,
                channel: ChannelId::from(channel.as_str()),
                rtp_dest: *rtp_dest,
                rtcp_dest: *rtcp_dest,
                payload_type: *payload_type,
                downstream: false,
            })
            .await;
        let (relay, info) = match placed {
            Ok(x) => x,
            Err(e) => {
                debug!(%channel, error = %e, "no relay for a moved viewer");
                return Err("No media relay available");
            }
        };
        let version = session.sdp.version + 1;
        let transport = self.viewer_transport(relay, &info, session.sdp.session_id, version);
        let body = match session.sdp.negotiation.clone().answer(&transport) {
            Ok(a) => a.to_bytes(),
            Err(_) => {
                self.remove_viewer(relay, viewer).await;
                return Err("No SDP for the new relay");
            }
        };
        let updated = {
            let mut st = self.state();
            match st.sessions.get_mut(key) {
                Some(s) => {
                    if let Role::Viewer {
                        viewer: v,
                        relay: r,
                        ..
                    } = &mut s.role
                    {
                        *v = viewer;
                        *r = relay;
                    }
                    s.sdp.body.clone_from(&body);
                    s.sdp.version = version;
                    true
                }
                None => false,
            }
        };
        if !updated {
            // A BYE came meanwhile: its finish removed the old viewer, not this one.
            self.remove_viewer(relay, viewer).await;
            return Ok(None);
        }
        Ok(Some(body))
    }

    /// A personal channel's producer: its channel has been re-homed; the offer names the
    /// new ingest. `Ok(None)`: the session has gone.
    fn owner_offer(
        &self,
        key: &DialogId,
        session: &Session,
        channel: &str,
    ) -> std::result::Result<Option<Vec<u8>>, &'static str> {
        let Some(relay) = self.inner.relays.state().carriers(channel).first().copied() else {
            return Err("No media relay available");
        };
        let ingest = self.inner.relays.state().ingest_of(relay, channel);
        let Some(ingest) = ingest else {
            return Err("No ingest on the new relay");
        };
        let version = session.sdp.version + 1;
        let transport = Self::ingest_transport(&ingest, session.sdp.session_id, version);
        let body = session
            .sdp
            .negotiation
            .clone()
            .answer(&transport)
            .map_err(|_| "No SDP for the new relay")?
            .to_bytes();
        let mut st = self.state();
        let Some(s) = st.sessions.get_mut(key) else {
            return Ok(None);
        };
        if let Role::Owner { relay: r, .. } = &mut s.role {
            *r = relay;
        }
        s.sdp.body.clone_from(&body);
        s.sdp.version = version;
        Ok(Some(body))
    }

    /// Sends the re-INVITE with `body` (retried on 491), ACKs a 2xx and records the move;
    /// on failure ends the session.
    async fn reinvite_and_confirm(&self, key: DialogId, body: Vec<u8>) -> Outcome {
        for attempt in 1..=GLARE_ATTEMPTS {
            let built = {
                let mut st = self.state();
                st.sessions.get_mut(&key).map(|s| {
                    let req = s.dialog.dialog.reinvite(body.clone());
                    (req, s.dialog.clone())
                })
            };
            let Some((req, dialog)) = built else {
                return Outcome::Gone;
            };
            let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
            let answer = self
                .inner
                .sip
                .send_request(req, dialog.dest, dialog.transport)
                .await;
            let status = answer.as_ref().map_or(408, |r| r.status.0);
            if (200..300).contains(&status) {
                //= RFC 3261 13.2.2.4: the UAC core sends the ACK of a 2xx itself.
                let ack = dialog.dialog.ack(seq);
                self.inner
                    .sip
                    .send_stateless(ack, dialog.dest, dialog.transport);
                if let Ok(resp) = &answer {
                    self.check_answer(&key, resp);
                }
                return self.confirm_move(&key).await;
            }
            if status == 491 && attempt < GLARE_ATTEMPTS {
                //= RFC 3261 14.1: not the owner of the Call-ID: wait 0 to 2 s, then retry.
                let wait = Duration::from_millis(rand::random::<u64>() % 2000);
                debug!(call_id = %key.call_id, ?wait, "491 to our re-INVITE: retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            // 481 / 408: the dialog is gone (RFC 3261 12.2.1.2), no BYE; else a BYE.
            let bye = status != 481 && status != 408;
            let reason = format!("SIP ;cause={status} ;text=\"Relay failover re-INVITE failed\"");
            return self.end_failed_move_with(&key, bye, &reason).await;
        }
        Outcome::Ended
    }

    /// Logs what the UE's SDP answer says about its own address (a change is not acted
    /// on in this version: the new relay keeps sending to the address of the first offer).
    fn check_answer(&self, key: &DialogId, resp: &Response) {
        if resp.body.is_empty() {
            return;
        }
        let Ok(sdp) = SdpOffer::parse(&resp.body) else {
            debug!(call_id = %key.call_id, "re-INVITE 2xx with unparsable SDP");
            return;
        };
        let st = self.state();
        if let Some(Role::Viewer { rtp_dest, .. }) = st.sessions.get(key).map(|s| &s.role) {
            let theirs = sdp.media().iter().find_map(|m| m.rtp_addr());
            if theirs.is_some_and(|a| a != *rtp_dest) {
                warn!(call_id = %key.call_id, ?theirs, dest = %rtp_dest, "UE changed its address in the failover answer: ignored");
            }
        }
    }

    /// The 2xx was ACKed: the session is on its new relay.
    async fn confirm_move(&self, key: &DialogId) -> Outcome {
        let done = {
            let mut st = self.state();
            st.sessions.get_mut(key).map(|s| {
                s.reinvite_pending = false;
                (s.store_id.clone(), s.relay())
            })
        };
        let Some((store_id, relay)) = done else {
            return Outcome::Gone;
        };
        Metrics::inc(&self.inner.metrics.moved_viewers);
        let name = self.inner.relays.name(relay).to_owned();
        if let Some(id) = store_id {
            if let Err(e) = self.inner.catalogue.set_session_relay(&id, &name).await {
                warn!(error = %e, "session relay not stored");
            }
        }
        debug!(call_id = %key.call_id, relay = %name, "session moved");
        // The new relay may have died while the re-INVITE was out.
        if !self.inner.relays.state().is_healthy(relay) {
            let svc = self.clone();
            let key = key.clone();
            tokio::spawn(svc.move_again(key, relay));
        }
        Outcome::Moved
    }

    /// [`Self::move_session`] as a boxed `Send` future (it is spawned from inside itself).
    fn move_again(
        self,
        key: DialogId,
        dead: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>> {
        Box::pin(async move { self.move_session(key, dead).await })
    }

    async fn end_failed_move(&self, key: &DialogId, reason: &str) -> Outcome {
        self.end_failed_move_with(key, true, reason).await
    }

    async fn end_failed_move_with(&self, key: &DialogId, bye: bool, reason: &str) -> Outcome {
        let taken = self.state().sessions.remove(key);
        let Some(s) = taken else {
            return Outcome::Gone;
        };
        Metrics::inc(&self.inner.metrics.failover_ended);
        info!(call_id = %key.call_id, channel = %s.channel(), %reason, "failover could not move the session: ended");
        self.finish_with(key.clone(), s, bye, Some(reason)).await;
        Outcome::Ended
    }
}
