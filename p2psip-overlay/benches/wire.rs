//! RELOAD codec speed: encode and decode of a signed-shape Store, Fetch answer and CHORD
//! Update (full) message, plus a forwarding hop (decode the header, rewrite TTL and via
//! list, re-encode around the untouched payload). Throughput is in messages per second.
//!
//! Figures (2026-11-22, shared 2-core VM at load ~7, `--warm-up-time 1 --measurement-time 3`,
//! median): StoreReq 564 B: encode 5.3 M/s, decode 2.1 M/s, decode + typed body 0.99 M/s,
//! forwarding hop 4.0 M/s. FetchAns 871 B: 5.9 / 2.1 / 0.91 / 3.0 M/s. CHORD Update (full)
//! 304 B: 4.7 / 1.9 / 1.5 / 4.0 M/s. A first run under heavier load measured about half.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use p2psip_overlay::wire::examples::messages;
use p2psip_overlay::wire::{Body, ForwardingHeader, Message, MessageCode, NodeId};

fn pick(code: MessageCode, pred: impl Fn(&Body) -> bool) -> Message {
    messages()
        .into_iter()
        .find(|m| m.contents.code == code && m.body().is_ok_and(|b| pred(&b)))
        .expect("sample present")
}

fn bench(c: &mut Criterion) {
    let cases = [
        (
            "store_req",
            pick(
                MessageCode::STORE_REQ,
                |b| matches!(b, Body::StoreReq(s) if s.kind_data.len() == 1),
            ),
        ),
        ("fetch_ans", pick(MessageCode::FETCH_ANS, |_| true)),
        (
            "update_full",
            pick(
                MessageCode::UPDATE_REQ,
                |b| matches!(b, Body::UpdateReq(u) if matches!(u.kind, p2psip_overlay::wire::ChordUpdateKind::Full { .. })),
            ),
        ),
    ];
    let mut g = c.benchmark_group("reload_wire");
    g.throughput(Throughput::Elements(1));
    for (name, m) in &cases {
        let bytes = m.to_bytes().unwrap();
        let mut out = Vec::with_capacity(bytes.len());
        g.bench_function(format!("{name}_encode_{}B", bytes.len()), |b| {
            b.iter(|| {
                out.clear();
                black_box(m).encode(&mut out).unwrap();
                black_box(out.len())
            })
        });
        g.bench_function(format!("{name}_decode"), |b| {
            b.iter(|| Message::decode(black_box(&bytes)).unwrap())
        });
        g.bench_function(format!("{name}_decode_typed_body"), |b| {
            b.iter(|| {
                let m = Message::decode(black_box(&bytes)).unwrap();
                m.body().unwrap()
            })
        });
        g.bench_function(format!("{name}_forward_hop"), |b| {
            let mut out = Vec::with_capacity(bytes.len() + 32);
            b.iter(|| {
                let (mut h, at) = ForwardingHeader::decode_prefix(black_box(&bytes)).unwrap();
                h.ttl -= 1;
                h.via_list
                    .push(p2psip_overlay::wire::Destination::Node(NodeId::from_u128(
                        7,
                    )));
                out.clear();
                h.encode_with_payload(&bytes[at..], &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
