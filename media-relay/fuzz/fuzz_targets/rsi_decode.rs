//! Fuzz target: RSI (RFC 5760 section 7.1) decode -> encode -> decode -> equal, plus
//! sub-report decoding from every block boundary. The same property runs on stable in
//! `media-relay/tests/rsi.rs` (`fuzz_property_replay`).
//!
//! Run: `cd media-relay/fuzz && mkdir -p corpus/rsi_decode && cp seeds/* corpus/rsi_decode/ &&
//! cargo +nightly fuzz run rsi_decode corpus/rsi_decode`.
//! The codec's source (`media-relay/src/rsi.rs`) is compiled in directly, so the fuzz build
//! needs only `rtcp-types` and `thiserror`, not the relay's dependency tree.
#![no_main]

/// Stand-in for the relay's `rtcp` module: the one type `rsi.rs` takes from it.
mod rtcp {
    /// RTCP packet type.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct RtcpType(pub u8);
}

#[allow(dead_code, unused_imports)]
#[path = "../../src/rsi.rs"]
mod rsi;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rsi::fuzz_roundtrip(data);
});
