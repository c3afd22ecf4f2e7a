//! Stable stand-in for the `sip_parse` fuzz target (`as-server/fuzz/`, nightly cargo-fuzz):
//! replays the seed corpus and a few thousand deterministic mutations of it through the same
//! check: parsing never panics; a message that parses encodes to bytes that re-parse to an
//! equal message, and that encoding is stable; stream framing never panics or over-reads.
//! Bounded: fixed seeds, fixed iteration count, xorshift PRNG (no new dependencies).

use as_server::sip::{frame_len, Message, StreamFramer};

const SEEDS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");

/// Inline seeds so the test does not depend only on the files.
const INLINE_SEEDS: &[&[u8]] = &[
    b"INVITE sip:news@tv.example.org SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::10]:5070;branch=z9hG4bKa;rport\r\nMax-Forwards: 70\r\nFrom: \"A \\\"b\\\"\" <sip:a@b.example.com>;tag=1\r\nTo: <sip:news@tv.example.org>\r\nCall-ID: c@h\r\nCSeq: 1 INVITE\r\nContact: <sip:a@[2001:db8::10]:5070>;q=0.5, sip:b@c;x\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP h;branch=z9hG4bKb,SIP/2.0/UDP g\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\ni: x\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\nFrom: x<sip:a@b>;tag=1\r\nTo: sip:a@b\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp,\r\n  text/plain\r\nX-Q: \"q,\\\"\" ,\r\n\r\n",
    b"\r\n\r\nREGISTER sips:r.example.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKr;received=192.0.2.9\r\nFrom: <sips:u@r.example.com>;tag=9\r\nTo: <sips:u@r.example.com>\r\nCall-ID: r\r\nCSeq: 9 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
];

/// Octets that make mutations interesting for this grammar.
const SPICE: &[u8] = b":;,\"<>\r\n \t%@[]\\/=?&*\x00\xff\xc3";

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
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = SPICE[rng.below(SPICE.len())];
            }
            1 => {
                let i = rng.below(len + 1);
                v.insert(i, SPICE[rng.below(SPICE.len())]);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(16.min(len - i));
                v.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(32.min(len - i));
                let chunk = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            4 if len > 0 => {
                v.truncate(rng.below(len));
            }
            5 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            _ => {
                // swap two lines' worth of bytes: reorder headers
                if len > 2 {
                    let a = rng.below(len);
                    let b = rng.below(len);
                    v.swap(a, b);
                }
            }
        }
    }
    v
}

/// The property the fuzz target checks; returns whether the input parsed.
fn check(data: &[u8]) -> bool {
    let parsed = Message::parse(data);
    if let Ok(m) = &parsed {
        let enc = m.to_bytes();
        let again = Message::parse(&enc).unwrap_or_else(|e| {
            panic!(
                "encoding of a parsed message does not re-parse: {e}\ninput: {:?}\nencoding: {:?}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(&enc)
            )
        });
        assert_eq!(
            &again,
            m,
            "round trip of {:?}",
            String::from_utf8_lossy(data)
        );
        assert_eq!(again.to_bytes(), enc, "stable encoding");
    } else if let Err(e) = &parsed {
        // building the error answer never panics either
        let _ = e.reason_phrase();
        if let Some(r) = e.error_response() {
            let _ = r.to_bytes();
        }
    }
    if let Ok(Some(n)) = frame_len(data) {
        assert!(n <= data.len());
    }
    let mut f = StreamFramer::new();
    for chunk in data.chunks(97) {
        f.push(chunk);
    }
    for _ in 0..64 {
        match f.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    parsed.is_ok()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = INLINE_SEEDS.iter().map(|b| b.to_vec()).collect();
    if let Ok(dir) = std::fs::read_dir(SEEDS_DIR) {
        let mut files: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
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
    assert!(seeds.len() >= INLINE_SEEDS.len() + 5, "seed files present");
    let ok = seeds.iter().filter(|s| check(s)).count();
    assert!(ok >= 8, "most seeds are valid messages ({ok})");
}

#[test]
fn deterministic_mutations_round_trip() {
    let seeds = seeds();
    let seed = std::env::var("FUZZ_REPLAY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15_u64);
    let mut rng = XorShift(seed | 1);
    let mut parsed = 0;
    // FUZZ_REPLAY_ROUNDS raises the count for a longer local run; the default stays bounded.
    let rounds: usize = std::env::var("FUZZ_REPLAY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    for i in 0..rounds {
        let base = &seeds[i % seeds.len()];
        let m = mutate(&mut rng, base);
        // occasionally mutate a mutant again
        let m = if i % 5 == 0 { mutate(&mut rng, &m) } else { m };
        if check(&m) {
            parsed += 1;
        }
    }
    // the mutations must exercise both outcomes
    eprintln!("{parsed} of {rounds} mutants parsed");
    assert!(parsed > rounds / 20, "some mutants parse ({parsed})");
    assert!(parsed < rounds, "some mutants are refused");
}
