//! Stable stand-in for the `reload_decode` fuzz target (`p2psip-overlay/fuzz/`, nightly
//! cargo-fuzz): replays the seeds (`fuzz/seeds/`, plus the inputs libFuzzer found and we kept)
//! and deterministic xorshift mutations of them through the same property
//! (`wire::examples::check_decode_roundtrip`). Bounded: fixed seed, fixed round count
//! (`FUZZ_REPLAY_ROUNDS`, `FUZZ_REPLAY_SEED` for longer runs).

use p2psip_overlay::wire::examples::{check_decode_roundtrip, fuzz_seeds};

const SEEDS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");

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

/// Octets that matter in this format: length bytes, Booleans, type codes, the token.
const SPICE: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x7f, 0x80, 0x81, 0xc0, 0xd2, 0xff,
];

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = SPICE[rng.below(SPICE.len())];
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, SPICE[rng.below(SPICE.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(8.min(len - i));
                v.drain(i..i + n);
            }
            4 if len > 4 => {
                let i = rng.below(len - 3);
                v[i..i + 4].fill(0xff);
            }
            _ if len > 0 => v.truncate(rng.below(len)),
            _ => {}
        }
    }
    // Keep the header's length field honest half the time, so mutations reach the inside.
    if v.len() >= 20 && rng.below(2) == 0 && v[..4] == [0xd2, 0x45, 0x4c, 0x4f] {
        let n = v.len() as u32;
        v[16..20].copy_from_slice(&n.to_be_bytes());
    }
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = fuzz_seeds().into_iter().map(|(_, b)| b).collect();
    if let Ok(dir) = std::fs::read_dir(SEEDS_DIR) {
        let mut files: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            v.push(std::fs::read(f).unwrap());
        }
    }
    v
}

#[test]
fn seeds_and_mutations_keep_the_property() {
    let seeds = seeds();
    assert!(seeds.len() > 200, "seeds: {}", seeds.len());
    for s in &seeds {
        check_decode_roundtrip(s);
    }
    let rounds: usize = std::env::var("FUZZ_REPLAY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("FUZZ_REPLAY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    let mut rng = XorShift(seed | 1);
    for _ in 0..rounds {
        let s = &seeds[rng.below(seeds.len())];
        check_decode_roundtrip(&mutate(&mut rng, s));
    }
}

/// `RELOAD_WRITE_SEEDS=1 cargo test -p p2psip-overlay --test wire_fuzz_replay` rewrites
/// `fuzz/seeds/` from `wire::examples`.
#[test]
fn write_seeds_when_asked() {
    if std::env::var_os("RELOAD_WRITE_SEEDS").is_none() {
        return;
    }
    std::fs::create_dir_all(SEEDS_DIR).unwrap();
    for (name, bytes) in fuzz_seeds() {
        std::fs::write(format!("{SEEDS_DIR}/{name}.bin"), bytes).unwrap();
    }
}
