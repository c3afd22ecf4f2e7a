//! Fuzz target: RELOAD decode -> encode -> decode -> equal (RFC 6940 wire format), for whole
//! messages, typed bodies (the first two input bytes pick the message code), kind values
//! and link framing. The same check runs on stable in `tests/wire_fuzz_replay.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip_overlay::wire::examples::check_decode_roundtrip(data);
});
