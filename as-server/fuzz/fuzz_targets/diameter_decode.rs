//! Fuzz target: Diameter decode -> encode -> decode -> equal, and the encoding is stable;
//! framing, the borrowed AVP iterator, the M-bit check, every typed parser, error answers and
//! the IPTV profile XML reader never panic. The same check runs on stable in
//! `as-server/tests/diameter_fuzz_replay.rs`.
#![no_main]

use as_server::diameter::base::{Cea, Cer, Dpa, Dpr, Dwa, Dwr};
use as_server::diameter::rf::{Aca, Acr};
use as_server::diameter::sh::{IptvProfile, Pna, Pnr, Uda, Udr};
use as_server::diameter::{frame_len, Message, MessageRef, DEFAULT_MAX_MESSAGE_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = frame_len(data, DEFAULT_MAX_MESSAGE_SIZE) {
        assert!(n <= data.len());
    }
    if let Ok(r) = MessageRef::parse(data) {
        for a in r.avps() {
            match a {
                Ok(a) => {
                    for m in a.members() {
                        if m.is_err() {
                            break;
                        }
                    }
                }
                Err(_) => break,
            }
        }
    }
    match Message::decode(data) {
        Ok(m) => {
            let enc = m.to_vec().expect("a decoded message encodes");
            let again = Message::decode(&enc).expect("the encoding re-decodes");
            assert_eq!(again, m, "round trip");
            assert_eq!(again.to_vec().unwrap(), enc, "stable encoding");
            let _ = m.check_avps();
            let _ = Cer::from_message(&m);
            let _ = Cea::from_message(&m);
            let _ = Dwr::from_message(&m);
            let _ = Dwa::from_message(&m);
            let _ = Dpr::from_message(&m);
            let _ = Dpa::from_message(&m);
            let _ = Udr::from_message(&m);
            let _ = Uda::from_message(&m);
            let _ = Pnr::from_message(&m);
            let _ = Pna::from_message(&m);
            let _ = Acr::from_message(&m);
            let _ = Aca::from_message(&m);
        }
        Err(e) => {
            let _ = e.result_code();
            if let Some(ans) = e.error_answer("aaa.example.org", "example.org") {
                let b = ans.to_vec().expect("an error answer encodes");
                Message::decode(&b).expect("an error answer decodes");
            }
        }
    }
    let _ = IptvProfile::from_user_data(data);
});
