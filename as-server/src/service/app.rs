//! Boots a whole AS in the current tokio runtime: store (with migrations), the in-process
//! relays (`[relay] count`, a [`RelayPool`]), SIP endpoint, channel service, operator HTTP
//! API, housekeeping timer, and the relay health monitor that fails over the viewers of a
//! relay that dies (`Service::run_relay_monitor`). `main` and the end-to-end tests both use
//! [`App::start`], so the tests run exactly what the binary runs; [`App::stop_relay`] stops
//! one relay abruptly, as a crash would, for the lab and the failover tests.
//!
//! Start-up reconciles the catalogue with the fresh relays: personal channels left over from
//! a previous run are removed (their dialogs died with it), every other channel gets a new
//! ingest, the configured seeds are created (test-pattern ones fed by every relay), and then
//! the personalised channels are re-created on the relays from their stored definitions
//! (`Service::restore_personalized`: slots of sources gone are dropped, a channel left
//! without any is removed).

use std::net::SocketAddr;
use std::time::Duration;

use media_relay::RelayHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{ChannelSeed, Config};
use crate::sip::transaction::{TimerConfig, Transport};
use crate::store::{ChannelKind, Store};

use super::catalogue::Catalogue;
use super::relays::RelayPool;
use super::{Service, ServiceConfig};

/// Why the AS could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    /// The relay could not start (sockets).
    #[error("relay: {0}")]
    Relay(#[from] media_relay::Error),
    /// A listener could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The SIP endpoint could not start.
    #[error("SIP endpoint: {0}")]
    Sip(String),
    /// A seeded channel could not be created.
    #[error("seed channel {id}: {source}")]
    Seed {
        /// Channel id.
        id: String,
        /// Cause.
        source: crate::error::Error,
    },
    /// The AAA client (`[aaa]`) could not start.
    #[error("AAA client: {0}")]
    Aaa(#[from] super::aaa::AaaStartError),
    /// The overlay peer (`[overlay]`) could not start or join.
    #[error("overlay: {0}")]
    Overlay(#[from] super::overlay::OverlayStartError),
}

/// A running AS.
#[derive(Debug)]
pub struct App {
    /// The channel service.
    pub service: Service,
    /// The first in-process relay (`relay-0`); all of them: [`App::relays`].
    pub relay: RelayHandle,
    /// Bound SIP listeners.
    pub sip: Vec<(Transport, SocketAddr)>,
    /// Bound HTTP API address.
    pub http: Option<SocketAddr>,
    /// Each relay's HTTP control API address (`[relay] control_listen`), by index.
    pub relay_controls: Vec<Option<SocketAddr>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    endpoint: super::endpoint::Endpoint,
}

impl App {
    /// Starts everything `cfg` describes.
    pub async fn start(cfg: &Config) -> Result<App, StartError> {
        Self::start_with_timers(cfg, TimerConfig::default()).await
    }

    /// [`App::start`] with other SIP transaction timers (tests use a short T1 so that
    /// 64*T1 timeouts, e.g. a 2xx never ACKed, come in a second).
    pub async fn start_with_timers(cfg: &Config, timers: TimerConfig) -> Result<App, StartError> {
        let store = Store::connect(&cfg.database.url).await?;
        let relays = RelayPool::spawn(&cfg.relay).await?;
        let relay = relays.handle(0).clone();
        // Subscribed before any viewer exists, so no drop goes unseen.
        let relay_events: Vec<_> = relays.handles().iter().map(RelayHandle::events).collect();
        let (shutdown, shutdown_rx) = watch::channel(false);

        let super::endpoint::Started {
            endpoint,
            requests: incoming,
            events: mut endpoint_events,
            client,
        } = super::endpoint::Endpoint::start(cfg, timers).await?;
        let sip = endpoint.local_addrs();
        let contact_ip = cfg.sip.contact_host.clone().unwrap_or_else(|| {
            sip.first()
                .map(|(_, a)| a.ip().to_string())
                .unwrap_or_else(|| cfg.sip.domain.clone())
        });
        let contact_port = sip
            .iter()
            .find(|(t, _)| *t == Transport::Udp)
            .or(sip.first())
            .map_or(5060, |(_, a)| a.port());
        let contact_hostport = if contact_ip.contains(':') && !contact_ip.starts_with('[') {
            format!("[{contact_ip}]:{contact_port}")
        } else {
            format!("{contact_ip}:{contact_port}")
        };

        let service = Service::with_relays(
            ServiceConfig {
                domain: cfg.sip.domain.clone(),
                contact_hostport,
                limits: cfg.limits.clone(),
                subscriptions: cfg.subscriptions,
                registrar: cfg.registrar,
                dropped_viewer_grace: Duration::from_millis(cfg.relay.dropped_viewer_grace_ms),
            },
            Catalogue::new(store.clone(), "in-process"),
            relays,
            client,
        );
        service.set_categories(cfg.categories.clone());
        reconcile(&service, &store, &cfg.channels).await?;
        service.enable_aaa(&cfg.aaa, store.clone()).await?;

        let mut tasks = Vec::new();
        // Relay control APIs (for other ASes' relays), then the overlay peer.
        let (relay_controls, control_tasks) = super::overlay::serve_relay_controls(
            cfg.relay.control_listen,
            service.relays().handles(),
            &shutdown_rx,
        )
        .await
        .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        tasks.extend(control_tasks);
        service
            .enable_overlay(&cfg.overlay, relay_controls.clone())
            .await?;
        // The TU loop: one task per request.
        {
            let svc = service.clone();
            let mut rx = shutdown_rx.clone();
            let mut incoming = incoming;
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        req = incoming.recv() => match req {
                            Some(req) => {
                                let svc = svc.clone();
                                let req = super::endpoint::to_tu(req);
                                tokio::spawn(async move { svc.handle(req).await });
                            }
                            None => break,
                        },
                        _ = rx.changed() => break,
                    }
                }
            }));
        }
        // Relay events: a viewer the relay dropped (vanished, RTCP BYE) ends its session.
        for events in relay_events {
            let svc = service.clone();
            let mut rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = svc.run_relay_events(events) => {}
                    _ = rx.changed() => {}
                }
            }));
        }
        // Relay health: a relay that stops answering is declared dead and its sessions
        // move to the others.
        {
            let svc = service.clone();
            let mut rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = svc.run_relay_monitor() => {}
                    _ = rx.changed() => {}
                }
            }));
        }
        // Endpoint events: a 2xx never ACKed ends its session (RFC 3261 13.3.1.4).
        {
            let svc = service.clone();
            let mut rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        ev = endpoint_events.recv() => match ev {
                            Some(ev) => svc.on_endpoint_event(ev).await,
                            None => break,
                        },
                        _ = rx.changed() => break,
                    }
                }
            }));
        }
        // Housekeeping: registrations and subscriptions expire; sessions whose viewer the
        // relay dropped end after their grace (ticks at least twice per grace, at most every
        // second).
        {
            let svc = service.clone();
            let mut rx = shutdown_rx.clone();
            let period = (Duration::from_millis(cfg.relay.dropped_viewer_grace_ms) / 2)
                .clamp(Duration::from_millis(20), Duration::from_secs(1));
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        _ = every.tick() => svc.tick().await,
                        _ = rx.changed() => break,
                    }
                }
            }));
        }
        // Operator API.
        let mut http = None;
        if let Some(addr) = cfg.http.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            http = Some(bound);
            let router = crate::api::router(service.clone());
            tasks.push(crate::api::serve_until(
                listener,
                router,
                shutdown_rx.clone(),
                "operator API",
            ));
        }
        info!("AS started");
        Ok(App {
            service,
            relay,
            sip,
            http,
            relay_controls,
            shutdown,
            tasks,
            endpoint,
        })
    }

    /// Every relay's handle, by index (`relay-<index>`).
    pub fn relays(&self) -> &[RelayHandle] {
        self.service.relays().handles()
    }

    /// Stops relay `index` abruptly, like a crashed relay process: no RTCP BYE, no SIP BYE.
    /// The health monitor declares it dead on its next probe and moves its viewers to the
    /// other relays (re-INVITE). `false` if there is no such relay or it had stopped.
    pub async fn stop_relay(&self, index: usize) -> bool {
        self.service.relays().stop(index).await
    }

    /// The bound address of a SIP transport.
    pub fn sip_addr(&self, t: Transport) -> Option<SocketAddr> {
        self.sip.iter().find(|(x, _)| *x == t).map(|(_, a)| *a)
    }

    /// Clean shutdown: BYE/NOTIFY to peers, listeners closed, relay stopped.
    pub async fn shutdown(self) {
        self.service.shutdown(Duration::from_secs(2)).await;
        self.service.stop_aaa().await;
        self.service.stop_overlay().await;
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        self.endpoint.shutdown().await;
        for r in self.service.relays().handles() {
            let _ = r.shutdown().await;
        }
        info!("AS stopped");
    }
}

/// Brings the catalogue and the fresh relay in line (module docs).
async fn reconcile(
    service: &Service,
    store: &Store,
    seeds: &[ChannelSeed],
) -> Result<(), StartError> {
    for ch in store.list_channels().await? {
        if seeds.iter().any(|s| s.id == ch.id) {
            continue;
        }
        if ch.kind == ChannelKind::Personalized {
            // Re-created below, once their sources are back.
            continue;
        }
        if ch.kind == ChannelKind::Personal {
            let _ = store.delete_channel(&ch.id).await;
            info!(channel = %ch.id, "stale personal channel removed");
            continue;
        }
        let seed = ChannelSeed {
            id: ch.id.clone(),
            name: ch.name.clone(),
            test_pattern: false,
        };
        match service.ensure_channel(&seed).await {
            Ok(i) => info!(channel = %ch.id, ingest = %i.rtp_addr, "channel restored"),
            Err(e) => warn!(channel = %ch.id, error = %e, "channel not restored"),
        }
    }
    for seed in seeds {
        let ingest = service
            .ensure_channel(seed)
            .await
            .map_err(|source| StartError::Seed {
                id: seed.id.clone(),
                source,
            })?;
        info!(channel = %seed.id, ingest = %ingest.rtp_addr, test_pattern = seed.test_pattern, "channel ready");
    }
    service.restore_personalized().await;
    Ok(())
}
