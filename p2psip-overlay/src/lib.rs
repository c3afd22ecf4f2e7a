//! RELOAD (RFC 6940) overlay for the IPTV network.
//!
//! Placeholder: the overlay (CHORD-RELOAD topology, TLS links, storage kinds for
//! channel -> relays and SIP-REGISTRATION) arrives with its own issue. Until then the
//! application server keeps its location data in SQL only.
