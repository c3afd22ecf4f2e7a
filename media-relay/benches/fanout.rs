//! Fan-out cost of the sans-IO core: one ingested 1200-byte RTP packet forwarded to 1, 10, 100
//! and 1000 viewers (GOP cache upkeep, the body copied once, one 12-byte header per viewer),
//! drained two ways: `poll_transmit` (header and body joined per datagram, the one-at-a-time
//! path) and `in_place` (`transmits` read in place then `consume_transmits`, what the batched
//! driver does: no copy per viewer). Throughput is reported in output packets per second.
//!
//! Run: `cargo bench -p media-relay --bench fanout`

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use media_relay::control::{AddViewer, ChannelId, ChannelSpec, RelayConfig, ViewerId};
use media_relay::relay::Relay;
use media_relay::rtp::{self, HeaderRewrite};

#[expect(clippy::disallowed_methods, reason = "a bench needs one base instant")]
fn t0() -> Instant {
    Instant::now()
}

fn packet(seq: u16, key: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(1212);
    rtp::write_header(
        &mut v,
        true,
        &HeaderRewrite {
            ssrc: 0x1234,
            sequence: seq,
            timestamp: u32::from(seq) * 3000,
            payload_type: 96,
        },
    );
    v.push(if key { 0x65 } else { 0x41 });
    v.resize(1212, 0xab);
    v
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for viewers in [1u64, 10, 100, 1000] {
        let now = t0();
        let mut relay = Relay::new(RelayConfig::default(), 1);
        let ch = ChannelId::from("bench");
        relay.create_channel(ChannelSpec::new("bench")).unwrap();
        relay.ingest(now, &ch, &packet(0, true)).unwrap();
        for v in 0..viewers {
            relay
                .add_viewer(
                    now,
                    &AddViewer {
                        viewer: ViewerId(v),
                        channel: ch.clone(),
                        rtp_dest: SocketAddr::from(([127, 0, 0, 1], 10_000 + v as u16 * 2)),
                        rtcp_dest: None,
                        payload_type: 96,
                        downstream: false,
                    },
                )
                .unwrap();
        }
        while relay.poll_transmit().is_some() {}
        // A key frame every 300 packets keeps the GOP cache cycling as in a live stream.
        let packets: Vec<Vec<u8>> = (0..300u16).map(|i| packet(i + 1, i == 0)).collect();
        let mut i = 0usize;
        group.throughput(Throughput::Elements(viewers));
        group.bench_with_input(BenchmarkId::from_parameter(viewers), &viewers, |b, _| {
            b.iter(|| {
                let p = &packets[i % packets.len()];
                i += 1;
                relay.ingest(now, &ch, p).unwrap();
                let mut bytes = 0usize;
                while let Some(t) = relay.poll_transmit() {
                    bytes += t.payload.len();
                }
                black_box(bytes)
            })
        });
        group.bench_with_input(BenchmarkId::new("in_place", viewers), &viewers, |b, _| {
            b.iter(|| {
                let p = &packets[i % packets.len()];
                i += 1;
                relay.ingest(now, &ch, p).unwrap();
                let q = relay.transmits();
                let mut bytes = 0usize;
                for k in 0..q.len() {
                    if let Some(d) = q.get(k) {
                        bytes += d.header.len() + d.body.len();
                    }
                }
                let n = q.len();
                relay.consume_transmits(n);
                black_box(bytes)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
