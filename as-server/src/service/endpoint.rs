//! Adapter between the SIP endpoint ([`crate::driver::sip::SipEndpoint`]) and the service:
//! binds the listeners from the `[sip]` configuration (with the service's `Allow`, `Accept`
//! and `Supported` for the endpoint's own answers), turns each
//! [`IncomingRequest`] into a [`TuRequest`], wraps `send_request` as the service's
//! [`SipClient`], and hands over the endpoint's [`EndpointEvent`]s (a 2xx never ACKed).

use tokio::sync::mpsc;

use crate::config::Config;
use crate::driver::sip::{EndpointConfig, EndpointEvent, IncomingRequest, SipEndpoint};
use crate::sip::transaction::{TimerConfig, Transport};

use super::app::StartError;
use super::{channel_list, rules, SipClient, TuRequest};

/// What [`Endpoint::start`] returns.
#[derive(Debug)]
pub struct Started {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Requests for the service.
    pub requests: mpsc::Receiver<IncomingRequest>,
    /// Events for the service.
    pub events: mpsc::UnboundedReceiver<EndpointEvent>,
    /// How the service sends its own requests.
    pub client: SipClient,
}

/// The running endpoint.
#[derive(Debug)]
pub struct Endpoint {
    ep: SipEndpoint,
}

impl Endpoint {
    /// Binds the listeners with transaction timers `timers`; returns the endpoint, its
    /// request queue, its event stream and the client the service sends NOTIFY/BYE with.
    pub async fn start(cfg: &Config, timers: TimerConfig) -> Result<Started, StartError> {
        let mut ec = EndpointConfig::from_sip_config(&cfg.sip);
        ec.timers = timers;
        ec.allow = rules::allow_value();
        ec.accept = format!("{}, {}", rules::ACCEPT, channel_list::CONTENT_TYPE);
        ec.supported = rules::SUPPORTED.join(", ");
        ec.server = super::sipmsg::AGENT.to_owned();
        let (ep, rx) = SipEndpoint::bind(ec)
            .await
            .map_err(|e| StartError::Sip(e.to_string()))?;
        let events = ep.events();
        let sender = ep.clone();
        let acker = ep.clone();
        let client = SipClient::new(move |req, dest, transport| {
            let ep = sender.clone();
            Box::pin(async move {
                ep.send_request(req, dest, transport)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .with_stateless(move |req, dest, transport| {
            if let Err(e) = acker.send_stateless(crate::sip::Message::Request(req), dest, transport)
            {
                tracing::debug!(error = %e, "stateless send failed");
            }
        });
        Ok(Started {
            endpoint: Self { ep },
            requests: rx,
            events,
            client,
        })
    }

    /// The bound listeners.
    pub fn local_addrs(&self) -> Vec<(Transport, std::net::SocketAddr)> {
        let l = self.ep.local_addrs();
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .filter_map(|t| l.get(t).map(|a| (t, a)))
            .collect()
    }

    /// Stops the endpoint (its loop ends when the last handle is gone; the service's
    /// client holds one until the service is dropped).
    pub async fn shutdown(self) {
        drop(self.ep);
    }
}

/// The service's view of an endpoint request.
pub fn to_tu(inc: IncomingRequest) -> TuRequest {
    let (request, source, transport, responder) = inc.into_parts();
    TuRequest::new(request, source, transport, move |r| responder.respond(r))
}
