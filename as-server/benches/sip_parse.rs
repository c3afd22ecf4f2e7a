//! Criterion bench: parse a typical INVITE with SDP (about 900 bytes, shaped like SIPp's
//! built-in `uac` scenario) with the strict codec, and encode it back.
//!
//! Run: `cargo bench -p as-server --bench sip_parse -- --warm-up-time 1 --measurement-time 3`
//!
//! Measured 2026-11-22 on the shared 2-core build VM (load average ~3, so one core was not
//! ours alone): parse 1.37 us (about 730k INVITEs/s), about 21.3k instructions per parse.
//! After the one-pass header lines, name lookup, URI scanner and token-list work (load
//! average ~2): parse 0.95-1.0 us (about 1.0M INVITEs/s), parse + typed Via/CSeq/Call-ID
//! 1.27-1.37 us, encode 0.19 us; 16.6k instructions per parse. The target is 1M/s
//! on an idle core.
//!
//! Instruction counts (stable on a noisy machine) come from `examples/codec_loop.rs` under
//! callgrind; see that file.

use std::hint::black_box;

use as_server::sip::{HeaderName, Message};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "common/invite.rs"]
mod invite;
use invite::INVITE;

fn bench(c: &mut Criterion) {
    let bytes = INVITE.as_bytes();
    let m = Message::parse(bytes).expect("bench INVITE parses");
    assert_eq!(m.body().len(), 416, "Content-Length matches the SDP");
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite_slice", |b| {
        b.iter(|| Message::parse(black_box(bytes)).unwrap())
    });
    let shared = Bytes::from_static(bytes);
    g.bench_function("parse_invite_bytes", |b| {
        b.iter(|| Message::parse_bytes(black_box(&shared)).unwrap())
    });
    g.bench_function("parse_invite_and_read_key_fields", |b| {
        b.iter(|| {
            let m = Message::parse_bytes(black_box(&shared)).unwrap();
            let r = m.as_request().unwrap();
            let via = r.top_via().unwrap();
            let cseq = r.cseq().unwrap();
            black_box((
                via.branch().map(str::len),
                cseq.seq,
                r.call_id().unwrap().len(),
            ));
            black_box(r.headers.get(&HeaderName::TO).map(str::len))
        })
    });
    let mut out = Vec::with_capacity(2048);
    g.bench_function("encode_invite", |b| {
        b.iter(|| {
            out.clear();
            black_box(&m).encode(&mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
