//! Per-core sharding: N independent relay drivers, channels hashed to them, one handle.
//!
//! How it fits: [`Relay::spawn_with`] with [`DriverOptions::shards`] above 1 calls `spawn`
//! here. Each shard is a whole relay (its own sans-IO core, output sockets, ingest sockets,
//! feeds and timers) on its own OS thread with a current-thread tokio runtime, so two shards
//! run on two cores with nothing shared on the forwarding path: no lock, no queue between them.
//! Nearly all of a fan-out's CPU is the kernel's per-datagram send path (see
//! `BENCHMARKS.md`), which parallelises cleanly across sockets, so N shards forward about N
//! times the packets of one while each channel stays on one core.
//!
//! A router task on the caller's runtime owns the one [`RelayHandle`]'s command channel and
//! forwards each [`Command`]: per channel ([`shard_of`], a fixed hash of the channel id) for
//! ingest, feeds, test patterns, feedback and tree upstreams; per viewer (the shard its channel
//! lives on, remembered at `AddViewer`) for removal and zaps; to every shard for stats (summed)
//! and shutdown. Events of all shards are published on the handle's one event channel.
//!
//! Limits (documented, not hidden): every shard binds its own output sockets (the configured
//! output port + 2 x shard index, or ephemeral ports), so viewers of channels on different
//! shards see different relay addresses; a zap to a channel on another shard is done as a leave
//! and a join there (a new SSRC and source address for that viewer, and its RTCP should then go to
//! the new address: the AS re-INVITEs for a cross-shard zap if it wants that). Personalised
//! channels and commands without a channel go to shard 0, so a personalised channel's sources
//! must hash there: run personalised channels on an unsharded relay.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::control::{
    AddViewer, ChannelId, Command, Error, RelayConfig, RelayHandle, RelayStats, ViewerId,
    EVENT_CAPACITY,
};
use crate::relay::Relay;

use super::DriverOptions;

/// The shard (in `0..shards`) a channel lives on: a fixed hash of its id (`DefaultHasher::new`
/// has fixed keys: the same answer in every process of one build), so the AS or a test can
/// predict it.
pub fn shard_of(channel: &ChannelId, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut h = std::hash::DefaultHasher::new();
    channel.as_str().hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// The configuration of shard `i`: its own output ports, the rest shared.
fn shard_config(config: &RelayConfig, i: usize) -> Result<RelayConfig, Error> {
    let step = |p: u16| -> Result<u16, Error> {
        if p == 0 {
            return Ok(0);
        }
        u16::try_from(u32::from(p) + 2 * i as u32)
            .map_err(|_| Error::Invalid("output port + 2 x shards above 65535"))
    };
    Ok(RelayConfig {
        output_rtp_port: step(config.output_rtp_port)?,
        output_rtcp_port: step(config.output_rtcp_port)?,
        ..config.clone()
    })
}

/// Start `options.shards` relays on their own threads and a router on the current runtime.
pub(super) fn spawn(config: RelayConfig, options: DriverOptions) -> Result<RelayHandle, Error> {
    let n = options.shards;
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let mut shards = Vec::with_capacity(n);
    let mut stops = Vec::with_capacity(n);
    for i in 0..n {
        let cfg = shard_config(&config, i)?;
        let opts = DriverOptions {
            shards: 1,
            ..options
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("relay-shard-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(Error::Io(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let handle = match Relay::spawn_with(cfg, opts) {
                        Ok(h) => h,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let (stop_tx, stop_rx) = oneshot::channel::<()>();
                    let _ = tx.send(Ok((handle, stop_tx)));
                    // The shard's driver task runs on this runtime until the router ends
                    // (drops `stop_tx`); dropping the runtime then ends the driver too.
                    let _ = stop_rx.await;
                });
            })?;
        let (handle, stop) = rx.recv().map_err(|_| Error::Stopped)??;
        shards.push(handle);
        stops.push(stop);
    }
    for s in &shards {
        let mut rx = s.events();
        let out = events.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let _ = out.send(ev);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        route(shards, rx).await;
        drop(stops);
    });
    Ok(RelayHandle::with_events(tx, events))
}

/// The router: forwards commands to the shards (see the module docs).
async fn route(shards: Vec<RelayHandle>, mut commands: mpsc::Receiver<Command>) {
    let n = shards.len();
    // Viewer -> (shard, its join request, for a zap across shards).
    let mut viewers: HashMap<ViewerId, (usize, AddViewer)> = HashMap::new();
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::AddViewer(req, reply) => {
                let s = shard_of(&req.channel, n);
                let r = shards[s].add_viewer(req.clone()).await;
                if r.is_ok() {
                    viewers.insert(req.viewer, (s, req));
                }
                let _ = reply.send(r);
            }
            Command::RemoveViewer(viewer, reply) => {
                let r = match viewers.remove(&viewer) {
                    Some((s, _)) => shards[s].remove_viewer(viewer).await,
                    // Dropped by its shard already, or never here: ask shard 0 for the error.
                    None => shards[0].remove_viewer(viewer).await,
                };
                let _ = reply.send(r);
            }
            Command::SwitchChannel(viewer, channel, reply) => {
                let to = shard_of(&channel, n);
                let r = match viewers.get(&viewer).cloned() {
                    None => Err(Error::UnknownViewer(viewer)),
                    Some((s, _)) if s == to => shards[s].switch_channel(viewer, channel).await,
                    Some((s, mut req)) => {
                        // Another shard: leave here, join there (module docs).
                        req.channel = channel;
                        match shards[to].add_viewer(req.clone()).await {
                            Ok(_) => {
                                let _ = shards[s].remove_viewer(viewer).await;
                                viewers.insert(viewer, (to, req));
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                let _ = reply.send(r);
            }
            Command::Stats(reply) => {
                let mut all = RelayStats::default();
                for s in &shards {
                    if let Ok(st) = s.stats().await {
                        merge_stats(&mut all, st);
                    }
                }
                all.channels.sort_by(|a, b| a.channel.cmp(&b.channel));
                all.viewers.sort_by_key(|v| v.viewer);
                // Viewers a shard dropped by itself are forgotten here too.
                viewers.retain(|id, _| all.viewers.binary_search_by_key(id, |v| v.viewer).is_ok());
                let _ = reply.send(all);
            }
            Command::Shutdown(reply) => {
                for s in &shards {
                    let _ = s.shutdown().await;
                }
                let _ = reply.send(());
                break;
            }
            cmd => {
                let s = channel_of(&cmd).map_or(0, |c| shard_of(c, n));
                shards[s].forward(cmd).await;
            }
        }
    }
    for s in &shards {
        let _ = s.shutdown().await;
    }
}

/// The channel a command is about, where it has one.
fn channel_of(cmd: &Command) -> Option<&ChannelId> {
    match cmd {
        Command::CreateIngest(spec, _) => Some(&spec.channel),
        Command::DeleteIngest(c, _)
        | Command::AttachFeed(c, _)
        | Command::StartTestPattern(c, _)
        | Command::Feedback(c, _)
        | Command::SetFeedbackParent(c, _, _)
        | Command::SetFeedbackChild(c, _, _, _)
        | Command::SetChannelPolls(c, _, _) => Some(c),
        Command::Tree(t) => Some(t.channel()),
        _ => None,
    }
}

/// Add `b`'s counters to `a`: lists concatenated, every numeric total summed (through serde,
/// so a counter added to [`crate::control::TotalStats`] later is summed too).
fn merge_stats(a: &mut RelayStats, b: RelayStats) {
    a.channels.extend(b.channels);
    a.viewers.extend(b.viewers);
    let (Ok(serde_json::Value::Object(mut x)), Ok(serde_json::Value::Object(y))) = (
        serde_json::to_value(&a.totals),
        serde_json::to_value(&b.totals),
    ) else {
        return;
    };
    for (k, v) in y {
        if let (Some(serde_json::Value::Number(p)), Some(q)) = (x.get(&k), v.as_u64()) {
            let sum = p.as_u64().unwrap_or(0).saturating_add(q);
            x.insert(k, serde_json::Value::from(sum));
        }
    }
    if let Ok(t) = serde_json::from_value(serde_json::Value::Object(x)) {
        a.totals = t;
    }
}

impl RelayHandle {
    /// Pass a command on unchanged (the router); a stopped shard drops it, and the caller's
    /// reply channel then reports [`Error::Stopped`].
    pub(crate) async fn forward(&self, cmd: Command) {
        let _ = self.command_sender().send(cmd).await;
    }
}
