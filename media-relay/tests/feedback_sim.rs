//! Feedback targets and the two simulations, with the done-when parameters:
//! `ha-sim` at 10^6 viewers on a 1 Mbit/s session (freshness <= 20 s at <= 5 % RTCP), and
//! `gnp-sim` seed 2 (median relative error <= 0.15, >= 80 % of viewers within 1.2x of the
//! nearest FT). Everything runs under a virtual clock and is deterministic by seed.

use std::time::{Duration, Instant};

use media_relay::feedback::aggregate::{
    viewer_interval_params, write_vote, FeedbackTarget, FtConfig, ViewerReport,
};
use media_relay::feedback::{gnp, hasim, interval};
use media_relay::rsi::Rsi;
use rtcp_types::{Compound, ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};

const MEDIA: u32 = 0xabcd;

fn addr() -> std::net::SocketAddr {
    "192.0.2.1:5005".parse().unwrap()
}

#[expect(clippy::disallowed_methods)]
fn origin() -> Instant {
    // The test is the driver: the origin of virtual time is the only clock read.
    Instant::now()
}

fn rr(viewer: u32, fraction_lost: u8, jitter: u32) -> Vec<u8> {
    let rr = ReceiverReport::builder(viewer).add_report_block(
        ReportBlock::builder(MEDIA)
            .fraction_lost(fraction_lost)
            .cumulative_lost(u32::from(fraction_lost))
            .interarrival_jitter(jitter),
    );
    let c = Compound::builder().add_packet(rr);
    let mut v = vec![0u8; c.calculate_size().unwrap()];
    c.write_into(&mut v).unwrap();
    v
}

#[test]
fn a_tree_of_fts_counts_every_viewer_and_vote_exactly() {
    let t0 = origin();
    let bps = 1_000_000.0;
    let mut source = FeedbackTarget::new(FtConfig::new(1, MEDIA, bps));
    let mut leaves: Vec<FeedbackTarget> = (0..3)
        .map(|i| FeedbackTarget::new(FtConfig::new(100 + i, MEDIA, bps)))
        .collect();
    for (i, leaf) in leaves.iter_mut().enumerate() {
        leaf.set_parent(1);
        source.add_child(100 + i as u32, t0);
    }
    // 300 viewers, 100 per leaf; viewer v votes option v % 3 in poll 9, then viewer 0 changes
    // its mind (only its latest vote counts).
    for v in 0u32..300 {
        let leaf = &mut leaves[(v / 100) as usize];
        let mut d = rr(1000 + v, (v % 50) as u8, v * 10);
        write_vote(&mut d, 1000 + v, 9, v % 3).unwrap();
        let h = leaf.handle_rtcp(t0, addr(), 0, &d).unwrap();
        assert_eq!((h.reports, h.votes), (1, 1));
    }
    let mut d = Vec::new();
    write_vote(&mut d, 1000, 9, 2).unwrap();
    leaves[0].handle_rtcp(t0, addr(), 0, &d).unwrap();
    // A report about another media source is not ours.
    let other = ReceiverReport::builder(5).add_report_block(ReportBlock::builder(0x9999));
    let mut o = vec![0u8; other.calculate_size().unwrap()];
    other.write_into(&mut o).unwrap();
    assert_eq!(leaves[2].handle_rtcp(t0, addr(), 0, &o).unwrap().reports, 0);

    for leaf in &mut leaves {
        let (up, _) = leaf.upstream_packet(7 << 32).unwrap();
        let h = source
            .handle_rtcp(t0 + Duration::from_secs(1), addr(), 7 << 32, &up)
            .unwrap();
        assert_eq!(h.child_summaries, 1);
    }
    let s = source.summary();
    assert_eq!(s.group_size, 300);
    assert_eq!(s.votes.get(9, 0), 99);
    assert_eq!(s.votes.get(9, 1), 100);
    assert_eq!(s.votes.get(9, 2), 101);
    assert_eq!(s.loss.total(), 300);
    assert_eq!(s.jitter.total(), 300);
    assert_eq!(s.highest_cumulative_lost, 49);

    // Group size downwards: the source tells its 3 children, a leaf tells its 100 viewers.
    let b = source.downstream_rsi(0).to_vec().unwrap();
    let down = Rsi::decode(&b).unwrap();
    assert_eq!(
        leaves[0].handle_rtcp(t0, addr(), 0, &b).unwrap().parent_rsi,
        1
    );
    assert_eq!(leaves[0].parent_info().unwrap().group_size, 4);
    let p = viewer_interval_params(&down, bps, 5.0);
    assert_eq!(p.members, 4);
    let leaf_down = leaves[0].downstream_rsi(0);
    let p = viewer_interval_params(&leaf_down, bps, 5.0);
    assert_eq!(p.members, 101);
    assert!((p.rtcp_bw_bytes_per_s - 6250.0).abs() < 1.0, "{p:?}");
    // 100 viewers of ~36-octet RRs fit the share at the minimum: 5 s, not minutes.
    assert_eq!(interval::deterministic_interval_s(&p), 5.0);
}

#[test]
fn a_summary_does_not_grow_with_viewers() {
    let t0 = origin();
    let size_with = |viewers: u32| {
        let mut ft = FeedbackTarget::new(FtConfig::new(7, MEDIA, 1e6));
        for v in 0..viewers {
            ft.on_viewer_report(
                t0,
                ViewerReport {
                    ssrc: v + 1,
                    fraction_lost: (v % 256) as u8,
                    cumulative_lost: v,
                    jitter: v * 3,
                    rtt_ms: Some(v % 700),
                },
                96,
            );
            ft.on_vote(t0, v + 1, v % 2, v % 4);
        }
        let (up, s) = ft.upstream_packet(0).unwrap();
        assert_eq!(s.group_size, u64::from(viewers));
        up.len()
    };
    // Bucket widths grow from 8 to 16 to 32 bits as counts grow; past that nothing grows. The
    // bound: RSI header 20 + group size 8 + four 16-bucket 32-bit distributions 4 x 76 +
    // general statistics 12, then the APP tally 12 + 4 entries x 12.
    let bound = 20 + 8 + 4 * 76 + 12 + 12 + 4 * 12;
    let sizes: Vec<usize> = [10, 1_000, 100_000, 150_000]
        .into_iter()
        .map(size_with)
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(sizes.iter().all(|&s| s <= bound), "{sizes:?} > {bound}");
    assert_eq!(sizes[2], sizes[3], "{sizes:?}");
}

#[test]
fn ssrc_collisions_are_reported_and_ignored() {
    use media_relay::rsi::{Srbt, SubReport};
    let t0 = origin();
    let mut cfg = FtConfig::new(7, MEDIA, 1e6);
    cfg.address = Some("[2001:db8::7]:5005".parse().unwrap());
    let mut ft = FeedbackTarget::new(cfg);
    let other: std::net::SocketAddr = "192.0.2.99:5005".parse().unwrap();
    assert_eq!(
        ft.handle_rtcp(t0, addr(), 0, &rr(1, 10, 0))
            .unwrap()
            .reports,
        1
    );
    assert_eq!(
        ft.handle_rtcp(t0, other, 0, &rr(1, 200, 0))
            .unwrap()
            .reports,
        0
    );
    let (up, s) = ft.upstream_packet(0).unwrap();
    assert_eq!(s.collisions.iter().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(s.loss.total(), 1);
    let rsi = Rsi::decode(&up).unwrap();
    assert_eq!(
        rsi.find(Srbt::COLLISIONS),
        Some(&SubReport::Collisions(vec![1]))
    );
    // The downstream RSI names the FT's address.
    let down = ft.downstream_rsi(0);
    assert!(matches!(
        down.sub_reports.first(),
        Some(SubReport::Ipv6Target(a)) if a.port() == 5005
    ));
}

#[test]
fn expired_members_leave_the_summary() {
    let t0 = origin();
    let mut ft = FeedbackTarget::new(FtConfig::new(7, MEDIA, 1e6));
    ft.handle_rtcp(t0, addr(), 0, &rr(1, 0, 0)).unwrap();
    ft.handle_rtcp(t0 + Duration::from_secs(30), addr(), 0, &rr(2, 0, 0))
        .unwrap();
    ft.expire(t0 + Duration::from_secs(50));
    assert_eq!(ft.summary().group_size, 1);
    ft.remove_viewer(2);
    assert_eq!(ft.summary().group_size, 0);
}

#[test]
fn ha_sim_million_viewers_fresh_within_budget() {
    let cfg = hasim::HaSimConfig::new(1_000_000, 16, 1000.0, 1);
    let r = hasim::run(&cfg, origin()).unwrap();
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert_eq!(r.viewers, 1_000_000);
    assert!(r.freshness_s <= 20.0, "freshness {}", r.freshness_s);
    assert!(r.rtcp_share <= 0.05, "rtcp share {}", r.rtcp_share);
    assert!(r.depth >= 3, "depth {}", r.depth);
    // Flat RFC 3550 would take hours per report.
    assert!(
        r.flat_rfc3550_interval_s > 3600.0,
        "{}",
        r.flat_rfc3550_interval_s
    );
    assert_eq!(r.group_size_at_source, 1_000_000);
    assert_eq!(r.votes_at_source, r.votes_cast);
}

#[test]
fn ha_sim_is_deterministic_by_seed() {
    let cfg = hasim::HaSimConfig::new(20_000, 8, 1000.0, 42);
    let a = hasim::run(&cfg, origin()).unwrap();
    let b = hasim::run(&cfg, origin()).unwrap();
    assert_eq!(a, b);
    let svg = hasim::plot_svg(
        &[hasim::SweepPoint::from(&a), {
            let mut big = hasim::SweepPoint::from(&a);
            big.viewers = 1_000_000;
            big
        }],
        1000.0,
    )
    .unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
    for label in [
        "20 s target",
        "hierarchical",
        "flat RFC 3550",
        "viewers",
        "seconds",
    ] {
        assert!(svg.contains(label), "plot lacks {label}");
    }
}

#[test]
fn gnp_sim_places_viewers_near_their_ft() {
    let r = gnp::run(&gnp::GnpConfig::new(2));
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    assert!(
        r.median_rel_error <= 0.15,
        "median error {}",
        r.median_rel_error
    );
    assert!(
        r.near_optimal_fraction >= 0.8,
        "near optimal {}",
        r.near_optimal_fraction
    );
    assert!(r.near_optimal_fraction_random < r.near_optimal_fraction);
    assert!(r.bandwidth_saving_vs_random > 0.0);
    assert!(r.max_ft_load <= r.ft_capacity);
    // The live FT manager on the same network (every FT a landmark) and its failover.
    assert!(
        r.manager_near_optimal_fraction >= 0.8,
        "manager near optimal {}",
        r.manager_near_optimal_fraction
    );
    assert!(r.manager_failover_moved > 0);
    assert_eq!(r.manager_failover_unplaced, 0);
    assert!(r.manager_failover_mean_rtt_ms > 0.0);
    assert_eq!(r, gnp::run(&gnp::GnpConfig::new(2)));
}
