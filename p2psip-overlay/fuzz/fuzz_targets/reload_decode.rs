//! Fuzz target: RELOAD decode -> encode -> decode -> equal (RFC 6940 wire format), for whole
//! messages, typed bodies (the first two input bytes pick the message code), kind values
//! and link framing. The same check runs on stable in `tests/wire_fuzz_replay.rs`.
//!
//! The codec's source (`p2psip-overlay/src/wire`) is compiled into this target directly, so
//! the fuzz build needs only `ring` and `thiserror`, not the node's whole dependency tree.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/wire/mod.rs"]
mod wire;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wire::examples::check_decode_roundtrip(data);
});
