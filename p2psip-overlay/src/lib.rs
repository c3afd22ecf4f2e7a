//! RELOAD (RFC 6940) overlay for the IPTV network.
//!
//! Every AS instance and every relay is a peer of one RELOAD overlay (CHORD-RELOAD) that
//! holds who is where: channel -> relays, address-of-record -> contact (SIP-REGISTRATION,
//! RFC 7904) and the channel directory.
//!
//! Layout:
//! - [`wire`]: the RELOAD wire format (forwarding header, message contents, security block,
//!   typed bodies, stored data, link framing). Sans-IO, strict, fuzzed (`fuzz/`).

pub mod wire;
