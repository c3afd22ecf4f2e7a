//! Fuzz target: SIP message parse -> encode -> re-parse -> equal; stream framing never
//! panics and never reads past its input. The same check runs on stable in
//! `as-server/tests/fuzz_replay.rs`.
#![no_main]

use as_server::sip::{frame_len, Message, StreamFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let enc = m.to_bytes();
        let again = Message::parse(&enc).expect("canonical encoding re-parses");
        assert_eq!(again, m, "round trip");
        assert_eq!(again.to_bytes(), enc, "encoding is stable");
    }
    if let Ok(Some(n)) = frame_len(data) {
        assert!(n <= data.len());
    }
    let mut f = StreamFramer::new();
    f.push(data);
    for _ in 0..64 {
        match f.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
