//! Stable stand-in for the `diameter_decode` fuzz target (`as-server/fuzz/`, nightly
//! cargo-fuzz): replays the seed corpus (every typed message the crate builds, plus the
//! inputs libFuzzer kept in `as-server/fuzz/seeds-diameter/`) and deterministic mutations of
//! it through the same check: decoding never panics; a message that decodes encodes to bytes
//! that decode to an equal message, and that encoding is stable; framing, the borrowed
//! iterator, the typed parsers, error answers and the profile reader never panic.
//! Bounded: fixed seeds, fixed iteration count, xorshift PRNG.
//!
//! `DIAMETER_WRITE_SEEDS=dir` writes the typed messages as seed files (how the fuzz seeds
//! were made).

use as_server::diameter::base::{Cea, Cer, Dpa, Dpr, Dwa, Dwr};
use as_server::diameter::rf::{Aca, Acr};
use as_server::diameter::sh::{IptvProfile, Pna, Pnr, Uda, Udr};
use as_server::diameter::{frame_len, AvpIter, Message, MessageRef, DEFAULT_MAX_MESSAGE_SIZE};

mod diameter_common;

const SEEDS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds-diameter");

/// Octets that make mutations interesting for this format: flag bytes, small lengths, the
/// 3GPP vendor id's bytes.
const SPICE: &[u8] = &[
    0x00, 0x01, 0x04, 0x07, 0x08, 0x0c, 0x40, 0x80, 0xc0, 0x20, 0xff, 0x28, 0xaf,
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = SPICE[rng.below(SPICE.len())];
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            2 if len > 4 => {
                // insert or delete a 4-byte word (keeps alignment)
                let i = rng.below(len / 4) * 4;
                if rng.below(2) == 0 {
                    v.splice(i..i, [0, 0, 0, SPICE[rng.below(SPICE.len())]]);
                } else {
                    v.drain(i..(i + 4).min(len));
                }
            }
            3 if len > 8 => {
                // duplicate a chunk (an AVP, often)
                let i = rng.below(len / 4) * 4;
                let n = (4 * (1 + rng.below(8))).min(len - i);
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(v.len() / 4 + 1) * 4;
                v.splice(at..at, chunk);
            }
            4 if len > 0 => v.truncate(rng.below(len)),
            5 if len > 7 => {
                // nudge a 24-bit length field at an aligned offset + 1 (message or AVP)
                let i = rng.below(len / 4) * 4 + 1;
                if i + 3 <= len {
                    let delta = [1u8, 3, 4, 8, 0x80][rng.below(5)];
                    v[i + 2] = v[i + 2].wrapping_add(delta);
                }
            }
            _ => {}
        }
    }
    // Usually keep the message length consistent so the mutation reaches the AVPs.
    if rng.below(4) != 0 && v.len() >= 4 && v.len() < 0x0100_0000 {
        let l = (v.len() as u32).to_be_bytes();
        v[1..4].copy_from_slice(&l[1..]);
    }
    v
}

/// The property the fuzz target checks; returns whether the input decoded.
fn check(data: &[u8]) -> bool {
    if let Ok(Some(n)) = frame_len(data, DEFAULT_MAX_MESSAGE_SIZE) {
        assert!(n <= data.len());
    }
    if let Ok(r) = MessageRef::parse(data) {
        for a in r.avps() {
            match a {
                Ok(a) => for _ in a.members().take_while(Result::is_ok) {},
                Err(_) => break,
            }
        }
    }
    for _ in AvpIter::new(data).take_while(Result::is_ok) {}
    let _ = IptvProfile::from_user_data(data);
    match Message::decode(data) {
        Ok(m) => {
            let enc = m.to_vec().expect("a decoded message encodes");
            let again = Message::decode(&enc)
                .unwrap_or_else(|e| panic!("encoding does not re-decode: {e}\ninput {data:02x?}"));
            assert_eq!(again, m, "round trip of {data:02x?}");
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
            true
        }
        Err(e) => {
            let _ = e.result_code();
            if let Some(ans) = e.error_answer("aaa.example.org", "example.org") {
                let b = ans.to_vec().expect("an error answer encodes");
                Message::decode(&b).unwrap_or_else(|e2| {
                    panic!("error answer does not decode: {e2}\nfor {e}\ninput {data:02x?}")
                });
            }
            false
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = diameter_common::messages()
        .iter()
        .map(|m| m.to_vec().unwrap())
        .collect();
    if let Some(dir) = std::env::var_os("DIAMETER_WRITE_SEEDS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, b) in s.iter().enumerate() {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("typed{i:02}.bin")),
                b,
            )
            .unwrap();
        }
    }
    if let Ok(dir) = std::fs::read_dir(SEEDS_DIR) {
        let mut files: Vec<_> = dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            s.push(std::fs::read(f).unwrap());
        }
    }
    s
}

#[test]
fn seeds_round_trip() {
    let seeds = seeds();
    let typed = diameter_common::messages().len();
    assert!(seeds.len() >= typed);
    for s in &seeds[..typed] {
        assert!(check(s), "every typed message decodes");
    }
    let ok = seeds.iter().filter(|s| check(s)).count();
    eprintln!("{ok} of {} seeds decode", seeds.len());
}

#[test]
fn deterministic_mutations_round_trip() {
    let seeds = seeds();
    let seed = std::env::var("FUZZ_REPLAY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x2545_F491_4F6C_DD1D_u64);
    let mut rng = XorShift(seed | 1);
    let rounds: usize = std::env::var("FUZZ_REPLAY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let typed = diameter_common::messages().len();
    let mut decoded = 0;
    for i in 0..rounds {
        // Half the rounds start from a valid typed message, half from the fuzz corpus.
        let base = if i % 2 == 0 {
            &seeds[(i / 2) % typed]
        } else {
            &seeds[i % seeds.len()]
        };
        let m = mutate(&mut rng, base);
        let m = if i % 3 == 0 { mutate(&mut rng, &m) } else { m };
        if check(&m) {
            decoded += 1;
        }
    }
    eprintln!("{decoded} of {rounds} mutants decoded");
    assert!(decoded > rounds / 20, "some mutants decode ({decoded})");
    assert!(decoded < rounds, "some mutants are refused");
}
