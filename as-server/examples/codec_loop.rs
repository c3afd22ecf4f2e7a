//! Callgrind driver for the SIP codec: parses the bench INVITE (`benches/sip_parse.rs`) N
//! times, so `valgrind --tool=callgrind` gives a stable instruction count per parse on a
//! noisy machine (wall-clock benches are in `benches/sip_parse.rs`).
//!
//! ```text
//! cargo build --release -p as-server --example codec_loop
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/codec_loop 10000
//! callgrind_annotate /tmp/cg.out | head -40
//! ```
//!
//! Instructions per parse = (total with N) - (total with 0), divided by N.

use std::hint::black_box;

use as_server::sip::Message;
use bytes::Bytes;

#[path = "../benches/common/invite.rs"]
mod invite;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let shared = Bytes::from_static(invite::INVITE.as_bytes());
    let mut total = 0usize;
    for _ in 0..n {
        let m = Message::parse_bytes(black_box(&shared)).expect("bench INVITE parses");
        total += m.headers().len();
    }
    println!("{n} parses, {total} header entries");
}
