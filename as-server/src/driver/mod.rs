//! Drivers: the only code that does IO (tokio sockets, TLS, timers) and reads the clock.
//!
//! Layout:
//! - [`sip`]: [`sip::SipEndpoint`], the SIP endpoint. One task owns the sans-IO
//!   [`TransactionLayer`](crate::sip::transaction::TransactionLayer) and runs the loop
//!   "wait for a datagram / a framed stream message / a TU command / the next timer ->
//!   feed the layer -> write its transmits -> hand its events to the TU".
//! - [`transport`]: socket tasks. UDP receive loops; TCP and TLS accept loops and one task
//!   per connection that frames the stream with [`StreamFramer`](crate::sip::StreamFramer)
//!   and writes what the endpoint queues for that peer. Unparsable requests are answered with
//!   a stateless 400 right there (or dropped with a log line when they cannot be answered).
//! - [`tls`]: rustls (ring) server and client configurations; a self-signed development
//!   certificate made with rcgen when none is configured.
//!
//! [`now`] is the one function that reads the clock; everything below it takes `now`.

pub mod sip;
pub mod tls;
pub mod transport;

use std::time::Instant;

/// The current time, fed to the sans-IO cores. The one place the SIP driver reads the clock.
///
/// It reads tokio's clock (the system's monotonic clock, unless a test paused tokio time), so
/// the deadlines the layer computes and the `sleep_until` that waits for them share one clock
/// and driver tests can run a 32 s timer in paused time.
#[expect(clippy::disallowed_methods)]
#[must_use]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
